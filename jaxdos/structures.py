"""The crystal layer every stage shares: two array layouts, one pymatgen conversion, the writers.

A crystal is an ordered periodic cell: atomic numbers Z, fractional coordinates and a lattice whose
rows are the lattice vectors in Angstrom (cart = frac @ lattice). It is held in one of two layouts:

- `Crystals`, padded: M crystals of up to A atoms each (`[M, A]`, Z = 0 beyond `num_atoms`). What
  data sets, the oracle and the pipeline store and score.
- `CrystalBatch`, flat: the atoms of G graph slots concatenated into N atom slots, with masks. What
  the CDOSGen network, its losses and its sampler take (static shapes under jit).

`pack` (padded -> flat, to given budgets) and `unpack` (flat -> padded) convert between them;
`to_structures` / `from_structures` convert `Crystals` to and from pymatgen `Structure`s and keep
the lattice matrix as it is (no re-orientation). `write_cif`, `write_extxyz` and `read_extxyz`
are the one set of structure writers. extxyz keeps the matrix; CIF stores only the cell
parameters, so a CIF read back is the same crystal in pymatgen's standard orientation.

The element policy (the paper's Table 6: Z <= 83 without Tc and Pm) is `ALLOWED_Z`, and `is_allowed`
is the one test every filter applies (MP loader, oracle, sampler logits). `MAX_Z` is the largest
element any array may carry (MatterGen's 100 atom types).

Everything is host-side numpy except `CrystalBatch.cartesian` and `.atom_index`; pymatgen is
imported lazily.
This module imports nothing from jaxdos but `jaxdos.typing`: every layer may import it.
"""

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.typing import Array

__all__ = [
    "MAX_ATOMS",
    "MAX_Z",
    "ALLOWED_Z",
    "is_allowed",
    "Crystals",
    "CrystalBatch",
    "pack",
    "unpack",
    "to_structures",
    "from_structures",
    "write_cif",
    "write_extxyz",
    "read_extxyz",
]

MAX_ATOMS = 20  # atoms per crystal in data, oracle and pipeline (the paper's Table 6 filter)
MAX_Z = 100  # elements Z in 1..100 are representable (MatterGen's atom-type vocabulary)
# Table 6: Z <= 83 (Bi), without Tc (43) and Pm (61), which have no stable isotopes.
ALLOWED_Z: tuple[int, ...] = tuple(z for z in range(1, 84) if z not in (43, 61))


def is_allowed(z, elements: tuple[int, ...] = ALLOWED_Z) -> np.ndarray:
    """Elementwise: is Z one of `elements` (default the Table 6 policy)? Same shape as `z`, bool."""
    return np.isin(np.asarray(z), np.asarray(elements))


class Crystals(NamedTuple):
    """M crystals padded to A atoms (numpy; atoms first, Z = 0 beyond `num_atoms`).

    Fields:
        atomic_numbers: `[M, A]` int32.
        frac_coords: `[M, A, 3]` float32, in [0, 1) for data sets (0 on padding).
        lattice: `[M, 3, 3]` float32, rows are lattice vectors in Angstrom.
        num_atoms: `[M]` int32.
    """

    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lattice: np.ndarray
    num_atoms: np.ndarray

    def take(self, rows) -> "Crystals":
        """The crystals at `rows` (an integer index array, boolean mask or slice)."""
        return Crystals(*(np.asarray(f)[rows] for f in self))


class CrystalBatch(NamedTuple):
    """The flat layout: G graph slots, N atom slots (atoms of one crystal contiguous).

    Fields:
        atomic_numbers: `[N]` int32, 0 on padding atoms (CDOSGen's sampler also uses its mask
            state MAX_Z + 1 here).
        frac_coords: `[N, 3]` float32.
        lattice: `[G, 3, 3]` float32 (identity on padding graphs, so inverses stay finite).
        num_atoms: `[G]` int32 (0 for padding graphs).
        batch: `[N]` int32 graph slot of each atom (padding atoms: the last slot or any slot with
            node_mask False; every consumer must apply `node_mask`).
        node_mask: `[N]` bool.
        graph_mask: `[G]` bool.
    """

    atomic_numbers: Array
    frac_coords: Array
    lattice: Array
    num_atoms: Array
    batch: Array
    node_mask: Array
    graph_mask: Array

    @property
    def num_nodes(self) -> int:
        return self.atomic_numbers.shape[0]

    @property
    def num_graphs(self) -> int:
        return self.lattice.shape[0]

    def cartesian(self) -> Array:
        """Cartesian positions `[N, 3]` = frac @ lattice[batch]."""
        return jnp.einsum("ni,nij->nj", self.frac_coords, self.lattice[self.batch])

    def atom_index(self) -> Array:
        """`[N]` index of each atom within its crystal (0 on padding atoms); traceable."""
        n, g = self.num_nodes, self.num_graphs
        ids = jnp.arange(n, dtype=jnp.int32)
        seg = jnp.where(self.node_mask, self.batch, g)
        first = jax.ops.segment_min(jnp.where(self.node_mask, ids, n), seg, num_segments=g + 1)
        return jnp.where(self.node_mask, ids - first[seg], 0)


def pack(crystals: Crystals, *, num_nodes: int | None = None, num_graphs: int | None = None):
    """Padded -> flat: the crystals in graph slots 0..M-1, their atoms in slots 0..sum(n)-1.

    Padding atoms (Z 0, frac 0) point at graph slot G - 1; padding graphs hold identity lattices.

    Args:
        crystals: M crystals.
        num_nodes: N atom slots (default: exactly the atoms).
        num_graphs: G graph slots (default: M).

    Returns:
        A numpy `CrystalBatch`.

    Raises:
        ValueError: naming the budget, if the atoms or the crystals do not fit (never truncated).
    """
    z, frac, lat, n = (np.asarray(f) for f in crystals)
    n = n.astype(np.int32)
    m, total = n.size, int(n.sum())
    num_nodes = total if num_nodes is None else int(num_nodes)
    num_graphs = m if num_graphs is None else int(num_graphs)
    if total > num_nodes:
        raise ValueError(f"num_nodes: {total} atoms do not fit in num_nodes={num_nodes}")
    if m > num_graphs or num_graphs < 1:
        raise ValueError(f"num_graphs: {m} crystals do not fit in num_graphs={num_graphs}")
    if m and (n.min() < 0 or n.max() > z.shape[1]):
        raise ValueError(f"crystals.num_atoms: expected values in [0, {z.shape[1]}], got {n}")
    graph = np.repeat(np.arange(m), n)
    local = np.arange(total) - np.repeat(np.cumsum(n) - n, n)  # atom index within its crystal
    atoms = np.zeros(num_nodes, np.int32)
    coords = np.zeros((num_nodes, 3), np.float32)
    atoms[:total] = z[graph, local]
    coords[:total] = frac[graph, local]
    batch = np.full(num_nodes, num_graphs - 1, np.int32)
    batch[:total] = graph
    lattice = np.tile(np.eye(3, dtype=np.float32), (num_graphs, 1, 1))
    lattice[:m] = lat
    counts = np.zeros(num_graphs, np.int32)
    counts[:m] = n
    return CrystalBatch(
        atomic_numbers=atoms,
        frac_coords=coords,
        lattice=lattice,
        num_atoms=counts,
        batch=batch,
        node_mask=np.arange(num_nodes) < total,
        graph_mask=np.arange(num_graphs) < m,
    )


def unpack(batch: CrystalBatch, max_atoms: int | None = MAX_ATOMS) -> Crystals:
    """Flat -> padded: one row per real graph (graph_mask), in slot order.

    Fractional coordinates are wrapped into the unit cell (a sampled coordinate may leave it).

    Args:
        batch: a `CrystalBatch` (numpy or jax arrays).
        max_atoms: A of the result; None sizes it to the largest crystal.

    Raises:
        ValueError: naming `max_atoms`, if a real crystal has more atoms.
    """
    z, frac, lat, _, seg, nm, gm = (np.asarray(f) for f in batch)
    graphs = np.flatnonzero(gm)
    counts = np.bincount(seg[nm], minlength=gm.size)[graphs]
    a = int(counts.max(initial=0)) if max_atoms is None else int(max_atoms)
    if counts.size and counts.max() > a:
        raise ValueError(f"max_atoms: a crystal has {counts.max()} atoms > max_atoms={a}")
    out = Crystals(
        np.zeros((graphs.size, a), np.int32),
        np.zeros((graphs.size, a, 3), np.float32),
        lat[graphs].astype(np.float32),
        counts.astype(np.int32),
    )
    for row, g in enumerate(graphs):
        atoms = nm & (seg == g)
        out.atomic_numbers[row, : counts[row]] = z[atoms]
        out.frac_coords[row, : counts[row]] = np.mod(frac[atoms], 1.0)
    return out


def to_structures(crystals: Crystals) -> list:
    """One pymatgen `Structure` per crystal, with the lattice matrix exactly as stored.

    Raises:
        ValueError: naming `atomic_numbers` if a real atom is not an element Z in 1..MAX_Z (e.g.
            the mask state of an unfinished trajectory), or `lattice` if a lattice is non-finite
            or singular.
    """
    from pymatgen.core import Lattice, Structure

    z, frac, lat, n = (np.asarray(f) for f in crystals)
    real = np.arange(z.shape[1])[None, :] < n[:, None]
    bad = real & ((z < 1) | (z > MAX_Z))
    if np.any(bad):
        raise ValueError(
            f"atomic_numbers: expected elements Z in 1..{MAX_Z}, got {np.unique(z[bad])}"
        )
    lat = lat.astype(np.float64)
    if not np.all(np.isfinite(lat)) or np.any(np.abs(np.linalg.det(lat)) < 1e-6):
        raise ValueError("lattice: expected finite, non-singular lattices for every crystal")
    return [
        Structure(Lattice(lat[i]), [int(v) for v in z[i, : n[i]]], frac[i, : n[i]].astype(float))
        for i in range(n.size)
    ]


def from_structures(structures, max_atoms: int = MAX_ATOMS) -> Crystals:
    """Pad ordered pymatgen Structures into `Crystals`; coordinates wrapped to [0, 1).

    Raises:
        ValueError: naming `structures[i]`, if one is disordered, holds a non-element species or
            has no atoms or more than `max_atoms`.
    """
    m = len(structures)
    out = Crystals(
        np.zeros((m, max_atoms), np.int32),
        np.zeros((m, max_atoms, 3), np.float32),
        np.zeros((m, 3, 3), np.float32),
        np.zeros((m,), np.int32),
    )
    for i, s in enumerate(structures):
        if not s.is_ordered:
            raise ValueError(f"structures[{i}]: disordered sites are not supported")
        if not 1 <= len(s) <= max_atoms:
            raise ValueError(f"structures[{i}]: num_atoms {len(s)} outside [1, {max_atoms}]")
        z = [getattr(site.specie, "Z", None) for site in s]  # dummy species have no element
        if not all(isinstance(v, int) and 1 <= v <= MAX_Z for v in z):
            raise ValueError(f"structures[{i}]: species {s.species} are not all elements")
        # Wrap in float64 first: float32 rounds values just below 1 up to 1.0, set back to 0.
        frac = np.mod(np.asarray(s.frac_coords, np.float64), 1.0).astype(np.float32)
        out.atomic_numbers[i, : len(s)] = z
        out.frac_coords[i, : len(s)] = np.where(frac >= 1.0, 0.0, frac)
        out.lattice[i] = s.lattice.matrix
        out.num_atoms[i] = len(s)
    return out


def write_cif(structure, path) -> None:
    """One structure as a CIF file (pymatgen's `CifWriter`: P1, cell parameters, frac sites)."""
    from pymatgen.io.cif import CifWriter

    CifWriter(structure).write_file(str(path))


def write_extxyz(structures, path) -> None:
    """All structures in one extended-XYZ file (lattice matrix rows, Cartesian positions, 8 dp)."""
    lines = []
    for s in structures:
        lat = " ".join(f"{v:.8f}" for v in s.lattice.matrix.reshape(-1))
        lines.append(str(len(s)))
        lines.append(
            f'Lattice="{lat}" Properties=species:S:1:pos:R:3 pbc="T T T" '
            f'formula="{s.composition.reduced_formula}"'
        )
        for site in s:
            x, y, zc = site.coords
            lines.append(f"{site.specie.symbol} {x:.8f} {y:.8f} {zc:.8f}")
    Path(path).write_text("\n".join(lines) + "\n")


def read_extxyz(path) -> list:
    """The structures of a file written by `write_extxyz` (pymatgen `Structure`s, matrix kept)."""
    from pymatgen.core import Lattice, Structure

    lines = Path(path).read_text().splitlines()
    out, i = [], 0
    while i < len(lines) and lines[i].strip():
        n = int(lines[i])
        matrix = np.array(lines[i + 1].split('Lattice="')[1].split('"')[0].split(), float)
        rows = [line.split() for line in lines[i + 2 : i + 2 + n]]
        cart = np.array([r[1:4] for r in rows], float)
        out.append(
            Structure(
                Lattice(matrix.reshape(3, 3)), [r[0] for r in rows], cart, coords_are_cartesian=True
            )
        )
        i += 2 + n
    return out
