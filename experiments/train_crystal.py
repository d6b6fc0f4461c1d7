"""Train CDOSGen: unconditional pre-training and/or DOS fine-tuning of the GemNet-T denoiser.

    python -m experiments.train_crystal --stage pretrain --steps 300 --workdir runs/crystal_pre
    python -m experiments.train_crystal --stage finetune --init runs/crystal_pre/model \
        --steps 200 --workdir runs/crystal_ft [--adapters-only] [--resume]
    python -m experiments.train_crystal --make-default   # both stages -> jaxdos/assets/crystal_tiny

Data: the world data set's train/val splits (`jaxdos.data.world.load_world`) unless `--records`
gives a `Records` .npz (then 10 % of it, seeded, is held out). Batches are packed under
`--atoms`/`--graphs` budgets by `jaxdos.data.pipelines.crystal_batches`. A tqdm bar shows the loss;
orbax checkpoints every `--ckpt-every` steps; `--resume` continues exactly (same batches, keys and
parameters as an uninterrupted run). Each stage ends by exporting `<workdir>/model` (a "cdosgen"
model directory, `jaxdos.modeldir`, with the validation losses in its meta) and printing them.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.crystal.checkpoint import DEFAULT_DIR, CDOSGenModel, merge_base_params, save_model
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
from jaxdos.crystal.diffusion.corruption import DiffusionConfig
from jaxdos.crystal.diffusion.d3pm import D3PMConfig
from jaxdos.crystal.diffusion.losses import LossWeights
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
from jaxdos.crystal.fit import FitConfig, evaluate, fit
from jaxdos.crystal.train import FinetuneAdapters, FinetuneFull, Pretrain, TrainBatch, TrainConfig
from jaxdos.data.budgets import CrystalBudgets
from jaxdos.data.pipelines import crystal_batches
from jaxdos.data.records import Records
from jaxdos.data.world import train_val_records


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


def lever_configs(args) -> tuple[GemNetConfig, DiffusionConfig, LossWeights]:
    """The tiny GemNet config, corruption settings and loss weights that `add_lever_flags` set."""
    config = GemNetConfig.tiny(
        time_scale=args.time_scale,
        pos_sigma_ref=args.pos_sigma_ref,
        num_blocks=args.blocks,
        emb_size_atom=args.width,
        emb_size_edge=args.width,
        latent_dim=args.width,
    )
    diffusion = DiffusionConfig(types=D3PMConfig(hybrid_coeff=args.type_ce))
    return config, diffusion, LossWeights(pos=args.pos_weight)


def _init_params(model, budgets, records, seed):
    batch = TrainBatch.from_pipeline(next(iter(crystal_batches(records, budgets, num_epochs=1))))
    g = batch.crystal.num_graphs
    cond = None
    if model.config.dos_dim is not None:
        from jaxdos.crystal.batch import DosCondition

        cond = DosCondition(jnp.asarray(batch.dos), jnp.ones(g, bool))
    variables = jax.jit(model.init)(jax.random.key(seed), batch.crystal, jnp.full(g, 0.5), cond)
    return {"params": variables["params"]}


def run_stage(args, stage: str, train: Records, val: Records, workdir: Path, init_dir=None):
    """One training stage; returns (export dir, validation metrics)."""
    budgets = CrystalBudgets(atoms=args.atoms, graphs=args.graphs)
    config, diffusion, weights = lever_configs(args)
    if stage == "finetune":
        config = config.conditional()
    model = GemNetTDenoiser(config)
    params = _init_params(model, budgets, train, args.seed)
    if init_dir is not None:
        base_model = CDOSGenModel.load(init_dir)
        base, base_cfg = base_model.params, base_model.gemnet
        params = merge_base_params(params, base)
        # The base's graph budgets and its time / output conditioning (its weights assume them).
        keep = ("graph", "time_scale", "pos_sigma_ref")
        model = model.clone(
            config=dataclasses.replace(config, **{k: getattr(base_cfg, k) for k in keep})
        )
    if stage == "pretrain":
        mode = Pretrain()
    elif args.adapters_only:
        mode = FinetuneAdapters(p_uncond=0.2)
    else:
        mode = FinetuneFull(p_uncond=0.2)
    tcfg = TrainConfig(
        mode=mode,
        learning_rate=args.lr,
        decay_steps=args.steps if args.cosine else None,
        diffusion=diffusion,
        weights=weights,
    )
    fcfg = FitConfig(num_steps=args.steps, seed=args.seed, checkpoint_every=args.ckpt_every)

    def data():
        return iter(crystal_batches(train, budgets, seed=args.seed, num_epochs=None))

    t0 = time.time()
    state, model, history = fit(model, params, data, tcfg, fcfg, workdir, resume=args.resume)
    train_s = time.time() - t0
    val_batches = list(crystal_batches(val, budgets, num_epochs=1, shuffle=False))
    val_metrics = evaluate(model, state.params, val_batches, tcfg)
    # The gate of issue 12: the same batches and keys with the DOS dropped. Equal losses would mean
    # the model ignores its condition, whatever the sampler does.
    val_uncond = None
    if stage == "finetune":
        val_uncond = evaluate(
            model, state.params, val_batches, dataclasses.replace(tcfg, mode=Pretrain())
        )
    dist = NumAtomsDistribution.from_counts(np.asarray(train.num_atoms))
    meta = {
        "stage": stage,
        "mode": type(mode).__name__,
        "steps": int(state.step),
        "train_seconds": round(train_s, 1),
        "learning_rate": args.lr,
        "cosine_decay": args.cosine,
        "loss": {"pos_weight": args.pos_weight, "type_ce": args.type_ce},
        "budgets": {"atoms": args.atoms, "graphs": args.graphs},
        "train_records": len(train),
        "val_records": len(val),
        "val_metrics": val_metrics,
        "val_metrics_dos_dropped": val_uncond,
        "last_train_metrics": history[-1] if history else None,
    }
    out = workdir / "model"
    save_model(out, state.params, model.config, dist, meta, diffusion=diffusion)
    summary = {"stage": stage, "val": val_metrics, "val_dos_dropped": val_uncond}
    print(json.dumps({**summary, "train_seconds": meta["train_seconds"]}))
    return out, val_metrics


def main(argv=None):
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
    args = p.parse_args(argv)
    train, val = train_val_records(args.records, args.seed)
    workdir = Path(args.workdir)
    if args.make_default:
        pre, _ = run_stage(args, "pretrain", train, val, workdir / "pretrain")
        args.steps = args.finetune_steps
        out, _ = run_stage(args, "finetune", train, val, workdir / "finetune", init_dir=pre)
        fine = CDOSGenModel.load(out)
        pre_meta = CDOSGenModel.load(pre).meta
        meta = {**fine.meta}
        meta["pretrain"] = {k: pre_meta[k] for k in ("steps", "train_seconds", "val_metrics")}
        dataclasses.replace(fine, meta=meta).save(DEFAULT_DIR)
        print(f"default model -> {DEFAULT_DIR}")
        return DEFAULT_DIR
    out, _ = run_stage(
        args, args.stage, train, val, workdir, init_dir=Path(args.init) if args.init else None
    )
    return out


if __name__ == "__main__":
    main()
