"""te_translation and multi_property end to end on the smallest budget their flags allow: the files
and tables each writes, and an interrupted run resumed with --resume gives the same final results.

(tcm_screen's counterpart is in test_experiments_cli.py.)"""

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import multi_property, te_translation
from jaxdos.kernels.pairing import METRIC_ROWS
from jaxdos.pipeline.jobs import multi_property as multi_property_job

CRYSTAL_FLAGS = ["--steps", "2", "--corrector-steps", "0", "--crystal-batch", "1"]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def parse(cell: str) -> tuple[float, int]:
    """A table cell `0.123 [lo, hi] (n=8)`, `12.5 % [lo, hi] (n=8)` or `n/a (n=0)` as (value, n):
    a percentage as a fraction, n/a as NaN."""
    m = re.fullmatch(r"(n/a|(-?\d+\.\d+)( %)? \[(-?\d+\.\d+), (-?\d+\.\d+)\]) \(n=(\d+)\)", cell)
    assert m, cell
    if m[1] == "n/a":
        return math.nan, int(m[6])
    lo, v, hi = float(m[4]), float(m[2]), float(m[5])
    assert lo <= v <= hi, cell
    return v / 100 if m[3] else v, int(m[6])


def pct(cell: str) -> float:
    """A table's percentage cell ("12.5 % [4.1, 30.0] (n=8)") as a fraction."""
    assert " % [" in cell, cell
    return parse(cell)[0]


def stage_arrays(out: Path, name: str, key: str) -> np.ndarray:
    files = sorted((out / "stages" / name).glob("chunk-*.npz"))
    assert files, f"stage {name} wrote no chunk"
    return np.concatenate([np.load(f)[key] for f in files])


def check_metric_rows(rows: list[list[str]], valid_pairs: int) -> None:
    """Matched and random-pairing columns of Table 3 / 5: NaN only with < 2 valid pairs (documented
    in conditioning_metrics), else similarities and JS in range, MAEs >= 0."""
    for name, *values in rows:
        for v, n in map(parse, values):
            assert n == valid_pairs, (name, n)
            if valid_pairs < 2:
                assert math.isnan(v), (name, v)
            elif name in ("cosine", "pearson"):
                assert -1.0 <= v <= 1.0, (name, v)
            elif name == "jensen_shannon":
                assert 0.0 <= v <= 1.0, (name, v)  # in bits
            else:
                assert v >= 0.0 and math.isfinite(v), (name, v)


def interrupt_then_resume(main, argv, out: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:  # the folder holds a run: refuse without --resume
        main(argv)
    assert exc.value.code == 2 and "--resume" in capsys.readouterr().err
    main([*argv, "--resume"])


@pytest.mark.slow
def test_te_translation_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "te"
    argv = ["--references", "2", "--crystals-per-dos", "1", *CRYSTAL_FLAGS, "--out", str(out)]
    te_translation.main(argv)

    config = json.loads((out / "run.json").read_text())["config"]
    assert config == {
        "crystals_per_dos": 1,
        "cfg_scale": 2.0,
        "steps": 2,
        "corrector_steps": 0,
        "crystal_batch": 1,
        "crystal_model": None,
        "scorer": None,
        "guide_predictor": None,
        "guide_strength": 1.0,
        "references": 2,
        "cif": [],
        "seed": 0,
    }
    header, rows = read_csv(out / "table5.csv")
    assert header == ["metric", "translation", "random pairing"]
    names = ["cosine", "pearson", "jensen_shannon", "E_BG MAE", "DOS(E_F) MAE", "N(E_F) MAE"]
    assert [r[0] for r in rows] == [*names, "TE-filter pass rate", "valid crystals"]
    assert (out / "table5.md").read_text().count("\n") == 2 + len(rows)

    valid = stage_arrays(out, "crystals", "valid")
    assert valid.shape == (2,)  # 2 references x 1 crystal, one chunk each
    assert len(list((out / "stages" / "crystals").glob("chunk-*.npz"))) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {
        "references",
        "metrics",
        "metrics_ci",
        "te_pass",
        "te_pass_ci",
        "te_pass_random",
        "te_pass_random_ci",
        "valid",
        "valid_ci",
        "crystals",
        "unique",
        "unique_ci",
        "novel",
        "novel_ci",
    }
    assert len(set(summary["references"])) == 2 and summary["crystals"] == 2
    assert list(summary["metrics"]) == list(METRIC_ROWS)
    check_metric_rows(rows[:6], int(valid.sum()))
    for k in ("te_pass", "te_pass_random", "unique", "novel"):
        assert 0.0 <= summary[k] <= 1.0, k
    for cell, key in zip(rows[6][1:], ("te_pass", "te_pass_random"), strict=True):
        assert parse(cell) == (pytest.approx(summary[key], abs=5e-4), 2)  # printed as 12.3 %
        assert summary[key + "_ci"]["n"] == 2
    assert parse(rows[7][1]) == (pytest.approx(valid.mean(), abs=5e-4), 2)

    # Every crystal is written (a valid one always converts), TE-filter passes tagged `_hit`.
    cifs = sorted((out / "structures").glob("crystal_*.cif"))
    assert valid.sum() <= len(cifs) <= len(valid)
    assert sum("_hit" in p.name for p in cifs) == round(summary["te_pass"] * len(valid))
    if valid.any():
        assert (out / "structures" / "crystals.extxyz").exists()
        assert (out / "translation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = {p.name: p.read_bytes() for p in (out / "table5.csv", out / "summary.json", *cifs)}

    # Killed during the crystal stage: its last chunk and everything after it are missing.
    (out / "stages" / "crystals" / "chunk-000001.npz").unlink()
    for name in ("table5.md", "table5.csv", "summary.json", "translation.png"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "structures", ignore_errors=True)
    interrupt_then_resume(te_translation.main, argv, out, capsys)
    after = {p: (out / p).read_bytes() for p in ("table5.csv", "summary.json")}
    after |= {p.name: p.read_bytes() for p in sorted((out / "structures").glob("crystal_*.cif"))}
    assert after == before


def tag(targets) -> str:
    return "s" + "_".join("x" if t is None else f"{t:g}" for t in targets)


@pytest.mark.slow
def test_multi_property_end_to_end_sweep_and_resume(tmp_path, capsys):
    out = tmp_path / "mp"
    argv = ["--samples", "2", "--proposals", "64", "--dos-steps", "2", *CRYSTAL_FLAGS]
    argv += ["--sweep", "1", "2", "--out", str(out)]
    multi_property.main(argv)

    record = json.loads((out / "run.json").read_text())
    assert {"command", "config", "versions"} <= set(record)
    assert record["config"] == {
        "crystals_per_dos": 1,
        "cfg_scale": 2.0,
        "steps": 2,
        "corrector_steps": 0,
        "crystal_batch": 1,
        "samples": 2,
        "proposals": 64,
        "dos_steps": 2,
        "dos_batch": 32,
        "sweep": [1, 2],
        "seed": 0,
        "crystal_model": None,
        "scorer": None,
        "guide_predictor": None,
        "guide_strength": 1.0,
        "dos_model": None,
    }

    # Table 1: the two baselines, then each setting that accepted a DOS, then its derived row.
    header, rows = read_csv(out / "table1.csv")
    assert header[0] == "conditioning" and header[-2:] == ["valid", "U.N."] and len(header) == 9
    ran = [
        t for t in multi_property_job.SETTINGS if (out / "stages" / f"crystals_{tag(t)}").exists()
    ]
    expected = [("unconditional", (2.0, 1.5, 2.0)), ("reference DOS", (2.0, 1.5, 2.0))]
    expected += [(multi_property_job._label(t), t) for t in ran]
    expected += [
        (multi_property_job._label(d) + " (derived)", d)
        for t, d in multi_property_job.DERIVED.items()
        if t in ran
    ]
    assert [r[0] for r in rows] == [label for label, _ in expected]
    for (label, targets), row in zip(expected, rows, strict=True):
        (valid, n), (novel, n_valid) = parse(row[7]), parse(row[8])
        # a setting accepts up to --samples (2) DOS within its --proposals budget, one crystal each
        assert 0.0 <= valid <= 1.0 and 1 <= n <= 2 and n_valid == round(valid * n), label
        assert 0.0 <= novel <= 1.0 or (n_valid == 0 and math.isnan(novel)), label
        for t, hit, mae in zip(targets, row[1:4], row[4:7], strict=True):
            if t is None:
                assert hit == mae == "-", label
            elif valid > 0:  # rates and MAEs are over the valid crystals
                assert 0.0 <= pct(hit) <= 1.0 and 0.0 <= parse(mae)[0] < math.inf, label
                assert parse(hit)[1] == parse(mae)[1] == n_valid, label
            else:
                assert hit == mae == "n/a", label
    for stage in ("reference_dos", "unconditional"):
        assert stage_arrays(out, stage, "valid").shape == (2,)

    header, rows = read_csv(out / "table3.csv")
    assert header == ["metric", "ours", "random pairing"]
    assert [r[0] for r in rows] == list(METRIC_ROWS)
    check_metric_rows(rows, int(stage_arrays(out, "reference_dos", "valid").sum()))
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["metrics_table3", "metrics_table3_ci"]
    for name, *cells in rows:
        for cell, v, ci in zip(
            cells, summary["metrics_table3"][name], summary["metrics_table3_ci"][name], strict=True
        ):
            value, n = parse(cell)
            assert n == ci["n"] and (value == pytest.approx(v, abs=5e-4) or math.isnan(v)), name

    # Table 11: k crystals per accepted E_BG = 2 DOS.
    header, rows = read_csv(out / "table11.csv")
    assert header == ["crystals per DOS", "crystals", "±10% E_BG", "DOS with >= 1 hit", "MAE E_BG"]
    accepted = len(stage_arrays(out, "sweep_1", "source"))
    assert [r[:2] for r in rows] == [["1", str(accepted)], ["2", str(2 * accepted)]]
    for k, row in zip((1, 2), rows, strict=True):
        source = stage_arrays(out, f"sweep_{k}", "source")
        assert np.array_equal(np.bincount(source, minlength=accepted), np.full(accepted, k))
        assert 0.0 <= pct(row[2]) <= 1.0 and 0.0 <= pct(row[3]) <= 1.0
        assert parse(row[2])[1] == k * accepted and parse(row[3])[1] == accepted
        valid = stage_arrays(out, f"sweep_{k}", "valid")
        mae, n = parse(row[4])
        assert n == valid.sum() and (mae >= 0.0 or not valid.any())
    assert rows[0][2] == rows[0][3]  # one crystal per DOS: a hit per crystal is a hit per DOS
    assert not list(out.glob("*.png"))  # this command writes tables only
    tables = ("table1.csv", "table3.csv", "table11.csv", "summary.json")
    before = {name: (out / name).read_bytes() for name in tables}

    # Killed while sampling the last setting's DOS (its shard folder exists, no chunk yet) and,
    # independently, in the middle of the last sweep stage; the tables were never written.
    last = out / f"dos_{tag(multi_property_job.SETTINGS[-1])}"
    shutil.rmtree(last)
    (last / "shard-000").mkdir(parents=True)
    shutil.rmtree(
        out / "stages" / f"crystals_{tag(multi_property_job.SETTINGS[-1])}", ignore_errors=True
    )
    sorted((out / "stages" / "sweep_2").glob("chunk-*.npz"))[-1].unlink()
    for name in (*tables, "table1.md", "table3.md", "table11.md"):
        (out / name).unlink()
    interrupt_then_resume(multi_property.main, argv, out, capsys)
    assert {name: (out / name).read_bytes() for name in tables} == before
