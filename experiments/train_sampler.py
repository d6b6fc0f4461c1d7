"""Train the DOSSampler (score network + property regressor) and export a sampler directory.

    python -m experiments.train_sampler --preset tiny --steps 600 --workdir runs/sampler_tiny \
        [--records train.npz] [--resume] [--export jaxdos/assets/sampler_tiny]

Data: the world data set's train/val splits (`jaxdos.data.world.load_world`) unless `--records`
gives a `Records` .npz (then 10 % of it, seeded, is held out for validation). Shows a tqdm bar with
the running loss, logs the validation loss every `--eval-every` steps, checkpoints every
`--ckpt-every` steps; `--resume` continues each stage exactly where its last checkpoint left it.
"""

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from jaxdos.data.world import train_val_records
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.fit import fit
from jaxdos.sampler.train import TrainConfig


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    p.add_argument("--records", default=None, help="a Records .npz instead of the world splits")
    p.add_argument("--workdir", default="runs/sampler_tiny")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--regressor-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-records", type=int, default=0, help="cap the training set (0: all)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export", default=None, help="copy the sampler directory here when done")
    args = p.parse_args(argv)

    model_config = getattr(ModelConfig, args.preset)()
    common = dict(
        batch_size=args.batch_size,
        warmup=args.warmup,
        seed=args.seed,
        eval_every=args.eval_every,
        ckpt_every=args.ckpt_every,
    )
    train_config = TrainConfig(steps=args.steps, lr=args.lr, **common)
    regressor_config = TrainConfig(steps=args.regressor_steps, lr=args.lr, **common)
    train, val = train_val_records(args.records, args.seed)
    if args.max_records:
        train = train.take(np.arange(min(args.max_records, len(train))))
    print(f"train {len(train)} records, val {len(val)}; model {model_config}")
    t0 = time.time()
    out = fit(
        model_config,
        train_config,
        regressor_config,
        train,
        val,
        args.workdir,
        resume=args.resume,
        meta={"source": args.records or "world"},
    )
    print(f"sampler written to {out} in {time.time() - t0:.0f} s")
    if args.export:
        dest = Path(args.export)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(out, dest)
        print(f"exported to {dest}")
    return out


if __name__ == "__main__":
    main()
