"""Inverse design: property targets -> accepted DOS -> crystals -> oracle scores -> files.

    jaxdos design --band-gap 2 --crystals 16 --out runs/design
    jaxdos design --band-gap 1.5:2.5 --n-ef 2+-0.3 --crystals-per-dos 4 --out runs/x
    jaxdos design --filter tcm1 --crystals 8 --dos-model runs/sampler --crystal-model runs/cdosgen
    jaxdos design --filter te --te-reference ref.cif --crystals 8 --out runs/te
    jaxdos design ... --out runs/x --resume        # after a kill: continues from the last chunk

Targets: --band-gap (eV), --dos-ef (DOS(E_F), states/eV/atom), --n-ef (N(E_F), states/atom), each
`VALUE` (the paper's +-10 %, or +-0.1 for 0), `VALUE+-TOL` or `LO:HI`; --filter tcm1 | tcm2 | te
(TCM Type 1 / 2, thermoelectric against --te-reference); any combination `Targets` accepts.
Stage 1 accepts ceil(--crystals / --crystals-per-dos) DOS, stage 2 makes --crystals-per-dos
crystals from each (--steps CDOSGen steps, --guidance its classifier-free scale).

Scores: the world's tight-binding oracle, or with --scorer DIR a learned DOS predictor
(jaxdos train-predictor).
Outputs in --out: structures/ (every crystal as CIF, `_hit` when it meets every target, and
crystals.extxyz), crystals.csv / .md (id, formula, atoms, source DOS, validity and reason, the
oracle's E_BG, DOS(E_F), N(E_F), cosine to the condition, one verdict column per target,
meets_targets), dos_pairs.png (condition vs the oracle DOS of the best crystals), properties.png
(histograms against the targets), summary.json, run.json; the accepted DOS in dos/.
"""

import argparse

from tqdm import tqdm

from experiments import cli
from jaxdos.pipeline.jobs.design import DesignConfig, run

__all__ = ["DesignConfig", "run", "main", "add_target_flags"]


def add_target_flags(p: argparse.ArgumentParser) -> None:
    """--band-gap, --dos-ef, --n-ef (VALUE | VALUE+-TOL | LO:HI), --filter, --te-reference."""
    forms = "VALUE (+-10 %%), VALUE+-TOL or LO:HI"
    p.add_argument("--band-gap", metavar="TARGET", help=f"E_BG target in eV: {forms}")
    p.add_argument("--dos-ef", metavar="TARGET", help=f"DOS(E_F), states/eV/atom: {forms}")
    p.add_argument("--n-ef", metavar="TARGET", help=f"N(E_F), states/atom: {forms}")
    p.add_argument("--filter", choices=("tcm1", "tcm2", "te"), help="TCM Type 1/2 or TE filter")
    p.add_argument("--te-reference", metavar="CIF", help="reference crystal of --filter te")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_target_flags(p)
    p.add_argument("--crystals", type=int, default=16, help="crystals in total (16)")
    p.add_argument("--proposals", type=int, help="DOS proposal budget (1000 per accepted DOS)")
    p.add_argument("--dos-steps", type=int, default=16, help="DOSSampler steps (16; paper 128)")
    p.add_argument("--dos-batch", type=int, default=128, help="DOSSampler proposals per batch")
    p.add_argument("--gamma", type=float, default=1.0, help="DOSSampler guidance strength (1)")
    p.add_argument("--best", type=int, default=6, help="crystals in dos_pairs.png (6)")
    cli.add_crystal_flags(p, DesignConfig)
    cli.add_model_flags(p)
    cli.add_run_flags(p, out="runs/design")
    a = p.parse_args(argv)
    try:
        cfg = DesignConfig(
            band_gap=a.band_gap,
            dos_ef=a.dos_ef,
            n_ef=a.n_ef,
            filter=a.filter,
            te_reference=a.te_reference,
            crystals=a.crystals,
            proposals=a.proposals,
            dos_steps=a.dos_steps,
            dos_batch=a.dos_batch,
            gamma=a.gamma,
            best=a.best,
            dos_model=a.dos_model,
            crystal_model=a.crystal_model,
            **cli.crystal_settings(a),
            seed=a.seed,
        )
        summary = run(cfg, a.out, resume=a.resume, force=a.force)
    except ValueError as err:
        cli.config_error(p, err)
    hits = summary.get("hits", {}).get("meets_targets", 0)
    tqdm.write(
        f"{summary['targets']}: {summary['dos_accepted']} DOS accepted, {summary['crystals']} "
        f"crystals ({summary['valid']} valid, {hits} meet every target); results in {a.out}/"
    )


if __name__ == "__main__":
    main()
