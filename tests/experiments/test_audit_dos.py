"""The audit report: Table 8 rows per setting; conditioning rows score only targeted settings."""

from experiments.audit_dos import _markdown

STATS = {
    "plausibility_rate": 37.5,
    "agreement_rate": 9.4,
    "edge_jump_median": 0.245,
    "nonneg_rate": 100.0,
    "pairwise_cosine": 0.33,
    "unique_nearest": 4,
}


def test_markdown_reports_targets_and_no_nan_for_untargeted_settings():
    results = {
        "uncond": {"variants": {"unconditional": {"proposals": 32, "n": 32}}, "audit": STATS},
        "bg2": {
            "variants": {
                "guided+rejection": {
                    "proposals": 256,
                    "n": 32,
                    "band_gap": {"hit_rate": 1.0, "mae": 0.107},
                }
            },
            "audit": {**STATS, "ref_plausibility_rate": 50.0, "ref_unique_nearest": "4 ± 1"},
        },
    }
    md = _markdown(results, 32)
    assert "nan" not in md
    assert "| uncond | unconditional | 32 | 32 | - | - | - |" in md
    assert "| bg2 | guided+rejection | 256 | 32 | band_gap | 1.000 | 0.107 |" in md
    assert "| Plausibility rate (%) ↑ | 37.5 | 37.5 | 50.0 |" in md
    assert "| Unique nearest reference (32) ↑ | 4 | 4 | 4 ± 1 |" in md
