"""Multi-property inverse design (Section 5.1 Table 1, Section 5.3 Table 3, Appendix H Table 11).

For each conditioning setting of Table 1: DOSSampler (prior + guidance + rejection) -> CDOSGen ->
oracle, then +-10 % accuracy and MAE of each targeted property over the generated crystals; the
unconditional and reference-DOS (world test split) baselines go through the same CDOSGen + oracle.
Table 3 conditions CDOSGen on test-split DOS and compares matched pairs with random pairing.
`--sweep 1 2 4` repeats the E_BG = 2.0 setting with that many crystals per DOS (Table 11 layout).

    python -m experiments.multi_property [--samples 8] [--sweep 1 2 4]   # ~10 min on a 2-core CPU

The paper's S.U.N. needs a stability oracle (energy above hull) the offline world does not have;
the tables report U.N. (unique and novel vs the training split) in its place.

Every rate and MAE cell reads `value [lo, hi] (n=...)`: its 95 % interval (`jaxdos.kernels.stats`:
Wilson for rates, seeded bootstrap for MAEs and mean similarities) and the count it is over.

Multi-host (docs/multihost.md): every process runs the same command with its own --process-id and
a shared --out; the DOS sampling is sharded over all devices of all processes, each process
generates and scores its share of the crystal chunks, and process 0 writes the tables (the same
tables as a single-process run with the same seed):

    python -m experiments.multi_property --out runs/mp --coordinator 127.0.0.1:12345 \\
        --num-processes 2 --process-id 0 &
    python -m experiments.multi_property --out runs/mp --coordinator 127.0.0.1:12345 \\
        --num-processes 2 --process-id 1
"""

import argparse

from tqdm import tqdm

from experiments import cli
from jaxdos.pipeline.jobs.multi_property import SETTINGS, MultiPropertyConfig, run

__all__ = ["MultiPropertyConfig", "SETTINGS", "run", "main"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=8, help="accepted DOS per setting")
    p.add_argument("--proposals", type=int, default=256, help="DOS proposal budget per setting")
    p.add_argument("--dos-steps", type=int, default=16, help="DOSSampler steps (paper: 128)")
    p.add_argument("--dos-batch", type=int, default=32, help="DOSSampler proposals per batch")
    p.add_argument("--sweep", type=int, nargs="*", default=())
    cli.add_crystal_flags(p, MultiPropertyConfig)
    cli.add_model_flags(p, dos=True)
    cli.add_run_flags(p, out="runs/multi_property")
    cli.add_multihost_flags(p)
    a = p.parse_args(argv)
    try:
        cfg = MultiPropertyConfig(
            samples=a.samples,
            proposals=a.proposals,
            dos_steps=a.dos_steps,
            dos_batch=a.dos_batch,
            sweep=tuple(a.sweep),
            **cli.crystal_settings(a),
            seed=a.seed,
            crystal_model=a.crystal_model,
            dos_model=a.dos_model,
        )
        cli.start_multihost(a)
        tables = run(cfg, a.out, resume=a.resume, force=a.force)
    except ValueError as err:
        cli.config_error(p, err)
    if cli.is_main_process():
        for md in tables.values():
            tqdm.write(md)


if __name__ == "__main__":
    main()
