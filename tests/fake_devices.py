"""Run a test script in a fresh interpreter that sees 8 fake CPU devices (XLA's host platform
device count is fixed at start-up, so a multi-device check cannot run in the pytest process)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_on_fake_devices(
    script: str, *paths: Path, args=(), timeout: int = 600, devices: int = 8
) -> str:
    """stdout of `script` (dedented) run with `args` on `devices` CPU devices; the repository,
    then `paths`, then tests/ are importable. Asserts a zero exit status (else shows stderr)."""
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(map(str, (ROOT, *paths, ROOT / "tests"))),
    )
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        env=env,
        capture_output=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    return out.stdout.decode()
