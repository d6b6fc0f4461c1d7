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
"""

import argparse
import json
from pathlib import Path

__all__ = ["device_kind", "parser", "summary", "write_json"]


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
    """Write `payload` as indented JSON to `path`, creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    return path
