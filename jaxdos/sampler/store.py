"""On-disk layout of a rejection run: per-process chunk files, manifests, and the merged index.

    OUT/
      shard-000/                 one folder per process (jax.process_index())
        chunk-000000.npz         accepted rows of batches [batch_start, batch_stop)
        manifest.json            settings fingerprint, completed chunks, next batch (written last)
      index.json                 the merged index (process 0, after every shard finished)

A chunk holds `tokens [m, L]` int16, `scale [m]`, the measured `band_gap`, `dos_at_fermi`,
`integrated_dos` `[m]` float32, and `index [m]` int64, the global example index
(`batch * batch_size + row`). Crash safety: a chunk is written to a temporary name and renamed
(atomic on POSIX), then the manifest is rewritten the same way; a chunk on disk that the manifest
does not list is ignored and overwritten on resume, so a SIGKILL at any instant loses at most the
batches since the last listed chunk and never duplicates rows.

The accepted set is the first `accept` accepted examples in global-index order over all shards;
`index.json` records that cutoff, so loading needs no copy of the chunk data.
"""

import json
import os
from pathlib import Path

import numpy as np

from jaxdos.kernels.properties import PROPERTY_NAMES

__all__ = [
    "FORMAT_VERSION",
    "FIELDS",
    "shard_dir",
    "write_chunk",
    "read_manifest",
    "write_manifest",
    "read_chunks",
    "merge",
    "read_index",
]

FORMAT_VERSION = 1
FIELDS = ("tokens", "scale", *PROPERTY_NAMES, "index")


def shard_dir(out, process_index: int) -> Path:
    return Path(out) / f"shard-{process_index:03d}"


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_chunk(folder: Path, number: int, rows: dict) -> str:
    """Atomically write one chunk; returns its file name (relative to `folder`)."""
    missing = set(FIELDS) - set(rows)
    if missing:
        raise ValueError(f"rows: missing fields {sorted(missing)}")
    name = f"chunk-{number:06d}.npz"
    arrays = {k: np.asarray(rows[k]) for k in FIELDS}
    arrays["tokens"] = arrays["tokens"].astype(np.int16)  # ids < 1027 fit; halves the files
    _atomic_write_bytes(folder / name, lambda fh: np.savez(fh, **arrays))
    return name


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / "manifest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def write_manifest(folder: Path, manifest: dict) -> None:
    data = json.dumps(manifest, indent=1).encode()
    _atomic_write_bytes(Path(folder) / "manifest.json", lambda fh: fh.write(data))


def _load_chunk(path: Path) -> dict:
    with np.load(path) as z:
        out = {k: z[k] for k in FIELDS}
    out["tokens"] = out["tokens"].astype(np.int32)
    return out


def read_chunks(out) -> tuple[dict, list[dict]]:
    """All rows listed by every shard's manifest, sorted by global index.

    Returns:
        (rows: field -> array, manifests: one per shard folder, in process order).

    Raises:
        ValueError: naming `out` if there is no shard, shards disagree on the settings, or a
            listed chunk is missing.
    """
    folders = sorted(Path(out).glob("shard-*"))
    manifests = [read_manifest(f) for f in folders]
    pairs = [(f, m) for f, m in zip(folders, manifests, strict=True) if m is not None]
    if not pairs:
        raise ValueError(f"out: no shard manifests under {out}")
    fingerprints = {json.dumps(m["settings"], sort_keys=True) for _, m in pairs}
    if len(fingerprints) > 1:
        raise ValueError(f"out: shards under {out} were written with different settings")
    parts = []
    for folder, m in pairs:
        for c in m["chunks"]:
            path = folder / c["file"]
            if not path.exists():
                raise ValueError(f"out: chunk {path} is listed in its manifest but missing")
            parts.append(_load_chunk(path))
    if parts:
        rows = {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}
    else:
        rows = {k: np.zeros((0, 256) if k == "tokens" else (0,)) for k in FIELDS}
        rows["index"] = rows["index"].astype(np.int64)
        rows["tokens"] = rows["tokens"].astype(np.int32)
    order = np.argsort(rows["index"], kind="stable")
    rows = {k: v[order] for k, v in rows.items()}
    if np.any(np.diff(rows["index"]) == 0):
        raise ValueError(f"out: duplicated global indices across chunks under {out}")
    return rows, [m for _, m in pairs]


def merge(out, accept: int | None = None) -> dict:
    """Build `index.json`: the first `accept` accepted examples in global order, over all shards.

    Every shard must have stopped at the same batch (they run in lockstep). `accept` defaults to
    the one recorded by the run. Returns the index.
    """
    rows, manifests = read_chunks(out)
    accept = int(manifests[0]["accept"]) if accept is None else int(accept)
    stops = {m["next_batch"] for m in manifests}
    if len(stops) > 1:
        raise ValueError(f"out: shards stopped at different batches {sorted(stops)}; resume first")
    settings = manifests[0]["settings"]
    n = min(int(accept), rows["index"].shape[0])
    cutoff = int(rows["index"][n - 1]) if n else -1
    index = {
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "accepted": n,
        "requested": int(accept),
        "cutoff_index": cutoff,
        "proposals": int(manifests[0]["proposals"]),
        "batches": int(manifests[0]["next_batch"]),
        "shards": [
            {
                "folder": f"shard-{m['process_index']:03d}",
                "chunks": [c["file"] for c in m["chunks"]],
            }
            for m in manifests
        ],
    }
    data = json.dumps(index, indent=1).encode()
    _atomic_write_bytes(Path(out) / "index.json", lambda fh: fh.write(data))
    return index


def read_index(out) -> tuple[dict, dict]:
    """The merged accepted rows (global order, truncated at the cutoff) and the index."""
    path = Path(out) / "index.json"
    if not path.exists():
        raise ValueError(f"out: no index.json under {out}; run the merge step first")
    index = json.loads(path.read_text())
    rows, _ = read_chunks(out)
    keep = rows["index"] <= index["cutoff_index"]
    rows = {k: v[keep] for k, v in rows.items()}
    return rows, index
