"""What every `experiments.bench_*` script shares: its flags, device label, summary lines, JSON.

Each benchmark keeps its own result layout (field names are read by tests and by whoever compares
runs); this module only fixes how the common parts are spelled, so `gpu_suite.sh` can drive every
benchmark the same way: `--quick` for the CPU-sized run and `--out PATH` for the JSON file.

    p = benchio.parser(__doc__, quick="< 1 minute on CPU", out="results/bench_x.json")
    p.add_argument("--steps", type=int, default=32)
    args = p.parse_args(argv)
    ...
    benchio.summary(f"x B={batch}: {rate:.2f} cand/s")
    benchio.write_json(args.out, rows)

A comparison of two implementations goes through `alternate`: the sides run in alternating
rounds, so a load spike hits both, and each side reports its median and spread. `machine()` is
the record of the machine (CPU, cores, versions, command, load average before and after);
`quiet_flag` marks a row measured on a busy machine, which `docs/benchmarks.md` must not cite as
a figure.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "QUIET_LOAD_PER_CORE",
    "alternate",
    "device_kind",
    "load_average",
    "machine",
    "parser",
    "quiet_flag",
    "summary",
    "write_json",
]

# A 2-core VM idles at a 1-minute load average of ~1-1.5 (its own agents); above one runnable job
# per core the two sides of a comparison no longer get the cores they are timed on.
QUIET_LOAD_PER_CORE = 1.0


def parser(
    doc: str | None, *, quick: str, out: str | None, out_aliases: tuple[str, ...] = ()
) -> argparse.ArgumentParser:
    """An ArgumentParser with the module docstring as help, `--quick` and `--out`.

    Args:
        doc: the benchmark's module docstring (shown verbatim by `--help`).
        quick: what `--quick` runs instead of the full benchmark (its help text).
        out: default JSON path; None writes no file unless `--out` is given.
        out_aliases: older spellings of `--out` that keep working (e.g. `--json`).
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--out", *out_aliases, dest="out", default=out, help="write the JSON here")
    return p


def device_kind() -> str:
    """The first JAX device's kind ("cpu", "NVIDIA H100 80GB HBM3", ...): the hardware label."""
    import jax

    return jax.devices()[0].device_kind


def summary(line: str) -> None:
    """Print one summary line of a configuration.

    Flushed at once: `gpu_suite.sh` kills a step at its timeout, and the lines of the
    configurations that finished must already be in the step's log by then.
    """
    print(line, flush=True)


def write_json(path: str | Path, payload) -> Path:
    """Write `payload` as indented JSON to `path` (creating its folder), with the machine record.

    A dict payload gains a "machine" key (`machine()`, load measured since this module was
    imported, i.e. the benchmark's start); a list payload becomes {"machine", "rows"}. On a busy
    machine a WARNING summary line is printed and the record's "quiet" is false.
    """
    record = machine(_LOAD_AT_START)
    if not record["quiet"]:
        summary(f"WARNING {quiet_flag(record['load_before'], record['load_after'])}: not citable")
    body = {"rows": payload} if isinstance(payload, list) else dict(payload)
    body.setdefault("machine", record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1))
    return path


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def quiet_flag(load_before: float, load_after: float, cores: int | None = None) -> str | None:
    """None on a quiet machine, else a warning naming the load (the row is marked with it)."""
    cores = cores or os.cpu_count() or 1
    worst = max(load_before, load_after)
    if worst <= QUIET_LOAD_PER_CORE * cores:
        return None
    return (
        f"not quiet: load average {load_before:.1f} before / {load_after:.1f} after on "
        f"{cores} cores"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(load_before: float) -> dict:
    """Hardware, versions, the command line and the load before (given) and now."""
    import jax

    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for name in ("flax", "torch", "mattergen"):
        mod = sys.modules.get(name)
        if mod is not None:
            versions[name] = getattr(mod, "__version__", "?")
    after = load_average()
    return {
        "device": device_kind(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "versions": versions,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "load_before": load_before,
        "load_after": after,
        "quiet": quiet_flag(load_before, after) is None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def alternate(sides: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, dict]:
    """Time each side once per round, the sides alternating; warm each up first.

    Each callable must block until its work is done (`block_until_ready` on JAX outputs).
    Returns {side: {"median_s", "min_s", "max_s", "spread" ((max - min) / median), "times_s"}}.
    """
    if rounds < 1:
        raise ValueError(f"rounds: expected >= 1, got {rounds}")
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        # Swap the order every round so neither side always runs right after the other's caches.
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            t0 = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {
            "median_s": med,
            "min_s": min(ts),
            "max_s": max(ts),
            "spread": (max(ts) - min(ts)) / med if med > 0 else 0.0,
            "times_s": ts,
        }
    return out


_LOAD_AT_START = load_average()
