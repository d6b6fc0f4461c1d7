"""MP-style DOS files for command tests: what `mp-api` users save (`CompleteDos` JSON written with
`MontyEncoder`), here for small seeded crystals of allowed elements with a Gaussian valence and
conduction band around a seeded gap, so `load-mp` keeps every file."""

import json
from pathlib import Path

import numpy as np
from monty.json import MontyEncoder
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

__all__ = ["write_mp_dir"]

_ELEMENTS = ("Na", "Cl", "Mg", "O", "Zn", "S", "Cu", "Si", "Ga", "N")


def write_mp_dir(folder, count: int, seed: int = 0) -> Path:
    """`count` files `mp-<i>.json` in `folder`: 1-4 atoms per cell, gaps in [0, 3] eV."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    energies = np.linspace(-15.0, 15.0, 601)
    for i in range(count):
        n = int(rng.integers(1, 5))
        species = [str(s) for s in rng.choice(_ELEMENTS, n)]
        cell = Lattice.cubic(2.6 * n ** (1 / 3) + rng.uniform(0.0, 0.8))
        structure = Structure(cell, species, rng.random((n, 3)))
        efermi, gap = rng.uniform(-2.0, 2.0), rng.uniform(0.0, 3.0)
        band = lambda mu, w: np.exp(-0.5 * ((energies - mu) / w) ** 2)
        states = 4.0 * n * (band(efermi - gap / 2 - 2.0, 1.2) + band(efermi + gap / 2 + 2.0, 1.5))
        states[np.abs(energies - efermi) < gap / 2] = 0.0
        tdos = Dos(efermi, energies, {Spin.up: states})
        text = json.dumps(CompleteDos(structure, tdos, {}), cls=MontyEncoder)
        (folder / f"mp-{i}.json").write_text(text)
    return folder
