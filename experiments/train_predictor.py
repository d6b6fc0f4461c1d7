"""Train the crystal -> DOS predictor (or its composition baseline) and export a model directory.

    python -m experiments.train_predictor --out runs/predictor [--records X.npz] [--steps N]
        [--arch equivariant|composition] [--preset default|tiny] [--batch-crystals 16]
        [--lr 2e-3] [--seed 0] [--max-records 0] [--resume] [--export DIR]

Data: the world's train / val splits unless `--records` gives a `Records` .npz (MP records from
`load-mp`; a seeded 10 % is held out for validation). Writes OUT/checkpoints, OUT/metrics.jsonl
and the model OUT/model (kind "dos_predictor"); `--resume` continues exactly.
"""

import argparse
from pathlib import Path

from experiments import cli
from jaxdos.data.budgets import CrystalBudgets
from jaxdos.predictor.config import ARCHITECTURES
from jaxdos.predictor.fit import PredictorFitConfig, predictor_train_config, run
from jaxdos.structures import MAX_ATOMS

__all__ = ["main"]


def parse(argv=None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (checkpoints, metrics, model/)")
    p.add_argument("--records", default=None, help="a Records .npz instead of the world splits")
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps (3000)")
    p.add_argument("--arch", choices=tuple(ARCHITECTURES), default="equivariant")
    p.add_argument("--preset", choices=("default", "tiny"), default="default")
    p.add_argument("--batch-crystals", type=int, default=16, help="crystals per batch (16)")
    p.add_argument(
        "--lr", dest="learning_rate", type=float, default=2e-3, help="peak learning rate (2e-3)"
    )
    p.add_argument("--eval-every", type=int, default=250, help="validation period (250)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-records", type=int, default=0, help="cap the training set (0: all)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--export", default=None, help="copy the model directory here when done")
    return p, p.parse_args(argv)


def config_of(args: argparse.Namespace) -> PredictorFitConfig:
    """The flags as a job config (ValueError names the bad field)."""
    if args.records is not None and not Path(args.records).is_file():
        raise ValueError(f"records: {args.records} is not a file")
    if args.batch_crystals < 1:
        raise ValueError(f"batch_crystals: expected >= 1, got {args.batch_crystals}")
    cls = ARCHITECTURES[args.arch]
    model = cls.tiny() if args.preset == "tiny" else cls()
    train = predictor_train_config(
        steps=args.steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        eval_every=args.eval_every,
    )
    budgets = CrystalBudgets(
        atoms=max(MAX_ATOMS, 10 * args.batch_crystals), graphs=args.batch_crystals + 1
    )
    return PredictorFitConfig(
        model=model,
        train=train,
        budgets=budgets,
        records=args.records,
        max_records=args.max_records,
        export=args.export,
    )


def main(argv=None) -> Path:
    p, args = parse(argv)
    try:
        return run(config_of(args), args.out, resume=args.resume)
    except ValueError as err:
        cli.config_error(p, err)


if __name__ == "__main__":
    main()
