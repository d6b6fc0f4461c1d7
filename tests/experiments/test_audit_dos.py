"""The audit report: Table 8 rows per setting with 95 % intervals and n; conditioning rows score
only targeted settings."""

from jaxdos.kernels import stats
from jaxdos.pipeline.jobs.audit_dos import _markdown, _rate_intervals

STATS = {
    "plausibility_rate": 37.5,
    "agreement_rate": 9.375,
    "edge_jump_median": 0.245,
    "nonneg_rate": 100.0,
    "pairwise_cosine": 0.33,
    "unique_nearest": 4,
}
REF = {"ref_" + k: v for k, v in STATS.items()} | {"ref_plausibility_rate": 50.0}


def test_rate_intervals_are_wilson_in_percent_over_samples_and_reference():
    ci = _rate_intervals({**STATS, **REF}, 32, 64)
    lo, hi = stats.wilson(12, 32)  # 37.5 % of 32 samples
    assert ci["plausibility_rate_ci"] == {"lo": 100 * lo, "hi": 100 * hi, "n": 32}
    assert ci["ref_plausibility_rate_ci"]["n"] == 64
    assert ci["nonneg_rate_ci"]["hi"] == 100.0


def test_markdown_reports_targets_intervals_and_no_nan_for_untargeted_settings():
    row = {**STATS, **REF}
    row |= _rate_intervals(row, 32, 64)
    hit = {"hit_rate": 1.0, "hit_rate_ci": stats.rate(32, 32).ci(), "mae": 0.107}
    hit["mae_ci"] = {"lo": 0.09, "hi": 0.125, "n": 32}
    results = {
        "uncond": {"variants": {"unconditional": {"proposals": 32, "n": 32}}, "audit": row},
        "bg2": {
            "variants": {"guided+rejection": {"proposals": 256, "n": 32, "band_gap": hit}},
            "audit": {**row, "ref_unique_nearest": "4 ± 1"},
        },
    }
    md = _markdown(results, 32)
    assert "nan" not in md
    assert "| uncond | unconditional | 32 | 32 | - | - | - |" in md
    assert (
        "| bg2 | guided+rejection | 256 | 32 | band_gap | 100.0 % [89.3, 100.0] (n=32) "
        "| 0.107 [0.090, 0.125] (n=32) |"
    ) in md
    plausible = "37.5 % [22.9, 54.7] (n=32)"
    assert (
        f"| Plausibility rate (%) ↑ | {plausible} | {plausible} | 50.0 % [38.1, 61.9] (n=64) |"
        in md
    )
    assert "| 4-metric agreement (%) ↑ | 9.4 % [3.2, 24.2] (n=32) |" in md
    assert "| Unique nearest reference (32) ↑ | 4 | 4 | 4 ± 1 |" in md


def test_markdown_without_intervals_keeps_the_plain_numbers():
    results = {
        "uncond": {"variants": {"unconditional": {"proposals": 32, "n": 32}}, "audit": STATS}
    }
    md = _markdown(results, 32)
    assert "| Plausibility rate (%) ↑ | 37.5 |  |" in md
