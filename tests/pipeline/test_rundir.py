import json

import numpy as np
import pytest
from fake_devices import run_on_processes

from jaxdos.pipeline.rundir import RunDir


def _recorded_work(rows: int):
    """`work(i)` giving `rows` copies of i, and the list of the i it was called with."""
    calls = []

    def work(i):
        calls.append(i)
        return {"x": np.full(rows, i)}

    return work, calls


def test_stage_resumes_without_recomputing(tmp_path):
    work, calls = _recorded_work(3)
    run = RunDir(tmp_path / "r", {"a": 1})
    run.stage("s", 2, work)
    run2 = RunDir(tmp_path / "r", {"a": 1}, resume=True)
    out = run2.stage("s", 4, work)
    assert calls == [0, 1, 2, 3]
    np.testing.assert_array_equal(out["x"], np.repeat(np.arange(4), 3))


def test_stage_chunks_go_through_the_store_and_a_lost_chunk_is_recomputed(tmp_path):
    work, calls = _recorded_work(2)
    run = RunDir(tmp_path / "r", {"a": 1})
    run.stage("s", 3, work)
    folder = tmp_path / "r" / "stages" / "s"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [c["file"] for c in manifest["chunks"]] == [f"chunk-00000{i}.npz" for i in range(3)]
    (folder / "chunk-000001.npz").unlink()  # lost by hand: listed, but not on disk
    out = RunDir(tmp_path / "r", {"a": 1}, resume=True).stage("s", 3, work)
    assert calls == [0, 1, 2, 1]
    np.testing.assert_array_equal(out["x"], np.repeat(np.arange(3), 2))
    assert (tmp_path / "r" / "run.json").exists() and not list((tmp_path / "r").glob(".*tmp"))


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


def test_a_collective_stage_runs_every_chunk_on_every_process_and_process_0_writes(tmp_path):
    # work(i) is a cross-process collective (as generate_crystals(across_processes=True) is):
    # every process must call it for every missing chunk, also on resume; process 0 writes.
    script = """
        import sys
        import jax, numpy as np
        from jax.experimental import multihost_utils
        from jaxdos import sharding
        from jaxdos.pipeline.rundir import RunDir
        assert sharding.initialize_distributed()
        calls = []

        def work(i):
            calls.append(i)
            got = multihost_utils.process_allgather(np.int32(10 * i + jax.process_index()))
            return {"x": got} if jax.process_index() == 0 else None

        RunDir(sys.argv[1], {"a": 1}).stage("s", 2, work, collective=True)
        out = RunDir(sys.argv[1], {"a": 1}, resume=True).stage("s", 3, work, collective=True)
        print(calls, out["x"].tolist())
    """
    outs = run_on_processes(script, args=[tmp_path / "r"])
    assert [o.splitlines()[-1] for o in outs] == ["[0, 1, 2] [0, 1, 10, 11, 20, 21]"] * 2
    assert [m.name for m in (tmp_path / "r" / "stages" / "s").glob("manifest*")] == [
        "manifest.json"
    ]
