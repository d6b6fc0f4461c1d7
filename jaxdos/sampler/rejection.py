"""Rejection sampling at scale (Section 4.3, "we reject the DOS samples that ... do not satisfy").

The loop streams batches of guided proposals until `accept` candidates pass the targets or the
proposal budget is spent. Batch b is one jitted call, sharded over every device of every process;
its example g = b * batch_size + j (the global example index) uses only keys folded from g:

    key_scale, key_sample = split(key); K_g = draw(fold_in(key_scale, g))
    tokens = sample(params, key_sample, K, example_index=g)   # per-example fold_in(key_sample, g)
    dos = decode(tokens, K); accept, properties = acceptance(targets, dos)

so a candidate depends only on the seed and g, never on the batch size, the device count or the
process count. Acceptance and the global accepted count are computed on device; the host pulls only
this process's rows. The next batch is dispatched before the current one is pulled and written, so
writing overlaps device compute.

Determinism contract: the result is the first `accept` accepted examples in global-index order.
Every process runs the same batches in lockstep (the stopping test reads a replicated global
count), writes its own rows to its shard, and process 0 merges. Memory is flat: the host holds
at most one chunk of accepted rows and a manifest whose length grows by one entry per chunk.

On-disk layout (every file written by `jaxdos.chunkstore`: temporary name, fsync, rename):

    OUT/
      shard-000/                 one `ChunkStore` per process (jax.process_index())
        chunk-000000.npz         accepted rows of batches [start, stop)
        manifest.json            settings fingerprint, completed chunks, next batch (written last)
      index.json                 the merged index (process 0, after every shard finished)

A chunk holds `tokens [m, L]` int16, `scale [m]`, the measured `band_gap`, `dos_at_fermi`,
`integrated_dos` `[m]` float32, and `index [m]` int64, the global example index. A chunk is
written once `chunk_rows` rows were accepted, `chunk_batches` batches ran, or `flush_seconds`
passed since the last one, so a SIGKILL at any instant loses at most about `flush_seconds` of
work and never duplicates rows. The accepted set is the first `accept` accepted examples in
global-index order over all shards; `index.json` records that cutoff, so loading needs no copy of
the chunk data.
"""

import dataclasses
import functools
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos import sharding
from jaxdos.chunkstore import ChunkStore, Flush, write_json
from jaxdos.kernels.properties import PROPERTY_NAMES
from jaxdos.kernels.tokenizer import decode
from jaxdos.sampler.targets import Targets, acceptance

__all__ = [
    "Proposer",
    "RejectionConfig",
    "AcceptedDOS",
    "run_rejection",
    "load_accepted",
    "merge",
    "FORMAT_VERSION",
    "FIELDS",
]

# 2: chunks written by `jaxdos.chunkstore` (manifest entries carry their `number`).
FORMAT_VERSION = 2
FIELDS = ("tokens", "scale", *PROPERTY_NAMES, "index")


class Proposer(NamedTuple):
    """What the loop needs from a DOS sampler.

    Fields:
        sample: `(params, key, scale [B], example_index [B]) -> tokens [B, L]` int32, jittable,
            with per-example randomness from `fold_in(key, example_index)` (the guided sampler
            `sampling.sample_from` with its configs, guidance and prior bound in; see
            `guided_proposer`).
        params: the sampler's parameters (replicated over the mesh).
        scales: `[M]` the empirical distribution of K to draw from (training-set scales).
        name: identifies the model in the run's settings fingerprint (resume refuses a mismatch).
        scale_logits: `[M]` unnormalised log-weights over `scales` (None: uniform), e.g. to draw
            K from records near a band-gap target (`conditioned_scale_logits`).
    """

    sample: Callable
    params: Any
    scales: np.ndarray
    name: str
    scale_logits: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RejectionConfig:
    """Budget and streaming settings.

    Attributes:
        accept: accepted candidates wanted (>= 1).
        proposals: proposal budget (>= accept); None means 1000 * accept.
        batch_size: proposals per jitted batch (>= 1); padded up to a multiple of the device count.
            Part of the seed contract: the same seed and batch size give the same candidates.
        chunk_rows: flush a chunk once this many rows were accepted since the last one (>= 1).
        chunk_batches: ... or once this many batches ran since the last one (>= 1).
        flush_seconds: ... or once this many seconds passed since the last one (> 0), so that a
            kill loses at most about this much work. Chunk boundaries never change the result.
        seed: the run's seed.
    """

    accept: int
    proposals: int | None = None
    batch_size: int = 256
    chunk_rows: int = 4096
    chunk_batches: int = 64
    flush_seconds: float = 60.0
    seed: int = 0

    def __post_init__(self):
        if int(self.accept) < 1:
            raise ValueError(f"accept: expected >= 1, got {self.accept}")
        if self.proposals is not None and int(self.proposals) < int(self.accept):
            raise ValueError(
                f"proposals: expected >= accept = {self.accept} (cannot accept more candidates "
                f"than are proposed), got {self.proposals}"
            )
        for name in ("batch_size", "chunk_rows", "chunk_batches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        Flush(rows=self.chunk_rows, units=self.chunk_batches, seconds=self.flush_seconds)

    @property
    def flush(self) -> Flush:
        """The chunk-flush policy of these settings."""
        return Flush(rows=self.chunk_rows, units=self.chunk_batches, seconds=self.flush_seconds)

    @property
    def budget(self) -> int:
        return int(self.proposals) if self.proposals is not None else 1000 * int(self.accept)


@dataclasses.dataclass(frozen=True)
class AcceptedDOS:
    """The accepted candidates, in global-index order.

    Attributes:
        tokens: `[M, L]` int32 token ids.
        scale: `[M]` K.
        dos: `[M, L]` decoded per-atom DOS (tokens / 1024 * K).
        properties: name -> `[M]` measured E_BG, DOS(E_F), N(E_F) of the decoded DOS.
        index: `[M]` global example index (batch * batch_size + row).
        proposals: proposals made (through the last batch run).
        requested: the `accept` asked for (M < requested when the budget ran out).
    """

    tokens: np.ndarray
    scale: np.ndarray
    dos: np.ndarray
    properties: dict
    index: np.ndarray
    proposals: int
    requested: int

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def acceptance_rate(self) -> float:
        return len(self) / max(self.proposals, 1)


def _settings(proposer: Proposer, targets: Targets, config: RejectionConfig) -> dict:
    # What fixes the candidates: changing any of these under the same folder would mix runs.
    return {
        "model": proposer.name,
        "targets": targets.describe(),
        "seed": int(config.seed),
        "batch_size": int(config.batch_size),
        "scales_digest": float(np.asarray(proposer.scales, np.float64).sum()),
        "logits_digest": None
        if proposer.scale_logits is None
        else float(
            np.nansum(np.where(np.isfinite(proposer.scale_logits), proposer.scale_logits, 0))
        ),
        "format_version": FORMAT_VERSION,
    }


@functools.lru_cache(maxsize=16)
def _make_step(sample: Callable, targets: Targets, batch: int, padded: int, mesh):
    # Cached so repeated runs with the same sampler and targets (tests, audits) compile once.
    rows = sharding.batch_sharding(mesh)
    rep = sharding.replicated_sharding(mesh)

    def step(params, scales, logits, key, b, valid):
        key_scale, key_sample = jax.random.split(key)
        j = jnp.arange(padded, dtype=jnp.int32)
        g = jax.lax.with_sharding_constraint(b * batch + j, rows)  # global example index
        pick = jax.vmap(lambda i: jax.random.categorical(jax.random.fold_in(key_scale, i), logits))(
            g
        )
        k = scales[pick]
        tokens = sample(params, key_sample, k, g)
        dos = decode(tokens, k)
        ok, props = acceptance(targets, dos)
        ok = ok & (j < valid)
        out = {"tokens": tokens, "scale": k, "ok": ok, "index": g}
        out.update({n: props[n].astype(jnp.float32) for n in PROPERTY_NAMES})
        return out, jnp.sum(ok.astype(jnp.int32))

    out_sh = {n: rows for n in ("tokens", "scale", "ok", "index", *PROPERTY_NAMES)}
    return jax.jit(step, out_shardings=(out_sh, rep))


def _host_rows(out: dict) -> dict:
    ok, _ = sharding.local_rows(out["ok"])
    got = {}
    for name in ("tokens", "scale", "index", *PROPERTY_NAMES):
        got[name] = sharding.local_rows(out[name])[0][ok]
    return got


def _replicated_value(x) -> int:
    return int(np.asarray(x.addressable_data(0)))


def _concat(buffer: list[dict]) -> dict:
    if not buffer:
        return {k: np.zeros((0, 256) if k == "tokens" else (0,)) for k in FIELDS}
    rows = {k: np.concatenate([b[k] for b in buffer]) for k in FIELDS}
    rows["tokens"] = rows["tokens"].astype(np.int16)  # ids < 1027 fit; halves the files
    return rows


def _shard(out, process_index: int) -> ChunkStore:
    return ChunkStore(Path(out) / f"shard-{process_index:03d}")


def _resume_point(folder: ChunkStore, settings, resume: bool) -> tuple[dict, int]:
    manifest = folder.manifest()
    if manifest is not None and not resume:
        raise ValueError(
            f"out: {folder.folder} already holds a run; pass resume=True to continue it, or use "
            "a new folder"
        )
    if manifest is not None and manifest["settings"] != settings:
        raise ValueError(
            f"out: {folder.folder} was written with settings {manifest['settings']}, "
            f"not {settings}; "
            "resume needs the same model, targets, seed and batch size"
        )
    start = 0 if manifest is None else int(manifest["next_batch"])
    return manifest, start


def _agree_on_start(start: int) -> int:
    """All processes restart from the earliest completed batch (a kill may stop them unevenly)."""
    if jax.process_count() == 1:
        return start
    from jax.experimental import multihost_utils

    return int(np.min(multihost_utils.process_allgather(np.asarray([start]))))


def _agree_on_time(due: bool) -> bool:
    """Process 0's wall-clock flush verdict, on every process: shards must cut their chunks at
    the same batches, or a resume after an uneven kill would leave a gap in one shard."""
    if jax.process_count() == 1:
        return due
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))


def run_rejection(
    proposer: Proposer,
    targets: Targets,
    config: RejectionConfig,
    *,
    out=None,
    resume: bool = False,
    mesh=None,
    progress: bool = True,
) -> AcceptedDOS:
    """Stream proposals until `config.accept` pass `targets` (or the budget is spent).

    Args:
        proposer: the sampler (see `Proposer`).
        targets: the validated specification.
        config: budget, batch and chunk sizes, seed.
        out: output folder (chunked files + index); None uses a temporary folder.
        resume: continue the run in `out` from its last completed chunk.
        mesh: a `sharding.make_mesh` mesh; default all devices.
        progress: show a tqdm bar (process 0) with proposals/s and acceptance rate.

    Returns:
        `AcceptedDOS`, the first `accept` accepted examples in global-index order.

    Raises:
        ValueError: on inconsistent settings, before any compute.
    """
    if not isinstance(targets, Targets):
        raise ValueError(f"targets: expected a Targets, got {type(targets).__name__}")
    scales = np.asarray(proposer.scales)
    if scales.ndim != 1 or scales.size == 0 or not np.all(np.isfinite(scales)) or scales.min() <= 0:
        raise ValueError("proposer.scales: expected a non-empty [M] array of finite K > 0")
    logits = proposer.scale_logits
    logits = (
        np.zeros(scales.shape, np.float32) if logits is None else np.asarray(logits, np.float32)
    )
    if logits.shape != scales.shape or not np.any(np.isfinite(logits)) or np.any(np.isnan(logits)):
        raise ValueError(f"proposer.scale_logits: expected [{scales.size}] with a finite entry")
    if int(config.budget) >= 2**31:
        raise ValueError(
            f"proposals: expected < 2**31 (int32 example indices), got {config.budget}"
        )
    if out is None:
        with tempfile.TemporaryDirectory() as tmp:
            return run_rejection(
                proposer, targets, config, out=tmp, resume=False, mesh=mesh, progress=progress
            )
    mesh = sharding.make_mesh() if mesh is None else mesh
    folder = _shard(out, jax.process_index())
    folder.folder.mkdir(parents=True, exist_ok=True)
    settings = _settings(proposer, targets, config)
    manifest, start = _resume_point(folder, settings, resume)
    start = _agree_on_start(start)
    chunks = [] if manifest is None else [c for c in manifest["chunks"] if c["stop"] <= start]
    accepted = chunks[-1]["accepted_total"] if chunks else 0

    batch = int(config.batch_size)
    padded = sharding.padded_size(batch, mesh.devices.size)
    n_batches = -(-config.budget // batch)
    step = _make_step(proposer.sample, targets, batch, padded, mesh)
    params = sharding.replicate(proposer.params, mesh)
    scales = sharding.replicate(np.asarray(scales, np.float32), mesh)
    logits = sharding.replicate(logits, mesh)
    key = jax.random.key(int(config.seed))

    def dispatch(b):
        valid = min(batch, config.budget - b * batch)
        return step(params, scales, logits, key, np.int32(b), np.int32(valid))

    def save(stop):
        entry = folder.put(
            len(chunks),
            _concat(buffer),
            info={"start": chunk_start, "stop": stop, "accepted_total": accepted},
            state={
                "settings": settings,
                "process_index": jax.process_index(),
                "next_batch": stop,
                "proposals": min(stop * batch, config.budget),
                "accept": int(config.accept),
            },
            keep=chunks,
        )
        chunks.append(entry)

    bar = None
    if progress and jax.process_index() == 0:
        from tqdm import tqdm

        bar = tqdm(
            total=config.accept,
            initial=min(accepted, config.accept),
            unit="acc",
            desc="accepted",
            dynamic_ncols=True,
        )
    flush = config.flush
    t0, b, buffer, chunk_start, since = time.perf_counter(), start, [], start, 0
    flushed_at = time.monotonic()
    pending = dispatch(b) if b < n_batches and accepted < config.accept else None
    while pending is not None:
        # Queue batch b + 1 before pulling batch b: the device works while the host writes.
        nxt = dispatch(b + 1) if b + 1 < n_batches else None
        out_b, n_ok = pending
        n_ok = _replicated_value(n_ok)
        buffer.append(_host_rows(out_b))
        accepted += n_ok
        since += n_ok
        done = accepted >= config.accept or b + 1 >= n_batches
        # Rows and batches are replicated counts; the clock is process 0's (`_agree_on_time`).
        due = done or since >= flush.rows or b + 1 - chunk_start >= flush.units
        if due or _agree_on_time(flush.elapsed(flushed_at)):
            save(b + 1)
            buffer, chunk_start, since = [], b + 1, 0
            flushed_at = time.monotonic()
        if bar is not None:
            made = (b + 1 - start) * batch
            rate = made / max(time.perf_counter() - t0, 1e-9)
            bar.update(min(accepted, config.accept) - bar.n)
            bar.set_postfix(
                proposals=f"{(b + 1) * batch}",
                per_s=f"{rate:.0f}",
                acc_rate=f"{accepted / ((b + 1) * batch):.3%}",
            )
        b += 1
        pending = None if done else nxt
    if bar is not None:
        bar.close()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxdos-rejection-written")
    if jax.process_index() == 0:
        merge(out, config.accept)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxdos-rejection-merged")
    return load_accepted(out)


def load_accepted(out) -> AcceptedDOS:
    """Read a merged run (`index.json` + chunks) as an `AcceptedDOS`."""
    rows, index = _read_index(out)
    tokens = rows["tokens"].astype(np.int32)
    scale = rows["scale"].astype(np.float32)
    dos = np.asarray(decode(jnp.asarray(tokens), jnp.asarray(scale)))
    return AcceptedDOS(
        tokens=tokens,
        scale=scale,
        dos=dos,
        properties={n: rows[n].astype(np.float32) for n in PROPERTY_NAMES},
        index=rows["index"].astype(np.int64),
        proposals=int(index["proposals"]),
        requested=int(index["requested"]),
    )


def _read_chunks(out) -> tuple[dict, list[dict]]:
    """All rows listed by every shard's manifest, sorted by global index, and the manifests.

    Raises:
        ValueError: naming `out` if there is no shard, shards disagree on the settings, or a
            listed chunk is missing.
    """
    shards = [ChunkStore(f) for f in sorted(Path(out).glob("shard-*"))]
    pairs = [(s, s.manifest()) for s in shards]
    pairs = [(s, m) for s, m in pairs if m is not None]
    if not pairs:
        raise ValueError(f"out: no shard manifests under {out}")
    fingerprints = {json.dumps(m["settings"], sort_keys=True) for _, m in pairs}
    if len(fingerprints) > 1:
        raise ValueError(f"out: shards under {out} were written with different settings")
    parts = []
    for shard, m in pairs:
        for c in m["chunks"]:
            if not (shard.folder / c["file"]).exists():
                raise ValueError(
                    f"out: chunk {shard.folder / c['file']} is listed in its manifest but missing"
                )
            parts.append(shard.read(c["number"]))
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
    rows, manifests = _read_chunks(out)
    accept = int(manifests[0]["accept"]) if accept is None else int(accept)
    stops = {m["next_batch"] for m in manifests}
    if len(stops) > 1:
        raise ValueError(f"out: shards stopped at different batches {sorted(stops)}; resume first")
    n = min(int(accept), rows["index"].shape[0])
    index = {
        "format_version": FORMAT_VERSION,
        "settings": manifests[0]["settings"],
        "accepted": n,
        "requested": int(accept),
        "cutoff_index": int(rows["index"][n - 1]) if n else -1,
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
    write_json(Path(out) / "index.json", index)
    return index


def _read_index(out) -> tuple[dict, dict]:
    """The merged accepted rows (global order, truncated at the cutoff) and the index."""
    path = Path(out) / "index.json"
    if not path.exists():
        raise ValueError(f"out: no index.json under {out}; run the merge step first")
    index = json.loads(path.read_text())
    rows, _ = _read_chunks(out)
    keep = rows["index"] <= index["cutoff_index"]
    return {k: v[keep] for k, v in rows.items()}, index
