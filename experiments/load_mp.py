"""Convert a folder of MP-style DOS files into a jaxdos record set (.npz) and print Table 6.

    python -m experiments.load_mp SRC_DIR OUT.npz [--structures DIR] [--workers N] [--force]

SRC_DIR holds `Dos.as_dict()` / `CompleteDos.as_dict()` JSON files (`*.json`, `*.json.gz`, as
`mp-api` + `MontyEncoder` save them); plain Dos files are paired with `<id>.cif` or
`<id>.structure.json` in `--structures` (default: beside them). Malformed and filtered files are
skipped and counted; the output records have oracle_version "mp" and carry the report in their
header's meta.
"""

import argparse
import sys
from pathlib import Path

from jaxdos.data.mp import MP_ORACLE_VERSION, LoadReport, load_mp_dir
from jaxdos.data.records import save_records

__all__ = ["run", "main"]


def run(
    src, out, *, structure_dir=None, force: bool = False, progress: bool = True, workers: int = 0
) -> LoadReport:
    """Load `src`, write records to `out`, return the report (the table is printed by `main`)."""
    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"out: {out} exists; pass force=True (--force) to overwrite it")
    records, report = load_mp_dir(
        src, structure_dir=structure_dir, progress=progress, workers=workers
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"source": str(src), "total": report.total, "stages": report.stages}
    meta |= {"skipped": report.skipped, "examples": report.examples}
    save_records(out, records, oracle_version=MP_ORACLE_VERSION, meta=meta)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", help="folder of DOS JSON files")
    parser.add_argument("out", help="output .npz record set")
    parser.add_argument("--structures", default=None, help="folder of paired structures")
    parser.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    parser.add_argument("--workers", type=int, default=0, help="parser processes (0: inline)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    try:
        report = run(
            args.src,
            args.out,
            structure_dir=args.structures,
            force=args.force,
            progress=not args.no_progress,
            workers=args.workers,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.table())
    for path, reason, message in report.examples[:10]:
        print(f"  skipped {path}: {reason} ({message})")
    print(f"wrote {report.stages.get('all', 0)} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
