"""Predictor-guided CDOSGen in the world, scored by the oracle (issue 16's evaluation).

    python -m experiments.eval_guidance --out runs/eval_guidance [--crystals 32] [--steps 50]
        [--guidance 2.0] [--guide-strength 1.0] [--guide-predictor DIR] [--crystal-model DIR]
        [--tcm-type 1] [--band-gap 2.0] [--crystal-batch 32] [--corrector-steps 1] [--seed 0]
        [--tcm-arms ARM ...] [--band-gap-arms [ARM ...]] [--quick] [--resume | --force]

TCM yield at equal crystals and steps for: unconditional CDOSGen; classifier-free guidance on the
world's TCM-like DOS (as tcm_screen conditions); predictor guidance only (the TCM surrogate on
unconditional sampling, or each TCM-like DOS as the predictor's target); and both. E_BG MAE and
in-window rate for a --band-gap target (the paper's +-10 % window): unconditional, CFG on world
DOS with that gap, window guidance only, and both. Every rate prints as `value [lo, hi] (n=...)`
with its 95 % Wilson interval (MAEs: bootstrap); the guide (default: the embedded predictor) is
not the scorer (the oracle). --tcm-arms / --band-gap-arms run a subset of the arms (the
unconditional baseline always runs; --band-gap-arms alone skips the band-gap arms). --quick: 4
crystals per arm, 3 steps, no corrector (flags given explicitly still win).

Outputs in --out: tcm.md / .csv, band_gap.md / .csv, summary.json, run.json, stages/ (resumable).
"""

import argparse

from experiments import cli
from jaxdos.pipeline.jobs.eval_guidance import BAND_GAP_ARMS, TCM_ARMS, EvalGuidanceConfig, run

__all__ = ["main"]

# field -> (flag, type, help[, more argparse keywords]); defaults from EvalGuidanceConfig (or its
# quick preset). --guidance keeps the crystal commands' name for cfg_scale.
_FLAGS = {
    "crystals": ("--crystals", int, "crystals per arm"),
    "steps": ("--steps", int, "CDOSGen sampler steps (MatterGen: 1000)"),
    "corrector_steps": ("--corrector-steps", int, "Langevin corrector iterations per step"),
    "crystal_batch": ("--crystal-batch", int, "crystals per jitted CDOSGen batch"),
    "cfg_scale": ("--guidance", float, "classifier-free guidance scale of the CFG arms"),
    "guide_strength": ("--guide-strength", float, "predictor-guidance strength"),
    "guide_predictor": ("--guide-predictor", str, "guiding dos_predictor directory"),
    "crystal_model": ("--crystal-model", str, "CDOSGen model directory"),
    "tcm_type": ("--tcm-type", int, "TCM type of the conditions and the loss", {"choices": (1, 2)}),
    "band_gap": ("--band-gap", float, "E_BG target in eV (window: +-10 %%)"),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4 crystals per arm, 3 steps (smoke test)")
    full = EvalGuidanceConfig()
    for name, (flag, kind, text, *more) in _FLAGS.items():
        shown = getattr(full, name)
        shown = "embedded" if shown is None else shown
        p.add_argument(
            flag, dest=name, type=kind, default=None, help=f"{text} ({shown})", **dict(*more)
        )
    p.add_argument("--tcm-arms", nargs="+", default=None, help=f"TCM arms ({' '.join(TCM_ARMS)})")
    p.add_argument(
        "--band-gap-arms",
        nargs="*",
        default=None,
        help=f"band-gap arms ({' '.join(BAND_GAP_ARMS)})",
    )
    cli.add_run_flags(p, out="runs/eval_guidance")
    a = p.parse_args(argv)
    given = {k: getattr(a, k) for k in _FLAGS if getattr(a, k) is not None}
    for name in ("tcm_arms", "band_gap_arms"):
        if getattr(a, name) is not None:
            given[name] = tuple(getattr(a, name))
    given["seed"] = a.seed
    try:
        cfg = EvalGuidanceConfig.quick(**given) if a.quick else EvalGuidanceConfig(**given)
        summary = run(cfg, a.out, resume=a.resume, force=a.force)
    except ValueError as err:
        cli.config_error(p, err)
    print(summary["tcm_table"])
    print(summary["band_gap_table"])
    print(f"results in {a.out}/ (tcm.md, band_gap.md, summary.json)")


if __name__ == "__main__":
    main()
