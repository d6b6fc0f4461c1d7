"""Train CDOSGen: unconditional pre-training and/or DOS fine-tuning of the GemNet-T denoiser.

    python -m experiments.train_crystal --stage pretrain --steps 300 --workdir runs/crystal_pre
    python -m experiments.train_crystal --stage finetune --init runs/crystal_pre/model \
        --steps 200 --workdir runs/crystal_ft [--adapters-only] [--resume]
    python -m experiments.train_crystal --make-default   # both stages -> jaxdos/assets/crystal_tiny
    python -m experiments.train_crystal --stage finetune --init runs/mattergen_base \
        --records mp.npz --steps 200 --workdir runs/crystal_mp   # a converted MatterGen model

A fine-tune from --init takes the init's network (sizes, scale factors, graph cutoffs, time and
output conditioning, any scalar adapters) and forward processes; it adds the paper's DOS embedding
and zero-initialised adapters (eqs. 2-4) unless the init has them, so at step 0 it scores exactly
as the init does. --width, --blocks, --time-scale or --pos-sigma-ref contradicting the init is an
error naming the flag; --type-ce and --pos-weight (loss weights) may change.

Data: the world data set's train/val splits (`jaxdos.data.world.load_world`) unless `--records`
gives a `Records` .npz (then 10 % of it, seeded, is held out). Batches are packed under
`--atoms`/`--graphs` budgets by `jaxdos.data.pipelines.crystal_batches`. Progress lines show the
loss (and `metrics.jsonl` keeps it); orbax checkpoints every `--ckpt-every` steps; `--resume`
continues exactly (same batches, keys and parameters as an uninterrupted run). Each stage ends by
exporting `<workdir>/model` (a "cdosgen" model directory, `jaxdos.modeldir`, with the validation
losses in its meta) and printing them.
The job itself (init, base-weight merge, training, export) is `jaxdos.crystal.fit.run`.

Multi-host (docs/multihost.md): every process runs the same command with the multi-host flags and
a `--workdir` they all reach; each step's K = one batch per device of every process is split over
all of them, and process 0 writes the logs and the model.
"""

import argparse
import dataclasses
from pathlib import Path

from experiments.cli import (
    add_multihost_flags,
    check_splits_over_devices,
    config_error,
    start_multihost,
)
from jaxdos.crystal.checkpoint import DEFAULT_DIR
from jaxdos.crystal.denoiser import GemNetConfig
from jaxdos.crystal.diffusion.corruption import DiffusionConfig
from jaxdos.crystal.diffusion.d3pm import D3PMConfig
from jaxdos.crystal.diffusion.lattice import TIME_POWER_RANGE, LatticeConfig
from jaxdos.crystal.diffusion.losses import LossWeights
from jaxdos.crystal.fit import (
    CrystalFitConfig,
    crystal_train_config,
    init_architecture,
    make_default,
    run,
)
from jaxdos.training import latest_checkpoint


def add_lever_flags(p: argparse.ArgumentParser) -> None:
    """The issue-12 model and loss levers (defaults: MatterGen's); read by `lever_configs`.

    The network flags default to None ("not given") so that a fine-tune from --init, which takes
    its architecture from the init, can tell a contradicting flag from an absent one."""
    p.add_argument(
        "--time-scale", type=float, default=None,
        help="t multiplier of the time encoding (default 1 = MatterGen)",
    )  # fmt: skip
    p.add_argument(
        "--pos-sigma-ref",
        type=float,
        default=None,
        help="coordinate output preconditioning s0 (default: none, as MatterGen)",
    )
    p.add_argument(
        "--pos-weight", type=float, default=0.1, help="coordinate loss weight (MatterGen 0.1)"
    )
    p.add_argument(
        "--type-ce", type=float, default=None,
        help="D3PM hybrid CE weight (default MatterGen's 0.01, or the --init model's)",
    )  # fmt: skip
    p.add_argument("--width", type=int, default=None, help="GemNet atom/edge width (tiny: 64)")
    p.add_argument("--blocks", type=int, default=None, help="GemNet interaction blocks (tiny: 2)")
    p.add_argument(
        "--frac-fourier",
        type=int,
        default=None,
        help="K fractional-offset Fourier edge features, zero-initialised (default 0 = MatterGen)",
    )
    p.add_argument(
        "--frac-head",
        type=int,
        default=None,
        help="L all-pairs rounds of a fractional-coordinate score head, zero-initialised "
        "(default 0 = MatterGen; a fine-tune may add it to an init without one)",
    )
    p.add_argument(
        "--t-mid", type=float, default=None,
        help="share of training times drawn from U(0.25, 0.55) (default 0 = MatterGen)",
    )  # fmt: skip
    p.add_argument(
        "--cell-var", type=float, default=None,
        help="lattice noise c in v = c N^(2/3) A^2 per entry (default MatterGen's 0.25)",
    )  # fmt: skip
    p.add_argument(
        "--cell-time-power", type=float, default=None,
        help="the lattice process runs on the clock t^P, settling the cell before the sites "
        "(default 1 = MatterGen)",
    )  # fmt: skip


def _given(value, default):
    return default if value is None else value


def _check_lever_ranges(args) -> None:
    if args.t_mid is not None and not 0 <= args.t_mid <= 1:
        raise ValueError(f"--t-mid: expected a share in [0, 1], got {args.t_mid}")
    if args.frac_head is not None and not 0 <= args.frac_head <= 8:
        raise ValueError(f"--frac-head: expected 0..8 rounds, got {args.frac_head}")
    lo, hi = TIME_POWER_RANGE
    if args.cell_time_power is not None and not lo <= args.cell_time_power <= hi:
        raise ValueError(f"--cell-time-power: expected {lo}..{hi}, got {args.cell_time_power}")


def lever_configs(args) -> tuple[GemNetConfig, DiffusionConfig, LossWeights]:
    """The tiny GemNet config, corruption settings and loss weights that `add_lever_flags` set."""
    _check_lever_ranges(args)
    width = _given(args.width, 64)
    config = GemNetConfig.tiny(
        time_scale=_given(args.time_scale, 1.0),
        pos_sigma_ref=args.pos_sigma_ref,
        num_blocks=_given(args.blocks, 2),
        emb_size_atom=width,
        emb_size_edge=width,
        latent_dim=width,
        frac_fourier=_given(args.frac_fourier, 0),
        frac_head=_given(args.frac_head, 0),
    )
    diffusion = DiffusionConfig(
        types=D3PMConfig(hybrid_coeff=_given(args.type_ce, 0.01)),
        cell=LatticeConfig(
            limit_var_scaling_constant=_given(args.cell_var, 0.25),
            time_power=_given(args.cell_time_power, 1.0),
        ),
        mid_fraction=_given(args.t_mid, 0.0),
    )
    return config, diffusion, LossWeights(pos=args.pos_weight)


# Network flag -> the GemNetConfig fields it sets (a fine-tune from --init may not change them).
_NETWORK_FLAGS = {
    "width": ("--width", ("emb_size_atom", "emb_size_edge", "latent_dim")),
    "blocks": ("--blocks", ("num_blocks",)),
    "time_scale": ("--time-scale", ("time_scale",)),
    "pos_sigma_ref": ("--pos-sigma-ref", ("pos_sigma_ref",)),
    "frac_fourier": ("--frac-fourier", ("frac_fourier",)),
}


def init_configs(args) -> tuple[GemNetConfig, DiffusionConfig, LossWeights]:
    """A fine-tune's network and corruption settings, taken from the --init model directory.

    Raises:
        ValueError: "--init: ..." for a folder that is no cdosgen model; "--width: ..." (etc.)
            for a network flag that contradicts the init's architecture.
    """
    try:
        gemnet, diffusion = init_architecture(args.init)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"--init: {err}") from None
    for dest, (flag, fields) in _NETWORK_FLAGS.items():
        value = getattr(args, dest)
        have = {f: getattr(gemnet, f) for f in fields}
        if value is not None and any(v != value for v in have.values()):
            raise ValueError(
                f"{flag}: {value} contradicts the --init model's architecture ({have}); a "
                "fine-tune takes its network from --init, drop the flag"
            )
    for flag, value, have in (
        ("--cell-var", args.cell_var, diffusion.cell.limit_var_scaling_constant),
        ("--cell-time-power", args.cell_time_power, diffusion.cell.time_power),
    ):
        if value is not None and value != have:
            raise ValueError(
                f"{flag}: {value} contradicts the --init model's lattice process ({have}); "
                "a fine-tune keeps its forward process, drop the flag"
            )
    _check_lever_ranges(args)
    if args.frac_head is not None and args.frac_head != gemnet.frac_head:
        if gemnet.frac_head:
            raise ValueError(
                f"--frac-head: {args.frac_head} contradicts the --init model's head "
                f"({gemnet.frac_head} rounds); a fine-tune may add a head, not change it"
            )
        gemnet = dataclasses.replace(gemnet, frac_head=args.frac_head)
    if args.t_mid is not None:  # the training time distribution, not the model: may change
        diffusion = dataclasses.replace(diffusion, mid_fraction=args.t_mid)
    if args.type_ce is not None:  # a loss weight, not architecture: the flag may change it
        types = dataclasses.replace(diffusion.types, hybrid_coeff=args.type_ce)
        diffusion = dataclasses.replace(diffusion, types=types)
    return gemnet, diffusion, LossWeights(pos=args.pos_weight)


def stage_config(args, stage: str, steps: int) -> CrystalFitConfig:
    """One stage's frozen config from the flags (`steps`: per stage under --make-default).

    A fine-tune with --init (not under --make-default) takes the init's architecture
    (`init_configs`, ValueError naming the flag); otherwise the tiny network of the lever flags.
    """
    if stage == "finetune" and args.init is not None and not args.make_default:
        config, diffusion, weights = init_configs(args)
    else:
        config, diffusion, weights = lever_configs(args)
    train = crystal_train_config(
        steps=steps,
        learning_rate=args.lr,
        decay_steps=steps if args.cosine else None,
        seed=args.seed,
        ckpt_every=args.ckpt_every,
    )
    return CrystalFitConfig(
        stage=stage,
        model=config,
        diffusion=diffusion,
        weights=weights,
        train=train,
        adapters_only=args.adapters_only,
        init=args.init,
        records=args.records,
        atoms=args.atoms,
        graphs=args.graphs,
        sub_batches=args.sub_batches,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stage", choices=("pretrain", "finetune"), default="pretrain")
    p.add_argument("--init", default=None, help="exported model dir to fine-tune from")
    p.add_argument("--records", default=None, help="a Records .npz instead of the world splits")
    p.add_argument("--workdir", default="runs/crystal_tiny")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--finetune-steps", type=int, default=200, help="with --make-default")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--atoms", type=int, default=96, help="atom slots per batch")
    p.add_argument("--graphs", type=int, default=17, help="graph slots per batch (one is padding)")
    p.add_argument(
        "--sub-batches",
        type=int,
        default=None,
        help="K batches per step, split over the devices (default: the global device count; a "
        "multiple of it). K fixes the trajectory: keep it to resume on another device count",
    )
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adapters-only", action="store_true")
    add_lever_flags(p)
    p.add_argument(
        "--cosine", action="store_true", help="cosine-decay the lr to 10 %% over --steps"
    )
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--make-default",
        action="store_true",
        help=f"pre-train then fine-tune, export to {DEFAULT_DIR}",
    )
    add_multihost_flags(p)
    return p


def parse(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _checked(parser, args, stage: str, steps: int) -> CrystalFitConfig:
    """`stage_config`, with a bad flag or --init folder as a one-line usage error (no compute)."""
    try:
        config = stage_config(args, stage, steps)
        if config.records is not None and not Path(config.records).is_file():
            raise ValueError(f"--records: {config.records} is not a file")
        return config
    except ValueError as err:
        config_error(parser, err)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # first: an --init model read below would start the JAX backend
        start_multihost(args)
        check_splits_over_devices("--sub-batches", args.sub_batches)
    except ValueError as err:
        config_error(parser, err)
    workdir = Path(args.workdir)
    if args.make_default:
        # The pre-training starts fresh; the fine-tune starts from it (not from --init).
        pre = dataclasses.replace(_checked(parser, args, "pretrain", args.steps), init=None)
        ft = _checked(parser, args, "finetune", args.finetune_steps)
        return make_default(pre, ft, workdir, resume=args.resume)
    config = _checked(parser, args, args.stage, args.steps)
    if args.resume and latest_checkpoint(workdir) is None:
        config_error(
            parser, ValueError(f"--resume: no checkpoint under {workdir}: start without --resume")
        )
    return run(config, workdir, resume=args.resume)


if __name__ == "__main__":
    main()
