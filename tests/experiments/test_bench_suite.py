"""Cheap checks of the throughput benchmarks' plumbing (the timed runs are too slow here).

* gpu_suite.sh parses, names every benchmark the issue lists and gives every step a timeout;
* bench_crystal_vs_mattergen and bench_crystal_train_vs_mattergen skip with the install hint (and
  write their JSON) without mattergen, and the latter rejects bad --budgets before any work;
* bench_scaling and bench_end_to_end reject bad counts before starting any work;
* bench_end_to_end's screen part reports the missing embedded models instead of running;
* bench_sampler_train's --quick run writes one row per batch with its share of the peak.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from experiments import (
    bench_crystal_train_vs_mattergen,
    bench_crystal_vs_mattergen,
    bench_end_to_end,
    bench_sampler_train,
    bench_scaling,
)

SUITE = Path(__file__).resolve().parents[2] / "experiments" / "gpu_suite.sh"
BENCHES = (
    "bench_kernels",
    "bench_oracle",
    "bench_sampler",
    "bench_sampler_train",
    "bench_sampler_vs_torch",
    "bench_rejection",
    "bench_crystal",
    "bench_crystal_vs_mattergen",
    "bench_scaling",
    "bench_end_to_end",
)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_suite_parses_and_covers_every_benchmark():
    assert subprocess.run(["bash", "-n", str(SUITE)]).returncode == 0
    text = SUITE.read_text()
    for name in BENCHES:
        assert f"experiments.{name}" in text, name
    assert "pytest" in text and "tests/parity" in text
    # every benchmark / test invocation goes through `step NAME TIMEOUT`
    steps = re.findall(r"^\s*step (\S+) (\S+)", text, flags=re.M)
    assert {s for s, _ in steps} >= set(BENCHES) | {"parity_tests"}
    assert "--no-index" in text and "JAX_DEFAULT_MATMUL_PRECISION=highest" in text


def test_crystal_vs_mattergen_skips_without_mattergen(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_crystal_vs_mattergen, "_missing", lambda: "mattergen")
    out = tmp_path / "r.json"
    assert bench_crystal_vs_mattergen.main(["--quick", "--out", str(out)]) is None
    assert "skipped: mattergen not importable" in capsys.readouterr().out
    assert "install_parity.sh" in json.loads(out.read_text())["skipped"]


def test_crystal_train_vs_mattergen_skips_and_checks_budgets(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_crystal_train_vs_mattergen, "_missing", lambda: "torch")
    out = tmp_path / "t.json"
    assert bench_crystal_train_vs_mattergen.main(["--quick", "--out", str(out)]) is None
    assert "skipped: torch not importable" in capsys.readouterr().out
    assert "install_parity.sh" in json.loads(out.read_text())["skipped"]
    with pytest.raises(SystemExit):
        bench_crystal_train_vs_mattergen.main(["--budgets", "3", "8", "--out", str(out)])
    assert "--budgets: expected an even E" in capsys.readouterr().err


def test_bad_counts_are_rejected_before_work(tmp_path):
    with pytest.raises(ValueError, match="--devices"):
        bench_scaling.main(["--devices", "0", "--out", str(tmp_path / "s.json")])
    with pytest.raises(ValueError, match="--n, --batch"):
        bench_end_to_end.main(["--n", "0", "--out", str(tmp_path / "e.json")])
    with pytest.raises(ValueError, match="--steps"):
        bench_crystal_vs_mattergen.main(["--steps", "1", "--out", str(tmp_path / "c.json")])


def test_screen_reports_missing_models(tmp_path, monkeypatch):
    import jaxdos.crystal.checkpoint as cc
    import jaxdos.sampler.checkpoint as sc

    monkeypatch.setattr(sc, "DEFAULT_DIR", tmp_path / "no_sampler")
    monkeypatch.setattr(cc, "DEFAULT_DIR", tmp_path / "no_crystal")
    res = bench_end_to_end.time_tcm_screen(timeout=1.0)
    assert res["tcm_screen"] == "not run"
    assert "no_sampler" in res["reason"] and "no_crystal" in res["reason"]


def test_sampler_train_quick_writes_a_row_per_batch(tmp_path):
    out = tmp_path / "t.json"
    bench_sampler_train.main(["--quick", "--out", str(out)])
    body = json.loads(out.read_text())
    assert [r["batch"] for r in body["rows"]] == [4, 8]
    for row in body["rows"]:
        assert row["median_s"] > 0 and row["gflop"] > 0 and 0 < row["peak_fraction"] < 2
    assert body["peak_gflops"] > 0 and body["rounds"] == 3
