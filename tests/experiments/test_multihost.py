"""The experiment commands on JAX's multi-host runtime: the multi-host flags fail fast with a named
error, and two CPU processes over loopback write the same results as one process."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_devices import JAX_ENV, ROOT, cpu_env, free_port, run_on_processes, wait_all

from experiments import (
    generate,
    multi_property,
    tcm_screen,
    te_translation,
    train_crystal,
    train_sampler,
)
from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.training import latest_checkpoint

# (command, its arguments before the output folder); generate's source is never read.
COMMANDS = [
    (tcm_screen, ["--out"]),
    (te_translation, ["--out"]),
    (multi_property, ["--out"]),
    (train_sampler, ["--workdir"]),
    (train_crystal, ["--workdir"]),
    (generate, ["no_such_source", "--out"]),
]


@pytest.mark.parametrize("module, out", COMMANDS)
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
    module, out, argv, env, message, tmp_path, capsys, monkeypatch
):
    for name in JAX_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        module.main([*argv, *out, str(tmp_path / "run")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# Two chunks in the unconditional stage, so each process generates one of them.
TINY = [
    *("--accept", "1", "--proposals", "64", "--crystals-per-dos", "2", "--steps", "4"),
    *("--dos-steps", "4", "--uncond", "4", "--dos-batch", "32", "--crystal-batch", "2"),
]
TIMING = ("dos_seconds_this_session", "crystals_per_second")


def _screen(out, *extra):
    cmd = [sys.executable, "-m", "experiments.tcm_screen", *TINY, "--out", str(out), *extra]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=cpu_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


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
    port = free_port()
    multi = tmp_path / "multi"
    flags = ("--coordinator", f"127.0.0.1:{port}", "--num-processes", "2")
    wait_all([_screen(multi, *flags, "--process-id", str(i)) for i in range(2)])
    single = tmp_path / "single"
    wait_all([_screen(single)])

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


@pytest.mark.slow  # about 2.5 min on 2 busy cores: each process compiles GemNet's train, val steps
def test_train_crystal_two_processes(tmp_path):
    """A smoke test of the command (the two-process trajectory equals one process's in
    tests/crystal/test_crystal_data_parallel.py): every process trains, process 0 exports."""
    work = tmp_path / "c"
    argv = ["--steps", "2", "--width", "8", "--blocks", "1", "--atoms", "24", "--graphs", "3",
            "--ckpt-every", "1", "--workdir", work]  # fmt: skip
    script = "import sys; from experiments import train_crystal; train_crystal.main(sys.argv[1:])"
    outs = run_on_processes(script, args=argv)
    assert "[train_crystal] step 2/2" in outs[0] and "train_seconds" in outs[0]
    assert "train" not in outs[1]  # process 0 prints for both (gloo's own line aside)
    model = CDOSGenModel.load(work / "model")
    assert model.meta["steps"] == 2 and model.gemnet.emb_size_atom == 8
    rows = [json.loads(r) for r in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2] and np.isfinite(rows[0]["loss"])
    assert latest_checkpoint(work) == 2
