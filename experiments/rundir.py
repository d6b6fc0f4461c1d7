"""A self-contained, resumable results folder shared by the experiment commands.

Layout of `out/`:
    run.json            command, config, seed, package versions (written once; checked on resume)
    stages/<name>/      chunk_00000.npz ... written atomically (tmp + rename), one per unit of work
    *.md, *.csv, *.png  tables and figures

A run never overwrites another run's results: an existing folder needs `resume=True` (same config)
or `force=True` (wipe it). A killed run resumes from its last completed chunk.
"""

import csv
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["RunDir", "versions"]


def versions() -> dict:
    """Versions of the packages a result depends on."""
    import flax
    import jax
    import pymatgen.core

    import jaxdos

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
        "pymatgen": getattr(pymatgen.core, "__version__", "unknown"),
        "jaxdos": jaxdos.__version__,
        "devices": [str(d) for d in jax.devices()],
    }


class RunDir:
    """A results folder with resumable, chunked stages."""

    def __init__(self, out, config: dict, *, resume: bool = False, force: bool = False):
        """Claim `out` for a run with `config` (JSON-serialisable).

        Raises:
            ValueError: `out` holds another run's results and neither `resume` nor `force` is
                set, or `resume` is set but the stored config differs, or `out` is not writable.
        """
        self.path = Path(out)
        self.config = json.loads(json.dumps(config))
        meta = self.path / "run.json"
        if self.path.exists() and any(self.path.iterdir()):
            if force:
                shutil.rmtree(self.path)
            elif not meta.exists():
                raise ValueError(
                    f"out: {self.path} is not empty and holds no jaxdos run; pick another"
                )
            elif not resume:
                raise ValueError(
                    f"out: {self.path} already holds results; pass --resume to continue that run "
                    "or --force to overwrite it"
                )
            else:
                stored = json.loads(meta.read_text())["config"]
                if stored != self.config:
                    diff = sorted(
                        k
                        for k in set(stored) | set(self.config)
                        if stored.get(k) != self.config.get(k)
                    )
                    raise ValueError(f"out: --resume with a different config (fields {diff})")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write_probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise ValueError(f"out: {self.path} is not writable ({err})") from err
        if not meta.exists():
            record = {"command": sys.argv, "config": self.config, "versions": versions()}
            self._atomic_write(meta, json.dumps(record, indent=2).encode())

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def stage(
        self,
        name: str,
        n_chunks: int,
        work: Callable[[int], dict],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> dict:
        """Run `work(i)` for every chunk i not yet on disk; return all chunks concatenated.

        `work(i)` returns a dict of arrays with a shared leading axis; it must be deterministic in i
        (seeded by i) so that a resumed run equals an uninterrupted one.
        """
        folder = self.path / "stages" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_chunks):
            chunk = folder / f"chunk_{i:05d}.npz"
            if not chunk.exists():
                arrays = work(i)
                tmp = folder / f"chunk_{i:05d}.tmp.npz"
                np.savez(tmp, **arrays)
                os.replace(tmp, chunk)
            if progress is not None:
                progress(i)
        return self.load_stage(name, n_chunks)

    def load_stage(self, name: str, n_chunks: int) -> dict:
        """Concatenate the first `n_chunks` chunks of a stage."""
        parts = []
        for i in range(n_chunks):
            with np.load(self.path / "stages" / name / f"chunk_{i:05d}.npz") as z:
                parts.append({k: z[k] for k in z.files})
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def write_table(self, name: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
        """Write `name.csv` and `name.md`; return the markdown."""

        def fmt(v):
            return f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)

        with open(self.path / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
        md = "\n".join(lines) + "\n"
        (self.path / f"{name}.md").write_text(md)
        return md

    def write_json(self, name: str, obj) -> None:
        self._atomic_write(self.path / name, json.dumps(obj, indent=2, default=float).encode())
