"""The equivariant predictor's symmetries: rotations, permutations, integer translations and the
choice of periodic image / cell basis, padding, jit == eager, non-negativity."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from jaxdos.predictor import DOSPredictorModel, predict_dos
from jaxdos.predictor.model import forward
from jaxdos.predictor.predict import forward_jit
from jaxdos.structures import Crystals, pack
from tests.predictor.conftest import random_crystals

TOL = dict(rtol=2e-4, atol=2e-5)


@pytest.fixture(scope="module")
def crystals():
    return random_crystals(0, m=3, a=4)


@pytest.fixture(scope="module")
def reference(crystals, tiny_model):
    return predict_dos(crystals, tiny_model, batch_size=4)


def test_shape_and_nonnegative(reference):
    assert reference.shape == (3, 256) and reference.dtype == np.float32
    assert np.all(reference >= 0) and np.all(np.isfinite(reference))
    assert np.std(reference, axis=0).max() > 0  # crystals differ


def test_rotation_invariant(crystals, reference, tiny_model):
    r = Rotation.random(random_state=3).as_matrix().astype(np.float32)
    rotated = crystals._replace(lattice=crystals.lattice @ r.T)  # cart' = cart @ R^T
    np.testing.assert_allclose(predict_dos(rotated, tiny_model, batch_size=4), reference, **TOL)


def test_permutation_invariant(crystals, reference, tiny_model):
    z, frac = crystals.atomic_numbers.copy(), crystals.frac_coords.copy()
    for i, n in enumerate(crystals.num_atoms):
        p = np.random.default_rng(i).permutation(n)
        z[i, :n], frac[i, :n] = z[i, p], frac[i, p]
    permuted = crystals._replace(atomic_numbers=z, frac_coords=frac)
    np.testing.assert_allclose(predict_dos(permuted, tiny_model, batch_size=4), reference, **TOL)
    # and the crystals' order only reorders the rows
    order = np.array([2, 0, 1])
    np.testing.assert_allclose(
        predict_dos(crystals.take(order), tiny_model, batch_size=4), reference[order], **TOL
    )


def test_integer_translations_and_periodic_images(crystals, reference, tiny_model):
    shift = np.random.default_rng(5).integers(-2, 3, crystals.frac_coords.shape)
    moved = crystals._replace(frac_coords=(crystals.frac_coords + shift).astype(np.float32))
    np.testing.assert_allclose(predict_dos(moved, tiny_model, batch_size=4), reference, **TOL)
    # a rigid translation of the whole cell's content
    slid = crystals._replace(frac_coords=np.mod(crystals.frac_coords + 0.37, 1.0))
    np.testing.assert_allclose(predict_dos(slid, tiny_model, batch_size=4), reference, **TOL)


def test_other_cell_basis(crystals, reference, tiny_model):
    """The same lattice in another basis (L' = U L, det U = 1) is the same crystal."""
    u = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    lat = np.einsum("ij,mjk->mik", u, crystals.lattice)
    frac = np.mod(crystals.frac_coords @ np.linalg.inv(u), 1.0).astype(np.float32)
    other = crystals._replace(lattice=lat.astype(np.float32), frac_coords=frac)
    np.testing.assert_allclose(predict_dos(other, tiny_model, batch_size=4), reference, **TOL)


def test_padding_contributes_nothing(crystals, reference, tiny_model):
    # More padding atoms per crystal (A 4 -> 6), more padding graphs and atom slots per call
    # (B 4 -> 5) and a larger edge budget (more padded edges): the same DOS, in one compile.
    a = 6
    wide = Crystals(
        np.pad(crystals.atomic_numbers, ((0, 0), (0, a - 4))),
        np.pad(crystals.frac_coords, ((0, 0), (0, a - 4), (0, 0))),
        crystals.lattice,
        crystals.num_atoms,
    )
    cfg = tiny_model.config
    roomy = dataclasses.replace(cfg, graph=dataclasses.replace(cfg.graph, edges_per_atom=48))
    bigger = DOSPredictorModel(params=tiny_model.params, config=roomy)
    np.testing.assert_allclose(predict_dos(wide, bigger, batch_size=5), reference, **TOL)


def test_overflow_regrows_budgets(crystals, reference, tiny_model):
    cfg = tiny_model.config
    tight = dataclasses.replace(cfg, graph=dataclasses.replace(cfg.graph, edges_per_atom=2))
    small = DOSPredictorModel(params=tiny_model.params, config=tight)
    np.testing.assert_allclose(predict_dos(crystals, small, batch_size=4), reference, **TOL)


@pytest.mark.slow  # eager e3nn dispatches op by op: about a minute on 2 busy cores
def test_jit_equals_eager(crystals, tiny_model):
    batch = jax.tree.map(jnp.asarray, pack(crystals, num_nodes=16, num_graphs=5))
    jitted = forward_jit(tiny_model.config, tiny_model.params, batch)[0]  # predict_dos's shape
    with jax.disable_jit():
        eager = forward(tiny_model.config, tiny_model.params, batch)[0]
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(jitted)[3:] == 0)  # the padding graph slots
