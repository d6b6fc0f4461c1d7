"""The paper's Table 8 audit of DOSSampler outputs, on the world's test split (Appendix F).

    python -m experiments.audit_dos                    # 128 samples per setting (CPU minutes)
    python -m experiments.audit_dos --samples 1024     # the paper's size

Settings: unconditional, E_BG = 2.0 eV, and E_BG = 2.0 eV + N(E_F) = 2.0. Reference sets follow the
paper: conditional settings are scored against test-split entries with E_BG within ±10 % of 2.0 eV;
the unconditional one against a fixed random subsample (seed 0) of at most 5 000 entries.

For each conditional setting three variants are sampled with the same seed: prior only (no
guidance, no rejection), prior + guidance (no rejection), prior + guidance + rejection; the
conditioning hit rates (±10 %) and MAEs of each target property are reported for all three, and the
Table 8 statistics (from `jaxdos.kernels.audit.audit`) for the final, rejected set. Writes
`audit_dos.md`, `audit_dos.json` and `audit_dos.png` (samples vs their cosine-nearest reference).

Rates (plausibility, agreement, non-negativity, hit rates) carry 95 % Wilson intervals and MAEs
bootstrap ones, with their n (`jaxdos.kernels.stats`; `<key>_ci` beside each value in the JSON).
The edge-jump median and unique-nearest count (neither a rate nor a mean) and the pairwise mean
cosine (its pairs share spectra, so a bootstrap of samples would put duplicates in pairs) stay
point statistics.
"""

import argparse

from experiments import cli
from jaxdos.pipeline.jobs.audit_dos import SETTINGS, AuditConfig, run

__all__ = ["main", "SETTINGS"]


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--samples", type=int, default=128, help="per setting (paper: 1024)")
    ap.add_argument("--budget-factor", type=int, default=200, help="proposals = factor * samples")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--steps", type=int, help="denoising steps (default: DOSSamplingConfig)")
    cli.add_sampling_flags(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline-trials", type=int, default=20, help="unique-nearest self-baseline")
    cli.add_model_flags(ap, crystal=False, dest="checkpoint")
    ap.add_argument("--world", help="world file (default: the committed subset)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset")
    ap.add_argument("--out", default="runs/audit_dos")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = AuditConfig(
            samples=args.samples,
            budget_factor=args.budget_factor,
            batch_size=args.batch_size,
            gamma=args.gamma,
            # a bad sampling option fails here, before the model loads
            sampling=cli.sampling_config(args),
            seed=args.seed,
            baseline_trials=args.baseline_trials,
            checkpoint=args.checkpoint,
            world=args.world,
            settings=tuple(s for s in args.settings.split(",") if s),
            progress=not args.quiet,
        )
        report = run(cfg, args.out)
    except ValueError as err:
        cli.config_error(ap, err)
    print(report)


if __name__ == "__main__":
    main()
