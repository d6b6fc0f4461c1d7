"""Property-conditional DOS sampling with rejection at scale (stage 1 of the pipeline).

    python -m experiments.sample_dos --band-gap 3.5 --tol 0.1 --accept 1000 --out runs/bg35
    python -m experiments.sample_dos --tcm type1 --accept 100 --proposals 2000000 --out runs/tcm1
    python -m experiments.sample_dos ... --out runs/bg35 --resume      # after a crash / SIGKILL
    python -m experiments.sample_dos merge runs/bg35                   # rebuild the merged index
    python -m experiments.sample_dos --band-gap 2 --noise-length 12 ...   # smoother (issue 12)

Output: `OUT/shard-NNN/chunk-*.npz` (tokens, K, measured properties, global example index) with a
manifest per process, and `OUT/index.json` (built by process 0 when every process is done). A chunk
is written at least every --flush-seconds (default 60), so a kill loses at most about a minute and
--resume continues from there. The same seed gives the same accepted candidates on any number of
devices or processes (and whatever the chunking).

Multi-host (every process runs the same command; each writes its own shard):

    # 2 processes on one machine, CPU collectives over loopback
    python -m experiments.sample_dos ... --coordinator 127.0.0.1:12345 --num-processes 2 \\
        --process-id 0 &
    python -m experiments.sample_dos ... --coordinator 127.0.0.1:12345 --num-processes 2 \\
        --process-id 1
    # GPU cluster: one process per host (all local GPUs each), --coordinator host0:port, or
    # set JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; under SLURM or on a
    # Cloud TPU pod slice pass --auto-cluster and JAX reads the cluster's own variables.
    # OUT must be a filesystem every process can reach (process 0 merges all shards).
"""

import argparse
import sys

from experiments import cli

__all__ = ["main", "build_targets"]


def build_targets(args):
    """A validated `Targets` from the parsed flags (ValueError names the flag at fault)."""
    from jaxdos.sampler.targets import Targets, TCMType1, TCMType2

    filters = ()
    if args.tcm == "type1":
        filters = (TCMType1(),)
    elif args.tcm == "type2":
        filters = (TCMType2(),)
    return Targets.of(
        band_gap=args.band_gap,
        dos_at_fermi=args.dos_at_fermi,
        integrated_dos=args.integrated_dos,
        tol=args.tol,
        abs_tol=args.abs_tol,
        filters=filters,
    )


def _parser():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--band-gap", type=float, help="E_BG target, eV")
    ap.add_argument("--dos-at-fermi", type=float, help="DOS(E_F) target, states/eV/atom")
    ap.add_argument("--integrated-dos", type=float, help="N(E_F) target, states/atom")
    ap.add_argument("--tol", type=float, default=0.1, help="relative tolerance (default 0.1)")
    ap.add_argument("--abs-tol", type=float, default=0.1, help="tolerance for zero targets")
    ap.add_argument("--tcm", choices=("type1", "type2"), help="transparent-conductor filter")
    ap.add_argument("--accept", type=int, default=1024, help="accepted candidates wanted")
    ap.add_argument("--proposals", type=int, help="proposal budget (default 1000 * accept)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--gamma", type=float, default=1.0, help="guidance strength (0: none)")
    ap.add_argument("--steps", type=int, help="denoising steps (default: DOSSamplingConfig)")
    cli.add_sampling_flags(ap)
    cli.add_model_flags(ap, crystal=False, dest="checkpoint")
    ap.add_argument("--devices", type=int, help="use the first N local devices (default all)")
    ap.add_argument(
        "--flush-seconds",
        type=float,
        default=60.0,
        help="write a chunk at least this often, so a kill loses at most this much (default 60)",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    cli.add_run_flags(ap, out="runs/sample_dos", force=False)
    cli.add_multihost_flags(ap)
    return ap


def _merge_main(argv):
    ap = argparse.ArgumentParser(prog="python -m experiments.sample_dos merge")
    ap.add_argument("out")
    ap.add_argument("--accept", type=int, help="default: the run's own --accept")
    args = ap.parse_args(argv)
    from jaxdos.pipeline.jobs.sample_dos import merge

    index = merge(args.out, args.accept)
    print(
        f"merged {index['accepted']} accepted of {index['proposals']} proposals "
        f"from {len(index['shards'])} shard(s) into {args.out}/index.json"
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "merge":
        return _merge_main(argv[1:])
    args = _parser().parse_args(argv)
    # Multi-host start and all validation come before any model is loaded or compiled.
    cli.start_multihost(args)

    from jaxdos.pipeline.jobs.sample_dos import SampleDOSConfig, run

    cfg = SampleDOSConfig(
        targets=build_targets(args),
        accept=args.accept,
        proposals=args.proposals,
        batch_size=args.batch_size,
        gamma=args.gamma,
        sampling=cli.sampling_config(args),
        checkpoint=args.checkpoint,
        devices=args.devices,
        flush_seconds=args.flush_seconds,
        progress=not args.quiet,
        seed=args.seed,
    )
    cli.check_local_devices(cfg.devices)
    targets = cfg.targets
    result = run(cfg, args.out, resume=args.resume)
    if cli.is_main_process():
        print(
            f"{targets.describe()}: accepted {len(result)}/{result.requested} from "
            f"{result.proposals} proposals (rate {result.acceptance_rate:.4%}); "
            f"index {args.out}/index.json"
        )


if __name__ == "__main__":
    main()
