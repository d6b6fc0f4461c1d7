"""Padding budgets for crystal-graph batches, chosen from the data's statistics.

CDOSGen runs on static shapes: every batch has N atom slots, G graph slots and (in the score
network's radius graph) E edge slots. Budgets that are too small overflow; budgets that are too
large waste compute on padding. `budgets_from_records` takes a high quantile of the atoms and of
the edges found in random batches of the intended size, so almost every batch fills its B
crystals, and the greedy packer (`jaxdos.data.pipelines`) guarantees no batch ever exceeds a
budget (a crystal that would overflow starts the next batch instead).

Edges are counted host-side with numpy (`neighbour_stats`), independently of the crystal package:
- `max_neighbors=None`: every directed pair (centre i, neighbour j, periodic image n) with
  1e-2 A < |r_j + n @ L - r_i| <= cutoff. The set is symmetric, so it bounds from above any
  symmetrised subgraph with the same cutoff.
- `max_neighbors=k`: the graph `jaxdos.neighbors` builds (MatterGen's radius_graph_pbc, GemNet's
  symmetric reordering): each centre keeps its k nearest candidates (ties to the lower (j, image)
  in lexicographic order), of those the edges with j < i (or j == i and a lexicographically negative
  image) are kept and then mirrored, so E = 2 * kept. Equal up to float32 ties at the k-th
  neighbour and MatterGen's cap of 5 images per direction (only binding for tiny cells).
The in-degree (incoming edges of the busiest atom) sizes that module's `max_in_degree`.
"""

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from jaxdos.data.records import Records
from jaxdos.structures import MAX_ATOMS

__all__ = [
    "CrystalBudgets",
    "NeighbourStats",
    "neighbour_stats",
    "neighbour_counts",
    "budgets_from_records",
]


class NeighbourStats(NamedTuple):
    """Per-crystal graph sizes from `neighbour_stats`.

    Fields:
        edges: `[M]` int64 directed edges.
        in_degree: `[M]` int64 largest number of incoming edges of any atom.
    """

    edges: np.ndarray
    in_degree: np.ndarray


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrystalBudgets:
    """Static shapes of a padded crystal batch.

    Fields:
        atoms: N, atom slots per batch (>= 20 so any single crystal fits).
        graphs: G, graph slots per batch, including one slot that is always padding (the jraph
            convention: padding atoms belong to it), so at most G - 1 crystals per batch.
        edges: E, directed-edge budget of the radius graph, or None to pack by atoms only.
        cutoff: radius (Angstrom) the edges were counted with (required if `edges` is set).
        max_neighbors: the kNN cut the edges were counted with (None: the full radius set).
        in_degree: estimated incoming-edge budget per atom (informative; not used for packing).
    """

    atoms: int
    graphs: int
    edges: int | None = None
    cutoff: float | None = None
    max_neighbors: int | None = None
    in_degree: int | None = None

    def __post_init__(self):
        if self.atoms < MAX_ATOMS:
            raise ValueError(
                f"atoms: expected >= {MAX_ATOMS} (the largest crystal), got {self.atoms}"
            )
        if self.graphs < 2:
            raise ValueError(
                f"graphs: expected >= 2 (one crystal + the padding slot), got {self.graphs}"
            )
        if self.edges is not None:
            if self.edges < 1:
                raise ValueError(f"edges: expected >= 1 or None, got {self.edges}")
            if self.cutoff is None or not self.cutoff > 0:
                raise ValueError(
                    f"cutoff: expected > 0 Angstrom when edges is set, got {self.cutoff}"
                )
        if self.max_neighbors is not None and self.max_neighbors < 1:
            raise ValueError(f"max_neighbors: expected >= 1 or None, got {self.max_neighbors}")

    @property
    def edges_per_atom(self) -> int | None:
        """E / N rounded up to even: `jaxdos.neighbors.GraphConfig.edges_per_atom`."""
        if self.edges is None:
            return None
        per = -(-self.edges // self.atoms)
        return per + per % 2

    @classmethod
    def tiny(cls) -> "CrystalBudgets":
        """A fixed small preset for smoke tests: 4 crystals, 48 atoms, atoms-only packing."""
        return cls(atoms=48, graphs=5)


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def _crystal_stats(frac, lattice, cutoff: float, max_neighbors: int | None) -> tuple[int, int]:
    """(directed edges, max in-degree) of one crystal (`frac` [n, 3], `lattice` [3, 3])."""
    n = frac.shape[0]
    inv = np.linalg.inv(lattice)
    # Images along a: c = cutoff / (spacing of the planes spanned by b, c) = cutoff * |inv[:, a]|.
    # A pair with frac difference d in (-1, 1) needs |d + k| <= c, so |k| <= ceil(c) suffices.
    reps = np.ceil(cutoff * np.linalg.norm(inv, axis=0)).astype(int)
    axes = [np.arange(-r, r + 1) for r in reps]
    images = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # lexicographic
    cart = frac @ lattice  # [n, 3]
    nbr = cart[None, :, None, :] + (images @ lattice)[None, None]  # [1, j, S, 3]
    diff = nbr - cart[:, None, None, :]  # [i, j, S, 3]
    d2 = np.einsum("ijsk,ijsk->ijs", diff, diff)
    ok = (d2 <= cutoff * cutoff) & (d2 > 1e-4)  # 1e-4 A^2: jaxdos.neighbors's threshold
    if max_neighbors is not None:
        # The k nearest per centre, ties to the lower candidate index j * S + s (stable sort).
        flat = np.where(ok, d2, np.inf).reshape(n, -1)
        take = np.argsort(flat, axis=1, kind="stable")[:, :max_neighbors]
        sel = np.zeros_like(flat, bool)
        np.put_along_axis(sel, take, True, axis=1)
        ok = ok & sel.reshape(ok.shape)
    i = np.arange(n)[:, None, None]
    j = np.arange(n)[None, :, None]
    first = np.where(images != 0, images, 0)
    nz = np.argmax(images != 0, axis=1)  # first non-zero component (0 for the zero image)
    lex_neg = first[np.arange(images.shape[0]), nz] < 0
    keep = ok & ((j < i) | ((j == i) & lex_neg[None, None, :]))
    # Mirroring each kept edge j -> i adds i -> j: in-degree = kept as target + kept as source.
    in_degree = keep.sum(axis=(1, 2)) + keep.sum(axis=(0, 2))
    return 2 * int(keep.sum()), int(in_degree.max(initial=0))


def neighbour_stats(
    records: Records, cutoff: float, *, max_neighbors: int | None = None
) -> NeighbourStats:
    """Directed edges and max in-degree per crystal (numpy, host-side; see the module docstring).

    Args:
        records: the crystals.
        cutoff: radius in Angstrom.
        max_neighbors: kNN cut per centre as in `jaxdos.neighbors` (None: all pairs).

    Raises:
        ValueError: if `cutoff` or `max_neighbors` is not positive or a lattice is singular.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff: expected > 0 Angstrom, got {cutoff}")
    if max_neighbors is not None and max_neighbors < 1:
        raise ValueError(f"max_neighbors: expected >= 1 or None, got {max_neighbors}")
    lattice = np.asarray(records.lattice, np.float64)
    dets = np.abs(np.linalg.det(lattice))
    if np.any(dets < 1e-6):
        raise ValueError(f"lattice: singular cell at record {int(np.argmin(dets))}")
    frac = np.asarray(records.frac_coords, np.float64)
    n = np.asarray(records.num_atoms)
    stats = [
        _crystal_stats(frac[r, : n[r]], lattice[r], cutoff, max_neighbors)
        for r in range(len(records))
    ]
    arr = np.asarray(stats, np.int64).reshape(-1, 2)
    return NeighbourStats(edges=arr[:, 0], in_degree=arr[:, 1])


def neighbour_counts(records: Records, cutoff: float, *, max_neighbors: int | None = None):
    """Directed edges per crystal, `[M]` int64: `neighbour_stats(...).edges`."""
    return neighbour_stats(records, cutoff, max_neighbors=max_neighbors).edges


def budgets_from_records(
    records: Records,
    *,
    batch_size: int,
    cutoff: float | None = None,
    max_neighbors: int | None = None,
    quantile: float = 0.99,
    num_samples: int = 2000,
    multiple: int = 8,
    seed: int = 0,
    stats: NeighbourStats | None = None,
) -> CrystalBudgets:
    """Budgets for batches of `batch_size` crystals from the records' statistics.

    Draws `num_samples` random batches (without replacement inside a batch) and takes the
    `quantile` of their total atoms and, if `cutoff` is given, of their total directed edges and
    their busiest atom's in-degree, rounded up to a `multiple` and never below what the largest
    single crystal needs.

    Args:
        records: the data set (statistics are taken over all of it).
        batch_size: intended crystals per batch B; G = B + 1 graph slots.
        cutoff: radius-graph cutoff in Angstrom; None packs by atoms only (edges=None).
        max_neighbors: kNN cut of the radius graph (MatterGen: 50); None counts all pairs.
        quantile: in (0, 1]; 1 means the largest sampled batch.
        num_samples: random batches drawn for the statistics.
        multiple: round N, E and the in-degree up to a multiple of this (accelerator friendly).
        seed: for the random batches.
        stats: precomputed `neighbour_stats(records, cutoff, max_neighbors=...)`.

    Returns:
        CrystalBudgets(atoms=N, graphs=B + 1, edges=E, cutoff, max_neighbors, in_degree).
    """
    m = len(records)
    if m == 0:
        raise ValueError("records: expected at least one record")
    if not 1 <= batch_size:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile: expected in (0, 1], got {quantile}")
    rng = np.random.default_rng(seed)
    b = min(batch_size, m)
    picks = np.stack([rng.choice(m, size=b, replace=False) for _ in range(num_samples)])
    atoms = np.asarray(records.num_atoms, np.int64)
    n_budget = max(_round_up(np.quantile(atoms[picks].sum(1), quantile), multiple), MAX_ATOMS)
    if cutoff is None:
        return CrystalBudgets(atoms=n_budget, graphs=batch_size + 1)
    if stats is None:
        stats = neighbour_stats(records, cutoff, max_neighbors=max_neighbors)
    if np.shape(stats.edges) != (m,) or np.shape(stats.in_degree) != (m,):
        raise ValueError(f"stats: expected edges and in_degree of shape ({m},)")
    e_q = np.quantile(stats.edges[picks].sum(1), quantile)
    d_q = np.quantile(stats.in_degree[picks].max(1), quantile)
    return CrystalBudgets(
        atoms=n_budget,
        graphs=batch_size + 1,
        edges=_round_up(max(e_q, stats.edges.max(), 1), multiple),
        cutoff=cutoff,
        max_neighbors=max_neighbors,
        in_degree=_round_up(max(d_q, 1), multiple),
    )
