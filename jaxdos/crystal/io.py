"""Generated crystals -> pymatgen `Structure`s and extxyz text. The files a command writes
(CIF, extxyz, the JSON record of how they were made) come from `jaxdos.pipeline.writers`.

Like MatterGen's output conversion, the lattice is rebuilt from its parameters (lengths and angles
of the symmetric sampled matrix), which fixes pymatgen's standard orientation; fractional
coordinates are unchanged by that rotation.
"""

from pathlib import Path

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from jaxdos.crystal.batch import MAX_Z, CrystalBatch

__all__ = ["lattice_params", "to_structures", "write_extxyz"]


def lattice_params(lattice) -> tuple[np.ndarray, np.ndarray]:
    """Lengths `[G, 3]` (A) and angles alpha, beta, gamma `[G, 3]` (deg) of lattices `[G, 3, 3]`
    (rows are vectors)."""
    lat = np.asarray(lattice, np.float64)
    lengths = np.linalg.norm(lat, axis=-1)
    pairs = ((1, 2), (0, 2), (0, 1))
    cosines = [
        np.sum(lat[:, i] * lat[:, j], -1) / (lengths[:, i] * lengths[:, j]) for i, j in pairs
    ]
    angles = np.degrees(np.arccos(np.clip(np.stack(cosines, -1), -1.0, 1.0)))
    return lengths, angles


def to_structures(batch: CrystalBatch) -> list[Structure]:
    """One `Structure` per real graph of a (numpy) padded batch.

    Raises:
        ValueError: naming `atomic_numbers`, if a real atom is not an element Z in 1..100 (e.g.
            the mask 101 left by an unfinished trajectory), or `lattice` if degenerate / non-finite.
    """
    z = np.asarray(batch.atomic_numbers)
    nm = np.asarray(batch.node_mask, bool)
    gm = np.asarray(batch.graph_mask, bool)
    b = np.asarray(batch.batch)
    frac = np.asarray(batch.frac_coords, np.float64)
    bad = nm & ((z < 1) | (z > MAX_Z))
    if np.any(bad):
        raise ValueError(
            f"atomic_numbers: expected elements Z in 1..{MAX_Z}, got {np.unique(z[bad])}"
        )
    lat = np.asarray(batch.lattice, np.float64)
    if not np.all(np.isfinite(lat[gm])) or np.any(np.abs(np.linalg.det(lat[gm])) < 1e-6):
        raise ValueError("lattice: expected finite, non-singular lattices for every real crystal")
    lengths, angles = lattice_params(lat)
    out = []
    for g in np.flatnonzero(gm):
        sel = nm & (b == g)
        cell = Lattice.from_parameters(*lengths[g], *angles[g])
        species = [Element.from_Z(int(v)) for v in z[sel]]
        out.append(Structure(cell, species, np.mod(frac[sel], 1.0)))
    return out


def write_extxyz(structures: list[Structure], path: Path) -> None:
    """All structures in one extended-XYZ file (Cartesian positions, periodic lattice)."""
    lines = []
    for s in structures:
        m = s.lattice.matrix
        lat = " ".join(f"{v:.8f}" for v in m.reshape(-1))
        lines.append(str(len(s)))
        lines.append(
            f'Lattice="{lat}" Properties=species:S:1:pos:R:3 pbc="T T T" '
            f'formula="{s.composition.reduced_formula}"'
        )
        for site in s:
            x, y, zc = site.coords
            lines.append(f"{site.specie.symbol} {x:.8f} {y:.8f} {zc:.8f}")
    Path(path).write_text("\n".join(lines) + "\n")
