"""The benchmark harness: alternating rounds, median and spread, the quiet-machine flag."""

import time

import pytest

from experiments import benchio


def test_alternate_orders_rounds_and_reports_medians():
    calls = []
    sleeps = {"a": 0.002, "b": 0.006}

    def side(name):
        def fn():
            calls.append(name)
            time.sleep(sleeps[name])

        return fn

    out = benchio.alternate({"a": side("a"), "b": side("b")}, rounds=4)
    # one warm-up each, then a b | b a | a b | b a
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    for name, t in out.items():
        assert len(t["times_s"]) == 4
        assert t["min_s"] <= t["median_s"] <= t["max_s"]
        assert t["spread"] == pytest.approx((t["max_s"] - t["min_s"]) / t["median_s"])
        assert t["median_s"] >= sleeps[name]
    assert out["b"]["median_s"] > out["a"]["median_s"]


def test_alternate_rejects_zero_rounds():
    with pytest.raises(ValueError, match="rounds"):
        benchio.alternate({"a": lambda: None}, rounds=0)


def test_quiet_flag():
    assert benchio.quiet_flag(1.2, 1.9, cores=2) is None
    warning = benchio.quiet_flag(1.2, 5.5, cores=2)
    assert "1.2 before / 5.5 after on 2 cores" in warning


def test_machine_record_names_load_and_versions():
    rec = benchio.machine(load_before=0.5)
    assert rec["load_before"] == 0.5 and rec["load_after"] >= 0.0
    assert rec["cores"] >= 1 and rec["versions"]["jax"]
    assert isinstance(rec["quiet"], bool) and rec["command"]


def test_write_json_adds_the_machine_record(tmp_path):
    import json

    d = json.loads(benchio.write_json(tmp_path / "d.json", {"x": 1}).read_text())
    rows = json.loads(benchio.write_json(tmp_path / "l.json", [{"x": 1}]).read_text())
    assert d["x"] == 1 and "load_after" in d["machine"]
    assert rows["rows"] == [{"x": 1}] and rows["machine"]["cores"] >= 1
