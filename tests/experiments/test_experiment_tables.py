"""The tables and summary.json of tcm_screen, te_translation and multi_property carry a 95 %
interval and n beside every rate, MAE and mean similarity. Seeded fakes replace the generation
stages, so this runs in seconds (the slow end-to-end tests cover the real pipeline)."""

import dataclasses
import json
import re
import zlib

import numpy as np
import pytest

from jaxdos.kernels import stats
from jaxdos.kernels.pairing import METRIC_ROWS
from jaxdos.pipeline.jobs import multi_property, tcm_screen, te_translation

NUM = r"(-?\d+\.\d+|inf)"
CELL = rf"{NUM}( %|x)? \[{NUM}, {NUM}\] \(n=\d+( vs \d+)?\)"  # value [lo, hi] (n=...)


def fake_stage(rd, name, *, cfg, seed, dos=None, n=None):
    """What `crystal_stage` returns, drawn at random: every other crystal valid, ~30 % TCM hits."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    per = cfg.crystals_per_dos
    m = len(dos) * per if dos is not None else n
    valid = np.arange(m) % 2 == 0
    return {
        "num_atoms": np.full(m, 4),
        "source": np.repeat(np.arange(len(dos)), per) if dos is not None else np.zeros(m, int),
        "valid": valid,
        "oracle_dos": rng.random((m, 256)).astype(np.float32),
        "band_gap": rng.uniform(0, 4, m),
        "dos_at_fermi": rng.uniform(0, 3, m),
        "integrated_dos": rng.uniform(0, 4, m),
        **{k: rng.random(m) < 0.3 for k in ("is_tcm", "type1", "type2")},
        "bandwidth": rng.uniform(0.0, 2.0, m),
        "crystals_per_second": 1.0,
        "unique": 1.0,
        "novel": 0.5,
    }


class FakeAccepted:
    """What `sample_dos` returns: `accept` random DOS out of `proposals`."""

    def __init__(self, targets, *, accept, proposals, seed, **_):
        self.dos = np.random.default_rng(seed).random((accept, 256)).astype(np.float32)
        self.proposals, self.acceptance_rate = proposals, accept / proposals

    def __len__(self):
        return len(self.dos)


class FakeWorld:
    dos = np.random.default_rng(1).random((20, 256)).astype(np.float32)

    def __len__(self):
        return len(self.dos)


def cells(markdown: str) -> list[list[str]]:
    return [r.strip("| ").split(" | ") for r in markdown.splitlines()[2:]]


@pytest.fixture
def no_generation(monkeypatch):
    for module in (tcm_screen, te_translation, multi_property):
        monkeypatch.setattr(module, "crystal_stage", fake_stage)
        for name in ("write_structures", "write_every_structure", "plot_dos_pairs"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, lambda *a, **k: None)
    monkeypatch.setattr(tcm_screen, "sample_dos", FakeAccepted)
    monkeypatch.setattr(multi_property, "sample_dos", FakeAccepted)
    monkeypatch.setattr(multi_property, "load_world", lambda split: FakeWorld())


def test_tcm_screen_table4_and_summary(tmp_path, no_generation):
    cfg = tcm_screen.ScreenConfig(accept=8, proposals=64, crystals_per_dos=2, uncond=32)
    result = tcm_screen.run(cfg, tmp_path / "s")
    rows = cells(result["table"])
    assert rows[0][:3] == ["unconditional CDOSGen", "-", "32"]
    for row in rows[1:]:
        assert row[1] == "12.5 % [6.5, 22.8] (n=64)"  # 8 of 64 accepted
        for cell in (row[3], row[4], row[6]):
            assert re.fullmatch(CELL, cell), cell
        assert row[5].endswith("(n=16 vs 32)") and row[7].endswith("(n=16 vs 32)")
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    t = summary["types"]["type1"]
    assert t["acceptance_rate_ci"]["n"] == 64
    lo, hi = stats.wilson(round(t["tcm_yield"] * 16), 16)
    assert t["tcm_yield_ci"] == {"lo": lo, "hi": hi, "n": 16}
    assert t["tcm_lift_ci"]["n"] == [16, 32] and t["unique_ci"]["n"] == 8
    assert summary["uncond"]["is_tcm_ci"]["n"] == 32 and "is_tcm" in summary["uncond"]


def test_tcm_screen_minimum_type2_width_reaches_both_stages(tmp_path, monkeypatch, no_generation):
    asked = []
    monkeypatch.setattr(
        tcm_screen,
        "sample_dos",
        lambda targets, **kw: asked.append(targets) or FakeAccepted(targets, **kw),
    )
    cfg = tcm_screen.ScreenConfig(accept=8, proposals=64, crystals_per_dos=2, uncond=32)
    fake = fake_stage(None, "crystals_type2", cfg=cfg, seed=0, dos=np.zeros((8, 256)))
    width = float(np.median(fake["bandwidth"][fake["type2"]]))  # drops some Type 2 hits
    narrow = fake["type2"] & (fake["bandwidth"] > width)
    paper = tcm_screen.run(cfg, tmp_path / "paper")
    strict = tcm_screen.run(dataclasses.replace(cfg, type2_min_width=width), tmp_path / "strict")
    assert [t.filters[0].criteria.type2_min_width for t in asked] == [0.0, 0.0, width, width]
    assert strict["types"]["type2"]["type_correct_yield"] == narrow.mean()
    assert paper["types"]["type2"]["type_correct_yield"] == fake["type2"].mean() > narrow.mean()
    assert strict["types"]["type2"]["tcm_yield"] == (fake["type1"] | narrow).mean()
    with pytest.raises(ValueError, match="type2_min_width"):
        tcm_screen.ScreenConfig(type2_min_width=3.0)


def test_te_translation_table5_and_summary(tmp_path, monkeypatch, no_generation):
    refs = np.random.default_rng(0).random((6, 256)).astype(np.float32)
    monkeypatch.setattr(te_translation, "reference_dos", lambda cfg: (refs, list("abcdef")))
    cfg = te_translation.TranslationConfig(references=6, crystals_per_dos=2)
    result = te_translation.run(cfg, tmp_path / "t")
    rows = cells(result["table"])
    assert all(re.fullmatch(CELL, c) for r in rows[:6] for c in r[1:]), rows
    assert rows[6][1].endswith("(n=12)") and rows[7][1] == "50.0 % [25.4, 74.6] (n=12)"
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert list(summary["metrics_ci"]) == list(METRIC_ROWS) == list(summary["metrics"])
    matched, random = summary["metrics_ci"]["cosine"]
    assert matched["n"] == random["n"] == 6  # the valid pairs
    assert matched["lo"] <= summary["metrics"]["cosine"][0] <= matched["hi"]
    assert summary["te_pass_ci"]["n"] == 12 and summary["valid_ci"]["n"] == 12


def test_multi_property_tables_and_summary(tmp_path, no_generation):
    cfg = multi_property.MultiPropertyConfig(samples=8, proposals=16, sweep=(2,))
    tables = multi_property.run(cfg, tmp_path / "m")
    rows = cells(tables["table1"])
    uncond = rows[0]
    assert uncond[0] == "unconditional" and uncond[7] == "50.0 % [21.5, 78.5] (n=8)"
    assert uncond[8] == "50.0 % [15.0, 85.0] (n=4)"  # U.N.: 2 of the 4 valid crystals
    for cell in uncond[1:7]:
        assert re.fullmatch(CELL, cell) and cell.endswith("(n=4)"), cell
    t11 = cells(tables["table11"])
    assert t11[0][:2] == ["2", "16"] and t11[0][2].endswith("(n=16)")
    assert t11[0][3].endswith("(n=8)") and t11[0][4].endswith("(n=8)")
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert list(summary) == ["metrics_table3", "metrics_table3_ci"]
    assert summary["metrics_table3_ci"]["band_gap"][0]["n"] == 4
