"""One atomic chunk store for every long run: stage 1's rejection shards, stage 2's generation
stages and the experiments' result folders.

    folder/
      chunk-000000.npz      the rows of one unit of work (arrays with a shared leading axis)
      chunk-000001.npz
      manifest.json         what is done: the listed chunks and the writer's state (written last)
      manifest-001.json     one more manifest per writer when several processes share a folder

Crash safety: every file is written under a temporary name, fsynced, renamed over its final name
(atomic on POSIX) and the folder is fsynced, so after a SIGKILL or a power cut at any instant a
file is either absent or complete. A chunk is first written, then listed in its writer's manifest;
a chunk on disk that no manifest lists is ignored and overwritten, so a kill loses at most the
work since the last listed chunk and never duplicates rows.

When to write a chunk is the caller's choice, helped by `Flush`: after `rows` rows, `units` units
of work, or `seconds` of wall time since the last chunk, whichever comes first, so that a kill
loses at most about `seconds` of work however slow a unit is.

This module sits on the ground floor (numpy, json and os only) because stage 1
(`jaxdos.sampler.rejection`) may not import the pipeline, and the pipeline's run folders
(`jaxdos.pipeline.rundir`) use the same store.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "atomic_write",
    "write_json",
    "read_json",
    "Flush",
    "ChunkStore",
]

FORMAT_VERSION = 1


def _fsync_folder(folder: Path) -> None:
    # The rename is durable only once the folder entry is on disk (POSIX; a no-op elsewhere).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data: bytes | Callable) -> None:
    """Write `path` so that it is either absent, its old content, or complete, at any instant.

    Args:
        path: the final file name.
        data: the bytes, or `write(fh)` that writes them to a binary file handle.
    """
    path = Path(path)
    # The process id keeps two writers of one name (two processes claiming a folder) apart.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves the old file and no debris
        raise
    _fsync_folder(path.parent)


def write_json(path, obj, *, indent: int = 1) -> None:
    """`obj` as indented JSON, atomically (numpy scalars become floats)."""
    atomic_write(path, json.dumps(obj, indent=indent, default=float).encode())


def read_json(path) -> dict | None:
    """The JSON at `path`, or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    return json.loads(path.read_text())


@dataclasses.dataclass(frozen=True, kw_only=True)
class Flush:
    """When a writer flushes its buffered rows as a chunk: the first limit reached wins.

    Attributes:
        rows: rows buffered since the last chunk (>= 1).
        units: units of work (batches) since the last chunk (>= 1).
        seconds: wall-clock seconds since the last chunk (> 0; the issue-13 default, 60, bounds
            the work a kill loses to about a minute).
    """

    rows: int = 4096
    units: int = 64
    seconds: float = 60.0

    def __post_init__(self):
        for name in ("rows", "units"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.seconds > 0:
            raise ValueError(f"flush_seconds: expected > 0, got {self.seconds}")

    def due(self, rows: int, units: int, since: float) -> bool:
        """Whether `rows` rows and `units` units buffered since `since` (`time.monotonic()`) are
        due to be written."""
        return rows >= self.rows or units >= self.units or self.elapsed(since)

    def elapsed(self, since: float) -> bool:
        """Whether `seconds` passed since `since` (`time.monotonic()`)."""
        return time.monotonic() - since >= self.seconds


class ChunkStore:
    """A folder of numbered chunks and the manifest(s) that list them.

    Each writer (a process) owns one manifest; readers see the union of all manifests, so several
    processes may fill one folder with disjoint chunk numbers (`jaxdos.pipeline.rundir`), or each
    its own folder (`jaxdos.sampler.rejection`'s shards).
    """

    def __init__(self, folder, *, writer: int = 0):
        self.folder = Path(folder)
        self.writer = int(writer)
        name = "manifest.json" if self.writer == 0 else f"manifest-{self.writer:03d}.json"
        self.manifest_path = self.folder / name

    @staticmethod
    def chunk_name(number: int) -> str:
        return f"chunk-{int(number):06d}.npz"

    def manifest(self) -> dict | None:
        """This writer's manifest: `chunks` (one entry per listed chunk: `number`, `file`, `rows`
        and the caller's info) and the caller's state keys; None before the first chunk."""
        return read_json(self.manifest_path)

    def manifests(self) -> list[dict]:
        """Every writer's manifest in the folder, in writer order."""
        paths = sorted(self.folder.glob("manifest*.json"))
        return [read_json(p) for p in paths]

    def put(
        self,
        number: int,
        rows: dict,
        *,
        info: dict | None = None,
        state: dict | None = None,
        keep: Iterable[dict] | None = None,
    ) -> dict:
        """Write chunk `number`, then list it in this writer's manifest (both atomically).

        Args:
            number: the chunk's number (unique in the folder).
            rows: name -> array, all with the same leading size.
            info: JSON-able facts about the chunk, stored in its manifest entry.
            state: JSON-able keys stored at the top of the manifest (replacing the old ones).
            keep: the manifest entries to keep before this one (default all listed ones); a
                resumed writer passes the entries it trusts.

        Returns:
            The chunk's manifest entry.

        Raises:
            ValueError: naming `rows` if the arrays disagree on their leading size.
        """
        arrays = {k: np.asarray(v) for k, v in rows.items()}
        sizes = {v.shape[0] if v.ndim else None for v in arrays.values()}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(f"rows: expected arrays with one shared leading axis, got {sizes}")
        self.folder.mkdir(parents=True, exist_ok=True)
        name = self.chunk_name(number)
        atomic_write(self.folder / name, lambda fh: np.savez(fh, **arrays))
        old = self.manifest() or {}
        chunks = list(old.get("chunks", []) if keep is None else keep)
        chunks = [c for c in chunks if c["number"] != int(number)]
        entry = {"number": int(number), "file": name, "rows": int(sizes.pop()), **(info or {})}
        chunks.append(entry)
        manifest = {
            "format_version": FORMAT_VERSION,
            "writer": self.writer,
            **(state if state is not None else _state_of(old)),
            "chunks": chunks,
        }
        write_json(self.manifest_path, manifest)
        return entry

    def listed(self) -> dict[int, dict]:
        """number -> manifest entry of every chunk some writer listed."""
        out = {}
        for m in self.manifests():
            for c in m["chunks"]:
                out[int(c["number"])] = c
        return out

    def present(self) -> set[int]:
        """Numbers of the listed chunks whose file is on disk (a chunk deleted by hand counts as
        not done, so a resumed run recomputes it)."""
        return {n for n, c in self.listed().items() if (self.folder / c["file"]).exists()}

    def read(self, number: int) -> dict:
        """The arrays of listed chunk `number`.

        Raises:
            ValueError: naming the chunk if it is listed but missing or unreadable.
        """
        path = self.folder / self.chunk_name(number)
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"chunk: cannot read {path} ({err})") from err

    def read_all(self, numbers: Iterable[int] | None = None) -> dict:
        """The listed chunks (default all, in number order) concatenated; {} if there are none."""
        numbers = sorted(self.listed()) if numbers is None else list(numbers)
        parts = [self.read(n) for n in numbers]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _state_of(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in ("format_version", "writer", "chunks")}
