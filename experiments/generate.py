"""Stage 2 alone: crystals from a source of DOS (the counterpart of `mattergen-generate`).

    jaxdos generate runs/bg2 --crystals-per-dos 4 --out runs/gen        # a sample_dos folder
    jaxdos generate data/mp.npz --crystals-per-dos 2 --out runs/gen_mp  # records (load-mp)
    jaxdos generate mp_dos_json/ --crystals-per-dos 4 --out runs/y      # MP Dos / CompleteDos
    jaxdos generate refs_cif/ --crystal-model DIR --out runs/z          # CIF files

SOURCE: an accepted-DOS folder written by `sample_dos`, a records .npz (jaxdos.data Records), a
folder of MP-style pymatgen Dos / CompleteDos JSON (resampled by the MP loader; each needs its
structure, embedded or paired, for the per-atom normalisation), or a folder of CIF files (<= 20
atoms each) whose DOS the oracle computes. The source is read and checked before any compute.

Scores: the world's tight-binding oracle, or with --scorer DIR a learned DOS predictor
(jaxdos train-predictor).
Outputs in --out: what `jaxdos design` writes (structures/, crystals.csv / .md, dos_pairs.png,
properties.png, summary.json, run.json), without target verdicts.

Multi-host (docs/multihost.md): every process runs the same command with its own --process-id and
the same shared --out; each batch of crystals is generated on every device of every process and
process 0 writes the outputs.
"""

import argparse

from tqdm import tqdm

from experiments import cli
from jaxdos.pipeline.jobs.generate import GenerateConfig, run

__all__ = ["GenerateConfig", "run", "main"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("source", help="sample_dos folder, records .npz, DOS JSON folder or CIF folder")
    p.add_argument("--best", type=int, default=6, help="crystals in dos_pairs.png (6)")
    cli.add_crystal_flags(p, GenerateConfig)
    cli.add_model_flags(p, dos=False)
    cli.add_run_flags(p, out="runs/generate")
    cli.add_multihost_flags(p)
    a = p.parse_args(argv)
    try:
        cfg = GenerateConfig(
            source=a.source,
            best=a.best,
            crystal_model=a.crystal_model,
            **cli.crystal_settings(a),
            seed=a.seed,
        )
        cli.start_multihost(a)
        summary = run(cfg, a.out, resume=a.resume, force=a.force)
    except ValueError as err:
        cli.config_error(p, err)
    if not cli.is_main_process():
        return
    tqdm.write(
        f"{summary['dos']} DOS ({summary['source_kind']}) -> {summary['crystals']} crystals "
        f"({summary['valid']} valid); results in {a.out}/"
    )


if __name__ == "__main__":
    main()
