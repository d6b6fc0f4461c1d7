"""grain pipelines for both stages, built from `Records` (host-side numpy, static shapes).

- `dos_batches`: DOSSampler batches (`DosBatch`) of B spectra as tokens, K and properties. An epoch
  is a seeded permutation cut into ceil(M / B) batches; the tail batch is padded with masked rows
  (`valid` False) so every batch has the same shape and the train step never recompiles.
- `crystal_batches`: CDOSGen batches (`CrystalGraphBatch`) packed greedily in a seeded order under
  `CrystalBudgets` (atoms N, graph slots G, optionally edges E), so no batch ever overflows.

Both are `grain.IterDataset`s. Iterators are deterministic in (records, seed, epoch) only and
expose grain's `get_state()` / `set_state()`; the state is a small JSON-able dict, so it goes into a
checkpoint and a restored iterator yields exactly the batches the uninterrupted one would have.
The epoch's order comes from `np.random.default_rng([seed, epoch])`, so resuming needs no
replay of earlier epochs.
"""

import functools
from typing import NamedTuple

import grain
import jax
import numpy as np

from jaxdos.data.budgets import CrystalBudgets, neighbour_counts
from jaxdos.data.records import Records
from jaxdos.kernels.grid import N_BINS
from jaxdos.kernels.properties import PROPERTY_NAMES
from jaxdos.kernels.tokenizer import encode
from jaxdos.structures import CrystalBatch, pack

__all__ = [
    "DosBatch",
    "CrystalGraphBatch",
    "epoch_order",
    "encode_records",
    "dos_batches",
    "pack_greedy",
    "crystal_batches",
]


class DosBatch(NamedTuple):
    """B spectra for the DOSSampler (numpy).

    Fields:
        tokens: `[B, L]` int32 (`jaxdos.kernels.tokenizer.encode` with K = record scale).
        scale: `[B]` float32 K (1.0 on padding rows).
        properties: `[B, P]` float32 in `PROPERTY_NAMES` order (band_gap, dos_at_fermi,
            integrated_dos); 0 on padding rows.
        valid: `[B]` bool, False on the padded rows of an epoch's tail batch.
        index: `[B]` int32 record index, -1 on padding rows.
    """

    tokens: np.ndarray
    scale: np.ndarray
    properties: np.ndarray
    valid: np.ndarray
    index: np.ndarray


class CrystalGraphBatch(NamedTuple):
    """G graph slots / N atom slots for CDOSGen (numpy): the crystals and their conditioning.

    Fields:
        crystal: `jaxdos.structures.CrystalBatch` (`pack` of the batch's records): padding atoms
            point at slot G - 1, which is always a padding graph; padding graphs hold identity
            lattices.
        dos: `[G, L]` float32 conditioning DOS (states / eV / atom), 0 on padding graphs.
        index: `[G]` int32 record index, -1 on padding graphs.
    """

    crystal: CrystalBatch
    dos: np.ndarray
    index: np.ndarray


def epoch_order(num_records: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The record order of one epoch, `[M]` int64: a permutation seeded by (seed, epoch)."""
    if not shuffle:
        return np.arange(num_records)
    return np.random.default_rng([seed, epoch]).permutation(num_records)


_ENCODE_CHUNK = 1024  # rows per jitted encode call: one compile whatever the data set size
_encode_jit = jax.jit(encode)


def encode_records(dos: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Tokens `[M, L]` int32 of per-atom DOS `[M, L]` with K `[M]`, in fixed-size jitted chunks.

    Eager `encode` compiles each primitive on first use (seconds on a small CPU); a jitted fixed
    chunk compiles once per process and is reused for every data set.
    """
    m = dos.shape[0]
    out = np.empty((m, N_BINS), np.int32)
    for start in range(0, m, _ENCODE_CHUNK):
        part = np.asarray(dos[start : start + _ENCODE_CHUNK], np.float32)
        k = np.asarray(scale[start : start + _ENCODE_CHUNK], np.float32)
        pad = _ENCODE_CHUNK - part.shape[0]
        part = np.pad(part, ((0, pad), (0, 0)))
        k = np.pad(k, (0, pad), constant_values=1.0)
        out[start : start + _ENCODE_CHUNK] = np.asarray(_encode_jit(part, k))[: _ENCODE_CHUNK - pad]
    return out


def _check_shard(shard_index: int, shard_count: int):
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(
            f"shard_index/shard_count: expected 0 <= index < count, got {shard_index}/{shard_count}"
        )


def _check_common(records: Records, seed: int, num_epochs: int | None):
    if len(records) == 0:
        raise ValueError("records: expected at least one record")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs: expected >= 1 or None (endless), got {num_epochs}")


def dos_batches(
    records: Records,
    *,
    batch_size: int,
    seed: int = 0,
    num_epochs: int | None = 1,
    shuffle: bool = True,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.IterDataset:
    """DOSSampler batches as a grain dataset (iterate it; `iter(ds).get_state()` checkpoints).

    Args:
        records: the spectra; tokens are encoded once up front with K = `records.scale`.
        batch_size: B rows per batch, fixed (the tail is padded, never dropped).
        seed: per-epoch shuffling seed.
        num_epochs: epochs to run, or None for an endless stream.
        shuffle: False keeps record order (evaluation).
        shard_index: this process's shard (`jax.process_index()` in multi-host training).
        shard_count: processes P; each yields rows [p B / P, (p + 1) B / P) of every global
            batch, so the union over processes is the single-process stream.

    Returns:
        grain.IterDataset of `DosBatch` with B / P rows, ceil(M / B) batches per epoch.
    """
    _check_common(records, seed, num_epochs)
    _check_shard(shard_index, shard_count)
    if batch_size < 1 or batch_size % shard_count:
        raise ValueError(
            f"batch_size: expected >= 1 and a multiple of {shard_count}, got {batch_size}"
        )
    m = len(records)
    scale = np.asarray(records.scale, np.float32)
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError("records.scale: expected finite K > 0 for every record")
    tokens = encode_records(np.asarray(records.dos), scale)
    props = np.stack([np.asarray(getattr(records, p), np.float32) for p in PROPERTY_NAMES], -1)
    steps = -(-m // batch_size)
    order = functools.lru_cache(maxsize=2)(lambda e: epoch_order(m, seed, e, shuffle))
    rows = slice(
        shard_index * batch_size // shard_count, (shard_index + 1) * batch_size // shard_count
    )

    def make(i: int, _) -> DosBatch:
        epoch, step = divmod(i, steps)
        idx = order(epoch)[step * batch_size : (step + 1) * batch_size]
        pad = batch_size - idx.size
        full = np.concatenate([idx, np.zeros(pad, idx.dtype)])[rows]
        valid = (np.arange(batch_size) < idx.size)[rows]
        return DosBatch(
            tokens=np.where(valid[:, None], tokens[full], 0).astype(np.int32),
            scale=np.where(valid, scale[full], 1.0).astype(np.float32),
            properties=np.where(valid[:, None], props[full], 0.0).astype(np.float32),
            valid=valid,
            index=np.where(valid, full, -1).astype(np.int32),
        )

    return grain.MapDataset.range(steps).repeat(num_epochs).map_with_index(make).to_iter_dataset()


def pack_greedy(
    order: np.ndarray, num_atoms: np.ndarray, edges: np.ndarray | None, budgets: CrystalBudgets
) -> list[np.ndarray]:
    """Cut `order` into consecutive batches that respect every budget (next-fit greedy).

    A crystal that would overflow the atoms, the G - 1 crystal slots or the edge budget starts a new
    batch; order is preserved so the packing is a pure function of the epoch's permutation.

    Raises:
        ValueError: if a single crystal exceeds a budget on its own (never silently truncated).
    """
    batches, current, n_atoms, n_edges = [], [], 0, 0
    cap_graphs = budgets.graphs - 1
    for r in order:
        a = int(num_atoms[r])
        e = 0 if edges is None else int(edges[r])
        if a > budgets.atoms or (edges is not None and e > budgets.edges):
            raise ValueError(
                f"budgets: record {r} alone needs {a} atoms / {e} edges, more than the budget "
                f"atoms={budgets.atoms}, edges={budgets.edges}; raise the budget"
            )
        over = n_atoms + a > budgets.atoms or len(current) == cap_graphs
        over = over or (edges is not None and n_edges + e > budgets.edges)
        if over:
            batches.append(np.asarray(current, np.int64))
            current, n_atoms, n_edges = [], 0, 0
        current.append(r)
        n_atoms, n_edges = n_atoms + a, n_edges + e
    if current:
        batches.append(np.asarray(current, np.int64))
    return batches


def _crystal_batch(records: Records, idx: np.ndarray, budgets: CrystalBudgets) -> CrystalGraphBatch:
    g_slots = budgets.graphs
    dos = np.zeros((g_slots, N_BINS), np.float32)
    dos[: idx.size] = records.dos[idx]
    index = np.full(g_slots, -1, np.int32)
    index[: idx.size] = idx
    crystal = pack(records.crystals.take(idx), num_nodes=budgets.atoms, num_graphs=g_slots)
    return CrystalGraphBatch(crystal=crystal, dos=dos, index=index)


class _CrystalDataset(grain.IterDataset):
    """Epochs of greedily packed batches; an epoch's packing is cached (a pure function)."""

    def __init__(self, records, budgets, edges, seed, num_epochs, shuffle, shard):
        super().__init__()
        self.records, self.budgets, self.edges = records, budgets, edges
        self.seed, self.num_epochs, self.shuffle = seed, num_epochs, shuffle
        self.shard_index, self.shard_count = shard
        self.plan = functools.lru_cache(maxsize=2)(self._plan)

    def _plan(self, epoch: int) -> list[np.ndarray]:
        order = epoch_order(len(self.records), self.seed, epoch, self.shuffle)
        plan = pack_greedy(order, np.asarray(self.records.num_atoms), self.edges, self.budgets)
        # Every process must step the same number of times: pad with all-padding batches.
        plan += [np.zeros(0, np.int64)] * (-len(plan) % self.shard_count)
        return plan[self.shard_index :: self.shard_count]

    def __iter__(self) -> "_CrystalIterator":
        return _CrystalIterator(self)


class _CrystalIterator(grain.DatasetIterator):
    """Position (epoch, step); state is that pair, so a restore recomputes nothing else."""

    def __init__(self, dataset: _CrystalDataset):
        super().__init__()
        self._ds, self._epoch, self._step = dataset, 0, 0

    def __next__(self) -> CrystalGraphBatch:
        ds = self._ds
        while True:
            if ds.num_epochs is not None and self._epoch >= ds.num_epochs:
                raise StopIteration
            plan = ds.plan(self._epoch)
            if self._step < len(plan):
                break
            self._epoch, self._step = self._epoch + 1, 0
        idx = plan[self._step]
        self._step += 1
        return _crystal_batch(ds.records, idx, ds.budgets)

    def get_state(self) -> dict:
        return {"epoch": self._epoch, "step": self._step}

    def set_state(self, state: dict) -> None:
        self._epoch, self._step = int(state["epoch"]), int(state["step"])


def crystal_batches(
    records: Records,
    budgets: CrystalBudgets,
    *,
    seed: int = 0,
    num_epochs: int | None = 1,
    shuffle: bool = True,
    edge_counts: np.ndarray | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.IterDataset:
    """CDOSGen batches as a grain dataset, packed under `budgets` in a seeded order per epoch.

    Args:
        records: the crystals and their conditioning DOS.
        budgets: N, G and optionally E (see `budgets_from_records`).
        seed: per-epoch shuffling seed.
        num_epochs: epochs to run, or None for an endless stream.
        shuffle: False keeps record order.
        edge_counts: `[M]` precomputed `neighbour_counts(records, budgets.cutoff,
            max_neighbors=budgets.max_neighbors)`; counted here if the budgets have an edge budget
            and this is None.
        shard_index: this process's shard (`jax.process_index()` in multi-host training).
        shard_count: processes P; process p takes packed batches p, p + P, ... of each epoch
            (the epoch is padded with all-padding batches to a multiple of P).

    Returns:
        grain.IterDataset of `CrystalGraphBatch`; an epoch's batch count depends on its packing.
    """
    _check_common(records, seed, num_epochs)
    _check_shard(shard_index, shard_count)
    edges = None
    if budgets.edges is not None:
        if edge_counts is None:
            edge_counts = neighbour_counts(
                records, budgets.cutoff, max_neighbors=budgets.max_neighbors
            )
        edges = edge_counts
        if np.shape(edges) != (len(records),):
            raise ValueError(
                f"edge_counts: expected shape ({len(records)},), got {np.shape(edges)}"
            )
    # Fail at construction, not mid-training, if some crystal can never fit.
    pack_greedy(np.arange(len(records)), np.asarray(records.num_atoms), edges, budgets)
    shard = (shard_index, shard_count)
    return _CrystalDataset(records, budgets, edges, seed, num_epochs, shuffle, shard)
