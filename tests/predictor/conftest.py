"""Tiny predictors and random crystals shared by the predictor tests (one compile per shape)."""

import jax
import numpy as np
import pytest

from jaxdos.data.records import Records
from jaxdos.kernels.grid import N_BINS, bin_centres
from jaxdos.kernels.properties import measure
from jaxdos.neighbors import GraphConfig
from jaxdos.predictor import CompositionConfig, DOSPredictorModel, EquivariantConfig
from jaxdos.predictor.model import init_params
from jaxdos.structures import Crystals

# No kNN cut below the radius set (max_neighbors covers every candidate): the graph is then a
# function of the crystal alone, so symmetry tests are exact up to float rounding.
GRAPH = GraphConfig(cutoff=3.5, max_neighbors=64, edges_per_atom=32, max_in_degree=32)
TINY = EquivariantConfig.tiny(graph=GRAPH, lmax=2, vectors=2, layers=2)


def random_crystals(seed: int, m: int = 3, a: int = 4) -> Crystals:
    """M well-separated crystals of 2..A atoms (no two atoms closer than ~1 A), 3.5-5 A cells."""
    rng = np.random.default_rng(seed)
    z = np.zeros((m, a), np.int32)
    frac = np.zeros((m, a, 3), np.float32)
    n = rng.integers(2, a + 1, m).astype(np.int32)
    lat = np.zeros((m, 3, 3), np.float32)
    for i in range(m):
        lat[i] = np.diag(rng.uniform(3.5, 5.0, 3)) + rng.uniform(-0.4, 0.4, (3, 3))
        pts = []
        while len(pts) < n[i]:
            p = rng.random(3)
            d = [np.linalg.norm(((p - q + 0.5) % 1 - 0.5) @ lat[i]) for q in pts]
            if all(x > 1.2 for x in d):
                pts.append(p)
        frac[i, : n[i]] = pts
        z[i, : n[i]] = rng.choice([3, 8, 14, 26, 29], n[i])
    return Crystals(z, frac, lat, n)


def synthetic_records(crystals: Crystals) -> Records:
    """Records whose DOS is a Gaussian per element (a function of composition the models learn)."""
    e = bin_centres()
    m = len(crystals.num_atoms)
    dos = np.zeros((m, N_BINS), np.float32)
    for i in range(m):
        for zz in crystals.atomic_numbers[i, : crystals.num_atoms[i]]:
            dos[i] += np.exp(-0.5 * ((e - (zz % 7) + 3.0) / 0.8) ** 2) / crystals.num_atoms[i]
    props = measure(dos)
    return Records(
        *crystals,
        dos=dos,
        efermi=np.zeros(m, np.float32),
        scale=dos.max(1),
        band_gap=props["band_gap"],
        dos_at_fermi=props["dos_at_fermi"],
        integrated_dos=props["integrated_dos"],
        ids=np.array([f"syn-{i}" for i in range(m)]),
    )


@pytest.fixture(scope="session")
def tiny_model() -> DOSPredictorModel:
    return DOSPredictorModel(params=init_params(jax.random.key(1), TINY), config=TINY)


@pytest.fixture(scope="session")
def composition_model() -> DOSPredictorModel:
    config = CompositionConfig.tiny()
    return DOSPredictorModel(params=init_params(jax.random.key(2), config), config=config)
