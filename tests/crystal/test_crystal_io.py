"""Structures of a padded batch: the lattice metric kept, bad element and lattice errors."""

import numpy as np
import pytest

from jaxdos.crystal.diffusion.num_atoms import prior_batch
from jaxdos.crystal.io import lattice_params, to_structures


def _batch():
    b = prior_batch(np.array([2, 1]))
    z = np.zeros(b.num_nodes, np.int32)
    z[:3] = [11, 17, 26]
    frac = np.zeros((b.num_nodes, 3), np.float32)
    frac[:3] = [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.5, 0.75]]
    lat = np.stack([np.diag([5.64, 5.64, 5.64]), [[2.8, 0.1, 0], [0.1, 2.9, 0], [0, 0, 3.0]]])
    return b._replace(atomic_numbers=z, frac_coords=frac, lattice=lat.astype(np.float32))


def test_lattice_params_and_structures_keep_the_metric():
    b = _batch()
    lengths, angles = lattice_params(b.lattice)
    np.testing.assert_allclose(lengths[0], 5.64, rtol=1e-6)
    np.testing.assert_allclose(angles[0], 90.0)
    structs = to_structures(b)
    assert [s.composition.reduced_formula for s in structs] == ["NaCl", "Fe"]
    for s, lat in zip(structs, b.lattice, strict=True):
        g = lat.astype(np.float64) @ lat.T.astype(np.float64)
        np.testing.assert_allclose(s.lattice.matrix @ s.lattice.matrix.T, g, rtol=1e-5, atol=1e-5)
    d = structs[0].get_distance(0, 1)
    np.testing.assert_allclose(d, np.sqrt(3) * 5.64 / 2, rtol=1e-5)


def test_unknown_element_raises():
    b = _batch()
    z = b.atomic_numbers.copy()
    z[0] = 101
    with pytest.raises(ValueError, match="atomic_numbers"):
        to_structures(b._replace(atomic_numbers=z))
    with pytest.raises(ValueError, match="lattice"):
        to_structures(b._replace(lattice=np.zeros_like(b.lattice)))
