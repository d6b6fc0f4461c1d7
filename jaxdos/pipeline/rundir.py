"""A self-contained, resumable results folder shared by the pipeline's jobs.

Layout of `out/`:
    run.json            command, config, seed, package versions (written once; checked on resume)
    stages/<name>/      one `jaxdos.chunkstore.ChunkStore` per stage: chunk-000000.npz ... (one per
                        unit of work, seeded by its number) and the manifest(s) listing them
    *.md, *.csv, *.png  tables and figures (`jaxdos.pipeline.writers`)

A run never overwrites another run's results: an existing folder needs `resume=True` (same config)
or `force=True` (wipe it). A killed run resumes from its last completed chunk.

Multi-host (after `jax.distributed` started, see experiments/cli.py): every process claims the same
shared folder; all of them check it before process 0 writes, and a failure on any process is raised
on every process so that none waits at a barrier for ever. Process p computes the chunks i with
i % P == p of each stage (each chunk is seeded by i alone, so the split changes no result), a
barrier follows every stage, then every process reads all chunks. Each process lists its chunks
in its own manifest (`ChunkStore(writer=process)`), so no two processes rewrite one file.
Run-level files (run.json, tables, JSON) are written by process 0 only; `main` tells the jobs
who writes the rest.
"""

import json
import platform
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxdos.chunkstore import ChunkStore, atomic_write, write_json
from jaxdos.pipeline import writers

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
        import jax

        self.path = Path(out)
        self.config = json.loads(json.dumps(config))
        self.process, self.processes = jax.process_index(), jax.process_count()
        # Every process reads the folder's state before anyone changes it, so all decide alike.
        _agree(_attempt(lambda: self._check(resume, force)))
        _agree(_attempt(lambda: self._claim(force)) if self.main else None)
        if self.processes > 1:  # the others write stage chunks into the same folder
            probe = f".write_probe.{self.process}"
            _agree(None if self.main else _attempt(lambda: self._probe(probe)))

    @property
    def main(self) -> bool:
        """True on the process that writes run-level files (process 0)."""
        return self.process == 0

    def _check(self, resume: bool, force: bool) -> None:
        meta = self.path / "run.json"
        if self.path.exists() and any(self.path.iterdir()):
            if force:
                return
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

    def _claim(self, force: bool) -> None:
        meta = self.path / "run.json"
        if force and self.path.exists() and any(self.path.iterdir()):
            shutil.rmtree(self.path)
        self._probe(".write_probe")
        if not meta.exists():
            record = {"command": sys.argv, "config": self.config, "versions": versions()}
            atomic_write(meta, json.dumps(record, indent=2).encode())

    def _probe(self, name: str) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / name
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise ValueError(f"out: {self.path} is not writable ({err})") from err

    def stage(
        self,
        name: str,
        n_chunks: int,
        work: Callable[[int], dict | None],
        *,
        progress: Callable[[int], None] | None = None,
        collective: bool = False,
    ) -> dict:
        """Run `work(i)` for every chunk i not yet listed; return all chunks concatenated.

        `work(i)` returns a dict of arrays with a shared leading axis; it must be deterministic in i
        (seeded by i) so that a resumed run equals an uninterrupted one. Each result is written as
        soon as it is computed, so a kill loses at most the chunk in progress. With several
        processes each runs only `my_chunks(n_chunks)`, and all wait for each other before reading.

        `collective`: `work(i)` is one computation made by every process together (crystal
        generation spanning processes), so every process runs every missing chunk and process 0
        alone writes its result (the others' may be None).
        """
        store = self._store(name)
        # The same set on every process even then: nothing of this stage is written before the
        # first collective `work`, which waits for every process to have read it.
        done = store.present()
        for i in self.my_chunks(n_chunks, collective=collective):
            if i not in done:
                rows = work(i)
                if self.main or not collective:
                    store.put(i, rows)
            if progress is not None:
                progress(i)
        self.barrier(f"stage-{name}")
        return self.load_stage(name, n_chunks)

    def _store(self, name: str) -> ChunkStore:
        return ChunkStore(self.path / "stages" / name, writer=self.process)

    def my_chunks(self, n_chunks: int, *, collective: bool = False) -> range:
        """The chunks of a stage this process computes (all of them in a single-process run or a
        `collective` stage)."""
        if collective:
            return range(n_chunks)
        return range(self.process, n_chunks, self.processes)

    def barrier(self, name: str) -> None:
        """Wait until every process got here (nothing to wait for in a single-process run)."""
        if self.processes > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxdos-rundir-{name}")

    def load_stage(self, name: str, n_chunks: int) -> dict:
        """Concatenate the first `n_chunks` chunks of a stage."""
        return self._store(name).read_all(range(n_chunks))

    def write_table(self, name: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
        """Write `name.csv` and `name.md` (process 0 only); return the markdown."""
        if self.main:
            return writers.write_table(self.path, name, header, rows)
        return writers.markdown_table(header, rows)

    def write_json(self, name: str, obj) -> None:
        """Write `name` (process 0 only)."""
        if self.main:
            write_json(self.path / name, obj, indent=2)


def _attempt(step: Callable[[], None]) -> ValueError | None:
    try:
        step()
    except ValueError as err:
        return err
    return None


def _agree(error: ValueError | None) -> None:
    """Raise `error`; with several processes, raise on all of them if any one failed."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        failed = multihost_utils.process_allgather(np.asarray([error is not None], np.int32))
        if error is None and np.any(failed):
            error = ValueError("out: another process could not claim the folder (see its error)")
    if error is not None:
        raise error
