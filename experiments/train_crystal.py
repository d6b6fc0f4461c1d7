"""Train CDOSGen: unconditional pre-training and/or DOS fine-tuning of the GemNet-T denoiser.

    python -m experiments.train_crystal --stage pretrain --steps 300 --workdir runs/crystal_pre
    python -m experiments.train_crystal --stage finetune --init runs/crystal_pre/model \
        --steps 200 --workdir runs/crystal_ft [--adapters-only] [--resume]
    python -m experiments.train_crystal --make-default   # both stages -> jaxdos/assets/crystal_tiny

Data: the world data set's train/val splits (`jaxdos.data.world.load_world`) unless `--records`
gives a `Records` .npz (then 10 % of it, seeded, is held out). Batches are packed under
`--atoms`/`--graphs` budgets by `jaxdos.data.pipelines.crystal_batches`. Progress lines show the
loss (and `metrics.jsonl` keeps it); orbax checkpoints every `--ckpt-every` steps; `--resume`
continues exactly (same batches, keys and parameters as an uninterrupted run). Each stage ends by
exporting `<workdir>/model` (a "cdosgen" model directory, `jaxdos.modeldir`, with the validation
losses in its meta) and printing them.
The job itself (init, base-weight merge, training, export) is `jaxdos.crystal.fit.run`.
"""

import argparse
import dataclasses
from pathlib import Path

from jaxdos.crystal.checkpoint import DEFAULT_DIR
from jaxdos.crystal.denoiser import GemNetConfig
from jaxdos.crystal.diffusion.corruption import DiffusionConfig
from jaxdos.crystal.diffusion.d3pm import D3PMConfig
from jaxdos.crystal.diffusion.losses import LossWeights
from jaxdos.crystal.fit import CrystalFitConfig, crystal_train_config, make_default, run


def add_lever_flags(p: argparse.ArgumentParser) -> None:
    """The issue-12 model and loss levers (defaults: MatterGen's); read by `lever_configs`."""
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="t multiplier of the time encoding (1 = MatterGen)",
    )
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
        "--type-ce", type=float, default=0.01, help="D3PM hybrid CE weight (MatterGen 0.01)"
    )
    p.add_argument("--width", type=int, default=64, help="GemNet atom/edge width (tiny: 64)")
    p.add_argument("--blocks", type=int, default=2, help="GemNet interaction blocks (tiny: 2)")
    p.add_argument(
        "--frac-fourier",
        type=int,
        default=0,
        help="K fractional-offset Fourier edge features, zero-initialised (0 = MatterGen)",
    )


def lever_configs(args) -> tuple[GemNetConfig, DiffusionConfig, LossWeights]:
    """The tiny GemNet config, corruption settings and loss weights that `add_lever_flags` set."""
    config = GemNetConfig.tiny(
        time_scale=args.time_scale,
        pos_sigma_ref=args.pos_sigma_ref,
        num_blocks=args.blocks,
        emb_size_atom=args.width,
        emb_size_edge=args.width,
        latent_dim=args.width,
        frac_fourier=args.frac_fourier,
    )
    diffusion = DiffusionConfig(types=D3PMConfig(hybrid_coeff=args.type_ce))
    return config, diffusion, LossWeights(pos=args.pos_weight)


def stage_config(args, stage: str, steps: int) -> CrystalFitConfig:
    """One stage's frozen config from the flags (`steps`: per stage under --make-default)."""
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
    )


def parse(argv=None) -> argparse.Namespace:
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
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    workdir = Path(args.workdir)
    if args.make_default:
        # The pre-training starts fresh; the fine-tune starts from it (not from --init).
        pre = dataclasses.replace(stage_config(args, "pretrain", args.steps), init=None)
        ft = stage_config(args, "finetune", args.finetune_steps)
        return make_default(pre, ft, workdir, resume=args.resume)
    return run(stage_config(args, args.stage, args.steps), workdir, resume=args.resume)


if __name__ == "__main__":
    main()
