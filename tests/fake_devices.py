"""Run a test script in fresh interpreters: one that sees 8 fake CPU devices (XLA's host platform
device count is fixed at start-up, so a multi-device check cannot run in the pytest process), or
several joined by JAX's multi-host runtime over loopback."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JAX_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def cpu_env(devices: int, paths=()) -> dict:
    """This environment for a child on `devices` CPU devices, without the `JAX_*` multi-host
    variables; the repository, then `paths`, then tests/ importable."""
    env = {k: v for k, v in os.environ.items() if k not in JAX_ENV}
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(map(str, (ROOT, *paths, ROOT / "tests"))),
    )
    return env


def run_on_fake_devices(
    script: str, *paths: Path, args=(), timeout: int = 600, devices: int = 8
) -> str:
    """stdout of `script` (dedented) run with `args` on `devices` CPU devices; the repository,
    then `paths`, then tests/ are importable. Asserts a zero exit status (else shows stderr)."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        env=cpu_env(devices, paths),
        capture_output=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return out.stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_all(procs, timeout: int = 900) -> list[str]:
    """The stdouts of `procs` once all exit; asserts zero exit statuses (else shows stderr)."""
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err.decode()[-3000:]
            outs.append(out.decode())
    finally:
        for p in procs:  # a failed process leaves its peer waiting at a barrier
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outs


def run_on_processes(
    script: str, *paths: Path, args=(), processes: int = 2, timeout: int = 600
) -> list[str]:
    """The stdouts of `script` run by `processes` interpreters of one CPU device each, joined over
    loopback by the `JAX_*` variables that `sharding.initialize_distributed` (and every command's
    `start_multihost`) reads; `paths` and `args` as in `run_on_fake_devices`."""
    port = free_port()
    procs = []
    for i in range(processes):
        env = cpu_env(1, paths)
        env.update(
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            JAX_NUM_PROCESSES=str(processes),
            JAX_PROCESS_ID=str(i),
        )
        cmd = [sys.executable, "-c", textwrap.dedent(script), *map(str, args)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return wait_all(procs, timeout)
