"""Subprocess entry for the rejection tests: one run of the stand-in sampler into `--out`.

Run as a script with the repository root and this folder on PYTHONPATH; XLA_FLAGS (fake device
count) must be set by the parent before this process starts JAX.
"""

import argparse

from jaxdos import sharding


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--accept", type=int, default=60)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--chunk-batches", type=int, default=2)
    ap.add_argument("--flush-seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--coordinator")
    ap.add_argument("--num-processes", type=int)
    ap.add_argument("--process-id", type=int)
    args = ap.parse_args()
    sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id)

    from rejection_standin import make_proposer

    from jaxdos.sampler.rejection import RejectionConfig, run_rejection
    from jaxdos.sampler.targets import Targets

    config = RejectionConfig(
        accept=args.accept,
        batch_size=args.batch,
        chunk_batches=args.chunk_batches,
        flush_seconds=args.flush_seconds,
        seed=args.seed,
    )
    run_rejection(
        make_proposer(),
        Targets.of(band_gap=1.0),
        config,
        out=args.out,
        resume=args.resume,
        progress=False,
    )


if __name__ == "__main__":
    main()
