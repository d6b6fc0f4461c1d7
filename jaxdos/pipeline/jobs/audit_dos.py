"""The paper's Table 8 audit of DOSSampler outputs, on the world's test split (Appendix F), as a
library job.

Settings: unconditional, E_BG = 2.0 eV, and E_BG = 2.0 eV + N(E_F) = 2.0. Reference sets follow the
paper: conditional settings are scored against test-split entries with E_BG within ±10 % of 2.0 eV;
the unconditional one against a fixed random subsample (seed 0) of at most 5 000 entries. For each
conditional setting three variants are sampled with the same seed: prior only, prior + guidance,
prior + guidance + rejection. `run(AuditConfig(...), out)` writes `audit_dos.md`,
`audit_dos.json` and `audit_dos.png`; `python -m experiments.audit_dos` is its command line.
"""

import dataclasses
import functools
from pathlib import Path

import numpy as np

from jaxdos.chunkstore import write_json
from jaxdos.kernels.properties import within_tolerance
from jaxdos.pipeline.writers import plot_nearest_grid
from jaxdos.sampler.config import DOSSamplingConfig

__all__ = ["AuditConfig", "SETTINGS", "run", "run_setting"]

# name -> target values (properties of jaxdos.kernels.properties)
SETTINGS = {
    "uncond": {},
    "bg2": {"band_gap": 2.0},
    "bg2_n2": {"band_gap": 2.0, "integrated_dos": 2.0},
}


def _reference(records, values: dict, seed: int = 0, cap: int = 5000) -> np.ndarray:
    dos = np.asarray(records.dos, np.float32)
    if "band_gap" in values:
        keep = within_tolerance(records.band_gap, values["band_gap"])
        return dos[keep]
    if dos.shape[0] > cap:
        dos = dos[np.sort(np.random.default_rng(seed).choice(dos.shape[0], cap, replace=False))]
    return dos


def _hits(result, values: dict) -> dict:
    """Hit rate (+-10 %) and MAE of each target, each with its 95 % interval and n (`*_ci`)."""
    from jaxdos.kernels import stats

    out = {}
    for name, y in values.items():
        measured = np.asarray(result.properties[name], np.float64)
        hit = stats.rate(np.sum(within_tolerance(measured, y)), measured.size)
        mae = stats.mean(np.abs(measured - y))
        out[name] = {
            "hit_rate": hit.value,
            "hit_rate_ci": hit.ci(),
            "mae": mae.value,
            "mae_ci": mae.ci(),
        }
    return out


# The Table 8 rates `jaxdos.kernels.audit.audit` returns, in % of the samples (or reference).
RATES = ("plausibility_rate", "agreement_rate", "nonneg_rate")


def _rate_intervals(stats_row: dict, n: int, ref_n: int) -> dict:
    """`<rate>_ci` {lo, hi, n} (in %, as the rates) beside each Table 8 rate and its `ref_` twin."""
    from jaxdos.kernels import stats

    out = {}
    for prefix, size in (("", n), ("ref_", ref_n)):
        for key in RATES:
            r = stats.rate(round(stats_row[prefix + key] * size / 100), size)
            out[prefix + key + "_ci"] = {"lo": 100 * r.lo, "hi": 100 * r.hi, "n": size}
    return out


def run_setting(values: dict, sampler, records, cfg: "AuditConfig"):
    """One setting: its variants' hit rates and MAEs and the Table 8 statistics of the final set;
    also `(samples, reference, nearest)` for the figure."""
    import jax

    from jaxdos.kernels.audit import audit, unique_nearest, unique_nearest_baseline
    from jaxdos.sampler.proposal import guided_proposer
    from jaxdos.sampler.rejection import RejectionConfig, run_rejection
    from jaxdos.sampler.targets import Targets

    params, model_config, dist = sampler.params, sampler.config, sampler.scale_distribution
    targets = Targets.of(**values)
    sampling = cfg.sampling or DOSSamplingConfig()
    n = cfg.samples
    variants = {}
    plan = [
        ("prior", 0.0, False),
        ("guided", cfg.gamma, False),
        ("guided+rejection", cfg.gamma, True),
    ]
    if not values:
        plan = [("unconditional", 0.0, False)]
    final = None
    for label, gamma, reject in plan:
        proposer = guided_proposer(
            params, model_config, dist, targets, sampling_config=sampling, gamma=gamma
        )
        accept_spec = targets if reject else Targets()
        rejection = RejectionConfig(
            accept=n,
            proposals=n * cfg.budget_factor if reject else n,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
        )
        result = run_rejection(proposer, accept_spec, rejection, progress=cfg.progress)
        variants[label] = {"n": len(result), "proposals": result.proposals, **_hits(result, values)}
        final = result
    reference = _reference(records, values)
    stats = audit(final.dos, reference) if len(final) >= 2 and reference.shape[0] >= 2 else {}
    if stats:
        stats |= _rate_intervals(stats, len(final), reference.shape[0])
    nearest = np.asarray(unique_nearest(final.dos, reference)[1]) if stats else np.zeros(0, int)
    if stats and reference.shape[0] > len(final):
        # The reference's own unique-nearest count for subsets of the same size (paper: 911 ± 9).
        counts = np.asarray(
            unique_nearest_baseline(
                reference, len(final), jax.random.key(cfg.seed), trials=cfg.baseline_trials
            )
        )
        stats["ref_unique_nearest"] = f"{counts.mean():.0f} ± {counts.std():.0f}"
    return {
        "targets": targets.describe(),
        "reference_size": int(reference.shape[0]),
        "variants": variants,
        "audit": stats,
    }, (final.dos, reference, nearest)


def _cell(d: dict, key: str, fmt: str, *, rate: bool = False, scale: float = 1.0) -> str:
    """d[key] as `value [lo, hi] (n=...)` when d holds its `<key>_ci` (a rate in units of
    1 / scale if `rate`), else with `fmt` (results without intervals, strings as they are)."""
    from jaxdos.kernels.stats import Estimate
    from jaxdos.kernels.stats import fmt as render

    value, ci = d.get(key, float("nan")), d.get(key + "_ci")
    if isinstance(value, str):
        return value
    if ci is None:
        return fmt.format(value)
    est = Estimate(value / scale, ci["lo"] / scale, ci["hi"] / scale, ci["n"])
    return render(est, percent=rate)


def _markdown(results: dict, samples: int) -> str:
    cols = list(results)
    rows = [
        ("Plausibility rate (%) ↑", "plausibility_rate", "{:.1f}"),
        ("4-metric agreement (%) ↑", "agreement_rate", "{:.1f}"),
        ("Edge jump (gapped, median) ↓", "edge_jump_median", "{:.3f}"),
        ("Per-bin non-negativity (%) ↑", "nonneg_rate", "{:.0f}"),
        ("Pairwise mean cosine ↓", "pairwise_cosine", "{:.2f}"),
        (f"Unique nearest reference ({samples}) ↑", "unique_nearest", "{:.0f}"),
    ]
    lines = [f"# DOSSampler audit (Table 8), {samples} samples per setting", ""]
    lines.append("Rates: value [95 % Wilson interval] (n). Conditioning MAEs: [95 % bootstrap].")
    lines.append("")
    lines.append("| metric | " + " | ".join(cols) + " | reference (bg2) |")
    lines.append("|---" * (len(cols) + 2) + "|")
    ref_col = results.get("bg2", {}).get("audit", {})
    for label, key, fmt in rows:
        cell = functools.partial(_cell, fmt=fmt, rate=key in RATES, scale=100)
        vals = [cell(results[c]["audit"], key) for c in cols]
        ref = cell(ref_col, "ref_" + key) if "ref_" + key in ref_col else ""
        lines.append(f"| {label} | " + " | ".join(vals) + f" | {ref} |")
    lines += ["", "## Conditioning: hit rate (±10 %) and MAE", ""]
    lines.append("| setting | variant | proposals | accepted | property | hit rate | MAE |")
    lines.append("|---|---|---|---|---|---|---|")
    for c in cols:
        for v, d in results[c]["variants"].items():
            props = [k for k in d if isinstance(d[k], dict)] or ["-"]
            for p in props:
                h = d.get(p)  # None: no target in this setting, nothing to score
                if h is None:
                    scored = "- | -"
                else:
                    hit = _cell(h, "hit_rate", "{:.3f}", rate=True)
                    scored = f"{hit} | {_cell(h, 'mae', '{:.3f}')}"
                lines.append(f"| {c} | {v} | {d['proposals']} | {d['n']} | {p} | {scored} |")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditConfig:
    """One audit.

    Attributes:
        samples: samples per setting (>= 2; paper: 1024).
        budget_factor: rejection proposals = factor * samples (>= 1).
        batch_size: proposals per jitted batch.
        gamma: classifier-guidance strength of the guided variants.
        sampling: Algorithm 2 settings (None: `DOSSamplingConfig()`).
        seed: the seed of every variant.
        baseline_trials: subsets drawn for the unique-nearest self-baseline.
        checkpoint: a DOSSampler model directory (None: the embedded tiny model).
        world: a world file (None: the committed subset).
        settings: names of `SETTINGS` to run, in order.
        progress: show the rejection loop's bar.
    """

    samples: int = 128
    budget_factor: int = 200
    batch_size: int = 256
    gamma: float = 1.0
    sampling: DOSSamplingConfig | None = None
    seed: int = 0
    baseline_trials: int = 20
    checkpoint: str | None = None
    world: str | None = None
    settings: tuple[str, ...] = tuple(SETTINGS)
    progress: bool = True

    def __post_init__(self):
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown or not self.settings:
            raise ValueError(
                f"settings: expected a subset of {sorted(SETTINGS)}, got {','.join(self.settings)}"
            )
        if self.samples < 2:
            raise ValueError(f"samples: expected >= 2, got {self.samples}")
        if self.budget_factor < 1:
            raise ValueError(f"budget_factor: expected >= 1, got {self.budget_factor}")


def run(cfg: AuditConfig, out) -> str:
    """Audit into `out` (created); returns the markdown report."""
    from jaxdos.data.world import load_world
    from jaxdos.pipeline.models import load_checked

    sampler = load_checked("checkpoint", cfg.checkpoint, "dossampler")
    records = load_world("test", cfg.world)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results, grids = {}, {}
    for name in cfg.settings:
        results[name], grids[name] = run_setting(SETTINGS[name], sampler, records, cfg)
    write_json(out / "audit_dos.json", results)
    md = _markdown(results, cfg.samples)
    (out / "audit_dos.md").write_text(md)
    plot_nearest_grid(grids, out / "audit_dos.png")
    return md
