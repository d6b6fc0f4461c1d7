"""The chunk store: atomic writes, manifests as the record of what is done, several writers in
one folder, the time-based flush, and a SIGKILLed writer that resumes to exactly the rows of an
uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxdos.chunkstore import ChunkStore, Flush, atomic_write, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_whole_files_and_a_failed_write_keeps_the_old_one(tmp_path):
    path = tmp_path / "f.json"
    write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1} and read_json(tmp_path / "absent.json") is None

    def broken(fh):
        fh.write(b'{"a": 2')  # half a file, then the writer dies
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, broken)
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temporary left
    atomic_write(path, b"{}")
    assert read_json(path) == {}


def test_put_lists_chunks_and_ignores_unlisted_files(tmp_path):
    store = ChunkStore(tmp_path / "s")
    assert store.manifest() is None and store.read_all() == {}
    store.put(0, {"x": np.arange(3), "y": np.ones((3, 2))}, info={"stop": 1}, state={"n": 1})
    store.put(1, {"x": np.arange(3, 5), "y": np.zeros((2, 2))}, info={"stop": 2}, state={"n": 2})
    m = store.manifest()
    assert m["n"] == 2 and [(c["number"], c["rows"], c["stop"]) for c in m["chunks"]] == [
        (0, 3, 1),
        (1, 2, 2),
    ]
    # A chunk written by a writer killed before its manifest update is not part of the store...
    np.savez(store.folder / store.chunk_name(2), x=np.arange(99), y=np.zeros((99, 2)))
    np.testing.assert_array_equal(store.read_all()["x"], np.arange(5))
    # ... and a resumed writer that keeps only the entries it trusts overwrites it.
    store.put(1, {"x": np.arange(3, 6), "y": np.zeros((3, 2))}, keep=m["chunks"][:1])
    np.testing.assert_array_equal(store.read_all()["x"], np.arange(6))
    assert store.manifest()["n"] == 2  # the state is kept when none is given
    with pytest.raises(ValueError, match="rows"):
        store.put(3, {"x": np.arange(2), "y": np.arange(3)})
    (store.folder / store.chunk_name(0)).unlink()
    assert store.present() == {1}


def test_writers_share_a_folder_through_their_own_manifests(tmp_path):
    a, b = ChunkStore(tmp_path, writer=0), ChunkStore(tmp_path, writer=1)
    for i in range(4):
        (a if i % 2 == 0 else b).put(i, {"x": np.full(2, i)})
    assert sorted(p.name for p in tmp_path.glob("manifest*.json")) == [
        "manifest-001.json",
        "manifest.json",
    ]
    assert sorted(ChunkStore(tmp_path, writer=5).listed()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(a.read_all()["x"], np.repeat(np.arange(4), 2))


def test_flush_limits():
    flush = Flush(rows=10, units=3, seconds=60.0)
    now = time.monotonic()
    assert not flush.due(9, 2, now)
    assert flush.due(10, 0, now) and flush.due(0, 3, now)
    assert flush.due(0, 0, now - 61.0)  # a minute passed: flush whatever is buffered
    for kwargs, name in ((dict(rows=0), "rows"), (dict(units=0), "units")):
        with pytest.raises(ValueError, match=name):
            Flush(**kwargs)
    with pytest.raises(ValueError, match="flush_seconds"):
        Flush(seconds=0)


# Units of work u = 0, 1, ... each give rows 3u..3u+2; only the clock flushes (rows and units
# limits are never reached), and the manifest's state says where to resume.
_WRITER = """
import sys, time
import numpy as np
from jaxdos.chunkstore import ChunkStore, Flush
out, total, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
store = ChunkStore(out)
m = store.manifest()
keep = [] if m is None else m["chunks"]
start = 0 if m is None else m["next_unit"]
flush = Flush(rows=10**9, units=10**9, seconds=seconds)
buffer, since = [], time.monotonic()
for u in range(start, total):
    buffer.append(np.arange(3 * u, 3 * u + 3))
    time.sleep(0.01)
    if u + 1 == total or flush.elapsed(since):
        rows = {"x": np.concatenate(buffer)}
        entry = store.put(len(keep), rows, state={"next_unit": u + 1}, keep=keep)
        keep.append(entry)
        buffer, since = [], time.monotonic()
"""


def _writer(out, total=300, seconds=0.05):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-c", _WRITER, str(out), str(total), str(seconds)]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)


def test_sigkilled_writer_resumes_to_the_rows_of_an_uninterrupted_run(tmp_path):
    proc = _writer(tmp_path)
    manifest = tmp_path / "manifest.json"
    killed, deadline = False, time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and len(json.loads(manifest.read_text())["chunks"]) >= 3:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed, "the writer finished before it could be killed; make it longer"
    stopped = json.loads(manifest.read_text())["next_unit"]
    assert 3 <= stopped < 300  # the clock flushed several chunks before the kill
    resumed = _writer(tmp_path)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err.decode()[-3000:]
    x = ChunkStore(tmp_path).read_all()["x"]
    np.testing.assert_array_equal(x, np.arange(900))  # every row once, in order
    assert not list(tmp_path.glob(".*.tmp"))
