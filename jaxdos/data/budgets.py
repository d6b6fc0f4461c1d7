"""Padding budgets for crystal-graph batches, chosen from the data's statistics.

CDOSGen runs on static shapes: every batch has N atom slots, G graph slots and (in the score
network's radius graph) E edge slots. Budgets that are too small overflow; budgets that are too
large waste compute on padding. `budgets_from_records` takes a high quantile of the atoms and of
the neighbour pairs found in random batches of the intended size, so almost every batch fills
its B crystals, and the greedy packer (`jaxdos.data.pipelines`) guarantees no batch ever exceeds
a budget (a crystal that would overflow starts the next batch instead).

Edges are directed neighbour pairs (i, j, periodic image) with 0 < |r_j + image - r_i| <= cutoff,
counted by `neighbour_counts` with plain numpy. The full radius set is symmetric, so it bounds from
above the graph `jaxdos.crystal.graph` builds with the same cutoff (a per-centre kNN cut followed by
symmetrisation keeps a subset of it); the estimate holds only for the same cutoff.
"""

import dataclasses
import math

import numpy as np

from jaxdos.data.records import MAX_ATOMS, Records

__all__ = ["CrystalBudgets", "neighbour_counts", "budgets_from_records"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrystalBudgets:
    """Static shapes of a padded crystal batch.

    Fields:
        atoms: N, atom slots per batch (>= 20 so any single crystal fits).
        graphs: G, graph slots per batch, including one slot that is always padding (the jraph
            convention: padding atoms belong to it), so at most G - 1 crystals per batch.
        edges: E, directed-edge budget of the radius graph, or None to pack by atoms only.
        cutoff: radius (Angstrom) the edge budget was counted with (required if `edges` is set).
    """

    atoms: int
    graphs: int
    edges: int | None = None
    cutoff: float | None = None

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

    @property
    def edges_per_atom(self) -> int | None:
        """E / N rounded up to even: `jaxdos.crystal.graph.GraphConfig.edges_per_atom`."""
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


def _crystal_edges(frac: np.ndarray, lattice: np.ndarray, cutoff: float) -> int:
    """Directed neighbour pairs within `cutoff` of one crystal (`frac` [n, 3], `lattice` [3, 3])."""
    inv = np.linalg.inv(lattice)
    # Images along a: cutoff / (spacing of the planes spanned by b, c) = cutoff * |inv[:, a]|;
    # frac differences lie in (-1, 1), so ceil(...) + 1 images either side cover every pair.
    reps = np.ceil(cutoff * np.linalg.norm(inv, axis=0)).astype(int) + 1
    axes = [np.arange(-r, r + 1) for r in reps]
    shifts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3) @ lattice  # [S, 3]
    cart = frac @ lattice  # [n, 3]
    diff = cart[None, :, None, :] + shifts[None, None] - cart[:, None, None, :]  # [n, n, S, 3]
    d2 = np.einsum("ijsk,ijsk->ijs", diff, diff)
    return int(np.count_nonzero((d2 <= cutoff * cutoff) & (d2 > 1e-8)))


def neighbour_counts(records: Records, cutoff: float) -> np.ndarray:
    """Directed edges within `cutoff` Angstrom per crystal, `[M]` int64 (numpy, host-side).

    Raises:
        ValueError: if `cutoff` is not positive or a lattice is singular.
    """
    if not cutoff > 0:
        raise ValueError(f"cutoff: expected > 0 Angstrom, got {cutoff}")
    lattice = np.asarray(records.lattice, np.float64)
    dets = np.abs(np.linalg.det(lattice))
    if np.any(dets < 1e-6):
        raise ValueError(f"lattice: singular cell at record {int(np.argmin(dets))}")
    frac = np.asarray(records.frac_coords, np.float64)
    n = np.asarray(records.num_atoms)
    return np.array(
        [_crystal_edges(frac[i, : n[i]], lattice[i], cutoff) for i in range(len(records))],
        dtype=np.int64,
    )


def budgets_from_records(
    records: Records,
    *,
    batch_size: int,
    cutoff: float | None = None,
    quantile: float = 0.99,
    num_samples: int = 2000,
    multiple: int = 8,
    seed: int = 0,
    edge_counts: np.ndarray | None = None,
) -> CrystalBudgets:
    """Budgets for batches of `batch_size` crystals from the records' statistics.

    Draws `num_samples` random batches (without replacement inside a batch) and takes the
    `quantile` of their total atoms and, if `cutoff` is given, of their total directed edges,
    rounded up to a `multiple` and never below what the largest single crystal needs.

    Args:
        records: the data set (statistics are taken over all of it).
        batch_size: intended crystals per batch B; G = B + 1 graph slots.
        cutoff: radius-graph cutoff in Angstrom; None packs by atoms only (edges=None).
        quantile: in (0, 1]; 1 means the largest sampled batch.
        num_samples: random batches drawn for the statistics.
        multiple: round N and E up to a multiple of this (friendly to accelerators).
        seed: for the random batches.
        edge_counts: `[M]` precomputed `neighbour_counts(records, cutoff)` (saves the count).

    Returns:
        CrystalBudgets(atoms=N, graphs=B + 1, edges=E or None, cutoff=cutoff).
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
    e_budget = None
    if cutoff is not None:
        edges = neighbour_counts(records, cutoff) if edge_counts is None else edge_counts
        if edges.shape != (m,):
            raise ValueError(f"edge_counts: expected shape ({m},), got {edges.shape}")
        e_q = np.quantile(edges[picks].sum(1), quantile)
        e_budget = _round_up(max(e_q, edges.max(), 1), multiple)
    return CrystalBudgets(atoms=n_budget, graphs=batch_size + 1, edges=e_budget, cutoff=cutoff)
