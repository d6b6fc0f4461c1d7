import numpy as np
import pytest

from jaxdos.pipeline.rundir import RunDir


def test_stage_resumes_without_recomputing(tmp_path):
    calls = []

    def work(i):
        calls.append(i)
        return {"x": np.full(3, i)}

    run = RunDir(tmp_path / "r", {"a": 1})
    run.stage("s", 2, work)
    run2 = RunDir(tmp_path / "r", {"a": 1}, resume=True)
    out = run2.stage("s", 4, work)
    assert calls == [0, 1, 2, 3]
    np.testing.assert_array_equal(out["x"], np.repeat(np.arange(4), 3))


def test_refuses_to_overwrite_or_change_config(tmp_path):
    RunDir(tmp_path / "r", {"a": 1})
    with pytest.raises(ValueError, match="--resume"):
        RunDir(tmp_path / "r", {"a": 1})
    with pytest.raises(ValueError, match="different config"):
        RunDir(tmp_path / "r", {"a": 2}, resume=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no jaxdos run"):
        RunDir(tmp_path / "other", {"a": 1})
    RunDir(tmp_path / "r", {"a": 2}, force=True)


def test_table_files(tmp_path):
    run = RunDir(tmp_path / "r", {})
    md = run.write_table("t", ["k", "v"], [["x", 0.123456]])
    assert "0.1235" in md
    assert (tmp_path / "r" / "t.csv").read_text().splitlines()[1] == "x,0.123456"
