"""Number-of-atoms distributions and empty padded batches for sampling.

See docs/spec/mattergen.md §1.3, §5.4.

Host-side numpy: MatterGen draws num_atoms with numpy before sampling; shapes depend on it, so it
never enters a jitted function. Atom budgets are rounded up to buckets so that the jitted sampler
compiles for few shapes.
"""

import dataclasses

import numpy as np

from jaxdos.crystal.batch import MASK_Z
from jaxdos.structures import CrystalBatch

__all__ = [
    "NumAtomsDistribution",
    "ALEX_MP_20",
    "atom_bucket",
    "prior_batch",
    "check_num_atoms",
    "device_split",
    "device_atom_budget",
    "device_prior_batch",
]

_ALEX_MP_20_PROBS = (
    0.00023, 0.00280, 0.01934, 0.16363, 0.04668, 0.07808, 0.02725, 0.11504, 0.04898, 0.12621,
    0.03577, 0.14591, 0.00600, 0.02863, 0.02023, 0.04473, 0.00130, 0.03870, 0.00701, 0.04346,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True)
class NumAtomsDistribution:
    """P(num_atoms = i + 1) = probs[i].

    Attributes:
        probs: probabilities for 1..len(probs) atoms (normalised on construction check).
    """

    probs: tuple[float, ...]

    def __post_init__(self):
        p = np.asarray(self.probs, np.float64)
        if p.ndim != 1 or p.size < 1 or np.any(p < 0) or not np.isfinite(p).all():
            raise ValueError(f"probs: expected a non-empty tuple of finite values >= 0, got {p}")
        if abs(p.sum() - 1.0) > 1e-3:
            raise ValueError(f"probs: expected to sum to 1 (+-1e-3), got {p.sum()}")

    @property
    def max_atoms(self) -> int:
        return len(self.probs)

    @classmethod
    def from_counts(cls, num_atoms) -> "NumAtomsDistribution":
        """The empirical distribution of a training set's `num_atoms` (ints >= 1)."""
        n = np.asarray(num_atoms, np.int64)
        if n.size == 0 or n.min() < 1:
            raise ValueError("num_atoms: expected a non-empty array of ints >= 1")
        counts = np.bincount(n - 1)
        return cls(probs=tuple(float(c) for c in counts / counts.sum()))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """`[size]` int32 draws (numpy RNG, as in MatterGen)."""
        p = np.asarray(self.probs, np.float64)
        return (rng.choice(p.size, size=size, p=p / p.sum()) + 1).astype(np.int32)


ALEX_MP_20 = NumAtomsDistribution(probs=_ALEX_MP_20_PROBS)


def atom_bucket(total_atoms: int) -> int:
    """Padded atom slots: the next power of two >= total (at least 16), multiples of 1024 above."""
    if total_atoms <= 1024:
        return max(16, 1 << (max(total_atoms, 1) - 1).bit_length())
    return -(-total_atoms // 1024) * 1024


def check_num_atoms(num_atoms, max_atoms: int) -> np.ndarray:
    """Validate requested atom counts; returns `[G]` int32.

    Raises:
        ValueError: naming `num_atoms`, if empty, non-integer, < 1 or > max_atoms.
    """
    n = np.asarray(num_atoms)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(f"num_atoms: expected a non-empty 1-d array, got shape {n.shape}")
    if not np.issubdtype(n.dtype, np.integer):
        if not np.all(np.isfinite(n)) or np.any(n != np.round(n)):
            raise ValueError(f"num_atoms: expected integers, got {n}")
    if n.min() < 1 or n.max() > max_atoms:
        raise ValueError(
            f"num_atoms: expected values in [1, {max_atoms}], got min {n.min()} max {n.max()}"
        )
    return n.astype(np.int32)


def prior_batch(num_atoms, atom_budget: int | None = None) -> CrystalBatch:
    """An all-mask padded batch (numpy) with placeholder coordinates, ready for the prior draw.

    Args:
        num_atoms: `[G]` atoms per crystal (>= 1).
        atom_budget: padded atom slots `N`; default `atom_bucket(sum(num_atoms))`.

    Raises:
        ValueError: if the atoms do not fit in `atom_budget`.
    """
    n = check_num_atoms(num_atoms, max_atoms=10_000)
    total = int(n.sum())
    budget = atom_bucket(total) if atom_budget is None else int(atom_budget)
    if total > budget:
        raise ValueError(f"atom_budget: {total} atoms do not fit in atom_budget={budget}")
    g = n.size
    batch_idx = np.full(budget, g - 1, np.int32)
    batch_idx[:total] = np.repeat(np.arange(g, dtype=np.int32), n)
    node_mask = np.arange(budget) < total
    return CrystalBatch(
        atomic_numbers=np.where(node_mask, MASK_Z, 0).astype(np.int32),
        frac_coords=np.zeros((budget, 3), np.float32),
        lattice=np.tile(np.eye(3, dtype=np.float32), (g, 1, 1)),
        num_atoms=n,
        batch=batch_idx,
        node_mask=node_mask,
        graph_mask=np.ones(g, bool),
    )


def device_split(num_graphs: int, devices: int) -> int:
    """G_d, the graph slots per device: crystal c goes to device c // G_d, slot c % G_d."""
    if num_graphs < 1 or devices < 1:
        raise ValueError(f"num_graphs, devices: expected >= 1, got {num_graphs}, {devices}")
    return -(-num_graphs // devices)


def device_atom_budget(num_atoms, devices: int) -> int:
    """Atom slots per device: the bucket of the fullest device under `device_split`."""
    n = np.asarray(num_atoms, np.int64)
    per = device_split(n.size, devices)
    sums = np.add.reduceat(n, np.arange(0, n.size, per)) if n.size else np.zeros(1)
    return atom_bucket(int(sums.max()))


def device_prior_batch(num_atoms, devices: int, atom_budget: int | None = None) -> CrystalBatch:
    """`devices` all-mask sub-batches stacked on a leading axis `[D, N_d]` / `[D, G_d]`.

    Device d holds crystals d * G_d .. (d + 1) * G_d - 1 (global order); its unused graph slots
    are padding (graph_mask False, no atoms), so they never enter the batch-global means.

    Args:
        num_atoms: `[G]` atoms per crystal (>= 1).
        devices: D.
        atom_budget: atom slots per device; default `device_atom_budget(num_atoms, devices)`.

    Raises:
        ValueError: if a device's atoms do not fit in `atom_budget`.
    """
    n = check_num_atoms(num_atoms, max_atoms=10_000)
    per = device_split(n.size, devices)
    budget = device_atom_budget(n, devices) if atom_budget is None else int(atom_budget)
    parts = []
    for d in range(devices):
        mine = n[d * per : (d + 1) * per]
        real = mine.size
        counts = np.concatenate([mine, np.zeros(per - real, np.int32)]).astype(np.int32)
        total = int(mine.sum())
        if total > budget:
            raise ValueError(f"atom_budget: {total} atoms do not fit in atom_budget={budget}")
        batch_idx = np.full(budget, per - 1, np.int32)
        batch_idx[:total] = np.repeat(np.arange(per, dtype=np.int32), counts)
        node_mask = np.arange(budget) < total
        parts.append(
            CrystalBatch(
                atomic_numbers=np.where(node_mask, MASK_Z, 0).astype(np.int32),
                frac_coords=np.zeros((budget, 3), np.float32),
                lattice=np.tile(np.eye(3, dtype=np.float32), (per, 1, 1)),
                num_atoms=counts,
                batch=batch_idx,
                node_mask=node_mask,
                graph_mask=np.arange(per) < real,
            )
        )
    return CrystalBatch(*(np.stack(f) for f in zip(*parts, strict=True)))
