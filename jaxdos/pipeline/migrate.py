"""Rewrite an old-format model folder in the one model-directory format (`jaxdos.modeldir`).

    python -m jaxdos.pipeline.migrate OLD NEW

OLD: a sampler folder (orbax `params/` + `sampler.json`), a CDOSGen folder (`params.msgpack` +
`config.json`) or a converted MatterGen folder (orbax `params/` + `config.json`) written before
issue 13. NEW: the model directory to write (may be OLD itself; the old files are then left beside
the new ones). Exits 2 with a one-line message if OLD is not an old-format model or NEW already
holds one. A module of its own, not a function in `models`, so that `python -m` runs a module the
package has not imported already.
"""

import argparse
import sys

from jaxdos.pipeline.models import migrate

__all__ = ["main"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m jaxdos.pipeline.migrate", description=__doc__.splitlines()[0]
    )
    p.add_argument("old", help="the old-format model folder")
    p.add_argument("new", help="the model directory to write")
    a = p.parse_args(argv)
    try:
        model = migrate(a.old, a.new)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.old} -> {a.new} ({type(model).__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
