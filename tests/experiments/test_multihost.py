"""The experiment commands on JAX's multi-host runtime: the multi-host flags fail fast with a named
error, and two CPU processes over loopback write the same results as one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import multi_property, tcm_screen, te_translation

ROOT = Path(__file__).resolve().parents[2]
JAX_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


@pytest.mark.parametrize("module", [tcm_screen, te_translation, multi_property])
@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["--num-processes", "2"], {}, "--coordinator, --process-id: required together"),
        ([], {"JAX_PROCESS_ID": "1"}, "--coordinator, --num-processes: required together"),
        (
            ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
            {},
            "--coordinator: expected 'host:port'",
        ),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "0", "--process-id", "0"],
            {},
            "--num-processes: expected >= 1",
        ),
        (
            ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
            {},
            "--process-id: expected in [0, 2)",
        ),
        (["--process-id", "one"], {}, "--process-id: invalid int value"),
    ],
)
def test_bad_multihost_flags_exit_before_compute(
    module, argv, env, message, tmp_path, capsys, monkeypatch
):
    for name in JAX_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        module.main([*argv, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# Two chunks in the unconditional stage, so each process generates one of them.
TINY = [
    *("--accept", "1", "--proposals", "64", "--crystals-per-dos", "2", "--steps", "4"),
    *("--dos-steps", "4", "--uncond", "4", "--dos-batch", "32", "--crystal-batch", "2"),
]
TIMING = ("dos_seconds_this_session", "crystals_per_second")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in JAX_ENV}
    env["PYTHONPATH"] = str(ROOT)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _screen(out, *extra):
    cmd = [sys.executable, "-m", "experiments.tcm_screen", *TINY, "--out", str(out), *extra]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _wait(procs):
    try:
        for p in procs:
            _, err = p.communicate(timeout=900)
            assert p.returncode == 0, err.decode()[-3000:]
    finally:
        for p in procs:  # a failed process leaves its peer waiting at a barrier
            if p.poll() is None:
                p.kill()
                p.communicate()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    for t in summary["types"].values():
        for k in TIMING:
            t.pop(k, None)
    return summary


def _chunks(out: Path) -> dict:
    arrays = {}
    for path in sorted((out / "stages").glob("*/chunk-*.npz")):
        with np.load(path) as z:
            for k in z.files:
                if k != "gen_seconds":
                    arrays[f"{path.parent.name}/{path.name}/{k}"] = z[k]
    return arrays


@pytest.mark.slow
def test_tcm_screen_two_processes_equal_one(tmp_path):
    port = _free_port()
    multi = tmp_path / "multi"
    flags = ("--coordinator", f"127.0.0.1:{port}", "--num-processes", "2")
    _wait([_screen(multi, *flags, "--process-id", str(i)) for i in range(2)])
    single = tmp_path / "single"
    _wait([_screen(single)])

    for name in ("table4.csv", "table4.md"):
        assert (multi / name).read_text() == (single / name).read_text()
    assert _summary(multi) == _summary(single)
    a, b = _chunks(multi), _chunks(single)
    assert sorted(a) == sorted(b) and any(k.startswith("crystals_uncond/chunk-000001") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # The DOS stage ran sharded: one shard per process, merged into one index.
    for dos in multi.glob("dos_*"):
        assert sorted(p.name for p in dos.glob("shard-*")) == ["shard-000", "shard-001"]
        assert (dos / "index.json").exists()
