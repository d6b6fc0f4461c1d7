"""Transparent-conducting-material screen (paper Section 6.1, Table 4), end to end.

    property (TCM Type 1 / Type 2) -> DOSSampler + band-gap prior below E_F + rejection
        -> CDOSGen (several crystals per accepted DOS, classifier-free guidance)
        -> tight-binding oracle on every crystal -> TCM yield and type-correct rate
    against unconditional CDOSGen samples scored by the same oracle.

    python -m experiments.tcm_screen [--accept 16] [--crystals-per-dos 4] [--out runs/tcm_screen]
    python -m experiments.tcm_screen --large --out runs/tcm_large

--large: 64 accepted DOS per type from up to 4096 proposals, 4 crystals each, and 256
unconditional crystals (`jaxdos.pipeline.jobs.tcm_screen.LARGE`), so that the lifts carry
intervals narrow enough to exclude 1; flags given explicitly still win.

Every stage is chunked in a `RunDir`; after a kill, `--resume` continues from the last chunk and
gives the same final tables as an uninterrupted run.

Every rate reads `value [lo, hi] (n=...)` with its 95 % Wilson interval; a lift (conditioned over
unconditional TCM yield) carries the log-ratio interval of two binomials and both n
(`jaxdos.kernels.stats`). summary.json keeps each value and adds its `*_ci` {lo, hi, n} beside it.

Multi-host (docs/multihost.md): every process runs the same command with its own --process-id and
a shared --out; the DOS sampling is sharded over all devices of all processes, each process
generates and scores its share of the crystal chunks, and process 0 writes the tables, structures
and figures. The result equals a single-process run with the same seed.

    python -m experiments.tcm_screen --out runs/tcm --coordinator 127.0.0.1:12345 \
        --num-processes 2 --process-id 0 &
    python -m experiments.tcm_screen --out runs/tcm --coordinator 127.0.0.1:12345 \
        --num-processes 2 --process-id 1
    srun --nodes=4 --ntasks-per-node=1 python -m experiments.tcm_screen --out /shared/tcm \
        --auto-cluster
"""

import argparse

from tqdm import tqdm

from experiments import cli
from jaxdos.pipeline.jobs.tcm_screen import LARGE, ScreenConfig, run

__all__ = ["ScreenConfig", "run", "main"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--accept", type=int, default=4, help="accepted DOS per TCM type")
    p.add_argument("--proposals", type=int, default=512, help="DOS proposal budget per type")
    p.add_argument("--dos-steps", type=int, default=16, help="DOSSampler steps (paper: 128)")
    p.add_argument("--uncond", type=int, default=None, help="unconditional baseline crystals")
    p.add_argument("--dos-batch", type=int, default=128)
    p.add_argument(
        "--noise-length",
        type=float,
        default=0.0,
        help="correlation length (bins) of the DOSSampler's draw noise (0: Algorithm 2)",
    )
    p.add_argument(
        "--type2-min-width",
        type=float,
        default=0.0,
        help="eV: a Type 2 band must be wider than this (0: the paper's rule, one bin passes)",
    )
    cli.add_crystal_flags(p, ScreenConfig)
    p.add_argument("--devices", type=int, default=None, help="use the first N local devices")
    cli.add_model_flags(p, dos=True)
    cli.add_run_flags(p, out="runs/tcm_screen")
    cli.add_multihost_flags(p)
    p.add_argument("--large", action="store_true", help="the large screen (see above)")
    if p.parse_known_args(argv)[0].large:
        p.set_defaults(**LARGE)  # explicit flags still win
    a = p.parse_args(argv)
    try:
        cfg = ScreenConfig(
            accept=a.accept,
            proposals=a.proposals,
            dos_steps=a.dos_steps,
            uncond=a.uncond,
            dos_batch=a.dos_batch,
            noise_length=a.noise_length,
            type2_min_width=a.type2_min_width,
            **cli.crystal_settings(a),
            seed=a.seed,
            crystal_model=a.crystal_model,
            dos_model=a.dos_model,
            devices=a.devices,
        )
        cli.start_multihost(a)
        cli.check_local_devices(cfg.devices)
        result = run(cfg, a.out, resume=a.resume, force=a.force)
    except ValueError as err:
        cli.config_error(p, err)
    if not cli.is_main_process():
        return
    tqdm.write(result["table"])
    tqdm.write(f"results in {a.out}/ (table4.md, summary.json, structures_*/, *.png)")


if __name__ == "__main__":
    main()
