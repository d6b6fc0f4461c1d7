"""Train the DOSSampler (score network + property regressor) and export a sampler directory.

    python -m experiments.train_sampler --preset tiny --steps 600 --workdir runs/sampler_tiny \
        [--records train.npz] [--resume] [--export jaxdos/assets/sampler_tiny]
    python -m experiments.train_sampler --init jaxdos/assets/sampler_tiny --steps 6000 --cosine \
        --workdir runs/sampler_more   # continue training a sampler (fresh optimiser)

Data: the world data set's train/val splits (`jaxdos.data.world.load_world`) unless `--records`
gives a `Records` .npz (then 10 % of it, seeded, is held out for validation). Prints progress lines
(and writes `metrics.jsonl`), logs the validation loss every `--eval-every` steps, checkpoints every
`--ckpt-every` steps; `--resume` continues each stage exactly where its last checkpoint left it.

Multi-host (docs/multihost.md): every process runs the same command with the multi-host flags and
a `--workdir` they all reach; the batch is split over every device of every process (so
`--batch-size` must be a multiple of the global device count) and process 0 writes the logs and
the sampler.
"""

import argparse
from pathlib import Path

from experiments import cli
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.fit import SamplerFitConfig, init_score_network, run, sampler_train_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    p.add_argument("--records", default=None, help="a Records .npz instead of the world splits")
    p.add_argument("--workdir", default="runs/sampler_tiny")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--regressor-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument(
        "--cosine", action="store_true", help="cosine-decay the score network's lr to 10 %% of it"
    )
    p.add_argument(
        "--init",
        default=None,
        help="a sampler directory whose score network starts this run (fresh optimiser)",
    )
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-records", type=int, default=0, help="cap the training set (0: all)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", default=None, help="copy the sampler directory here when done")
    cli.add_multihost_flags(p)
    return p


def job_config(args: argparse.Namespace) -> SamplerFitConfig:
    """The job config of the parsed flags (ValueError naming a config field)."""
    common = dict(
        learning_rate=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        eval_every=args.eval_every,
        ckpt_every=args.ckpt_every,
    )
    return SamplerFitConfig(
        model=getattr(ModelConfig, args.preset)(),
        diffusion=sampler_train_config(
            steps=args.steps, decay_steps=args.steps if args.cosine else None, **common
        ),
        regressor=sampler_train_config(steps=args.regressor_steps, **common),
        batch_size=args.batch_size,
        records=args.records,
        max_records=args.max_records,
        export=args.export,
        init=args.init,
    )


def parse(argv=None) -> tuple[SamplerFitConfig, Path, bool]:
    """The flags as (job config, work directory, resume)."""
    args = build_parser().parse_args(argv)
    return job_config(args), Path(args.workdir), args.resume


def main(argv=None) -> Path:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # bad flags are one-line usage errors, before the runtime or any compute starts
        config = job_config(args)
        cli.start_multihost(args)  # first: reading --init starts the JAX backend
        cli.check_splits_over_devices("--batch-size", config.batch_size)
        if config.init is not None:
            init_score_network(config.init, config.model)
    except FileNotFoundError as err:
        cli.config_error(parser, ValueError(str(err)))
    except ValueError as err:
        cli.config_error(parser, err)
    return run(config, Path(args.workdir), resume=args.resume)


if __name__ == "__main__":
    main()
