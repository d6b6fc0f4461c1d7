"""The periodic graph builder == the dense builder it replaced, bit for bit.

`jaxdos.neighbors.build_graph` enumerates each crystal's own image box; the reference
(`experiments.reference.dense_graph`, the former library code) enumerates MatterGen's batch-wide
box for every crystal. The extra images never hold a neighbour and the candidates keep their
order, so the two graphs must agree in every field (indices, offsets, vectors, distances, masks,
triplets) exactly, k-NN ties at the cut included; symmetric world crystals have many.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from periodic_reference import candidates_needed, images_per_axis, pad_batch, random_crystal

from experiments.reference.dense_graph import build_graph_dense_jit, world_batch
from jaxdos.crystal.diffusion.corruption import DiffusionConfig, corrupt
from jaxdos.neighbors import (
    GraphConfig,
    PeriodicGraph,
    _d2_summed,
    _d2_written_out,
    build_graph_checked,
    build_graph_jit,
)

FIELDS = [f for f in PeriodicGraph._fields if f not in ("stats", "overflow")]
# The tiny preset's cut (20 neighbours) and MatterGen's (50), with room for every batch below.
TINY = GraphConfig(
    cutoff=7.0,
    max_neighbors=20,
    max_atoms_per_crystal=20,
    candidates_per_atom=8192,
    edges_per_atom=64,
    max_in_degree=64,
)
MATTERGEN = dataclasses.replace(TINY, max_neighbors=50, edges_per_atom=128, max_in_degree=128)


def _assert_same(new: PeriodicGraph, dense: PeriodicGraph):
    assert not bool(new.overflow) and not bool(dense.overflow)
    new, dense = jax.device_get((new, dense))
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(new, f), getattr(dense, f), err_msg=f)
    for f in ("half_edges_needed", "in_degree_needed", "atoms_needed"):
        assert int(getattr(new.stats, f)) == int(getattr(dense.stats, f)), f


def _lattices_and_counts(batch):
    real = np.asarray(batch.graph_mask)
    return list(np.asarray(batch.lattice, np.float64)[real]), np.asarray(batch.num_atoms)[real]


def _tied_cuts(batch, config: GraphConfig) -> int:
    """Centres whose k-th and (k+1)-th nearest candidates are equidistant (to 1e-6 A^2, float64,
    MatterGen's images): there the cut is decided by the tie-break."""
    lats, counts = _lattices_and_counts(batch)
    frac = np.mod(np.asarray(batch.frac_coords, np.float64), 1.0)
    first, ties = 0, 0
    for lat, n in zip(lats, counts, strict=True):
        r = images_per_axis(lat, config.cutoff, config.max_cell_images_per_dim)
        grid = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in r], indexing="ij"), -1)
        shifts = grid.reshape(-1, 3) @ lat
        cart = frac[first : first + n] @ lat
        first += n
        d2 = np.sum((cart[:, None, None] - cart[None, :, None] - shifts) ** 2, -1).reshape(n, -1)
        d2 = np.sort(np.where((d2 > 1e-4) & (d2 <= config.cutoff**2), d2, np.inf), axis=1)
        k = config.max_neighbors
        if d2.shape[1] > k:
            ties += int(np.sum(np.isfinite(d2[:, k]) & (d2[:, k] - d2[:, k - 1] < 1e-6)))
    return ties


@pytest.fixture(scope="module")
def clean():
    return world_batch(16, seed=0)


@pytest.mark.parametrize("t", [None, 0.1, 0.5, 0.9, 1.0, "uniform"])
def test_world_crystals_match_the_dense_builder(clean, t):
    batch = clean if t is None else world_batch(16, seed=0, t=t)
    new = build_graph_jit(batch, TINY)
    _assert_same(new, build_graph_dense_jit(batch, TINY, 5))
    lats, counts = _lattices_and_counts(batch)
    need = candidates_needed(lats, counts, TINY.cutoff, 5)
    assert int(new.stats.candidates_needed) == need
    assert 2 * int(new.stats.half_edges_needed) > 16 * 20  # ~k edges per atom: a real graph
    if t is None:
        assert _tied_cuts(batch, TINY) >= 5  # 10 of the 130 centres: the tie-break decides


@pytest.mark.slow
@pytest.mark.parametrize("t", [None, "uniform"])
def test_world_crystals_match_at_mattergen_cut(clean, t):
    batch = clean if t is None else world_batch(16, seed=1, t=t)
    _assert_same(build_graph_jit(batch, MATTERGEN), build_graph_dense_jit(batch, MATTERGEN, 5))


def _thin_and_skewed_batch():
    rng = np.random.default_rng(7)
    crystals = [
        (rng.uniform(0, 1, (2, 3)), np.diag([1.1, 5.0, 5.5])),  # slab: 7 images needed, cap 5
        (rng.uniform(0, 1, (1, 3)), np.diag([1.2, 1.3, 9.0])),  # needle: capped in two axes
        # Sheared: a_1 almost along a_0, so the planes of a_2 and a_0 are 0.9 A apart.
        (rng.uniform(0, 1, (3, 3)), np.array([[6.0, 0.0, 0.0], [5.7, 0.9, 0.0], [0.7, 0.7, 4.5]])),
        random_crystal(rng, 12, scale=6.0, skew=0.3),
        random_crystal(rng, 3, scale=4.0, skew=0.4),
    ]
    fr, la = [c[0] for c in crystals], [c[1] for c in crystals]
    return pad_batch(fr, la, [np.full(len(f), 6, np.int32) for f in fr], 32, 6), la


@pytest.mark.parametrize("t", [None, 0.5, 1.0])
def test_thin_and_skewed_cells_at_the_cap(t):
    batch, lats = _thin_and_skewed_batch()
    uncapped = [images_per_axis(lat, 7.0, 100) for lat in lats]
    assert max(max(r) for r in uncapped) > 5  # MatterGen's cap binds
    if t is not None:
        times = jnp.full((batch.num_graphs,), t)
        batch = corrupt(jax.random.key(3), batch, times, DiffusionConfig()).batch
    # Small cells: up to ~200 neighbours within the cutoff, so room for them with no cut.
    wide = dataclasses.replace(TINY, edges_per_atom=128, max_in_degree=256)
    for config in (wide, dataclasses.replace(wide, max_neighbors=100_000)):  # cut / no cut
        new = build_graph_jit(batch, config)
        _assert_same(new, build_graph_dense_jit(batch, config, 5))
        lats_t, counts = _lattices_and_counts(batch)
        assert int(new.stats.candidates_needed) == candidates_needed(lats_t, counts, 7.0, 5)


def test_candidate_overflow_is_detected_and_retried(clean):
    small = dataclasses.replace(TINY, candidates_per_atom=256)
    g = build_graph_jit(clean, small)
    lats, counts = _lattices_and_counts(clean)
    need = candidates_needed(lats, counts, 7.0, 5)
    assert bool(g.overflow) and int(g.stats.candidates_needed) == need > 256
    graph, used = build_graph_checked(clean, small)
    # The truncated first try also overflows the in-degree (the few candidates left pile their
    # reverses onto the first atoms), so that budget grows too.
    assert used.candidates_per_atom == 1 << (need - 1).bit_length()
    _assert_same(graph, build_graph_dense_jit(clean, used, 5))


def test_squared_distance_forms_round_alike():
    # The CPU branch of `_squared_distances` must round exactly as the dense builder's sum.
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    cart = jax.random.normal(k1, (96, 3)) * 6.0
    nbr = jax.random.normal(k2, (5, 700, 3)) * 9.0
    gc = jax.random.randint(k3, (96,), 0, 5)
    a = jax.jit(_d2_summed)(cart, nbr, gc)
    b = jax.jit(_d2_written_out)(cart, nbr, gc)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
