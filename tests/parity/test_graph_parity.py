"""JAX periodic graph (`jaxdos.crystal.graph`) == MatterGen's on tie-free random crystals."""

import numpy as np
import pytest
from parity_helpers import require_mattergen

require_mattergen()
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from mg_reference import TINY, build_gemnet, random_crystals, tie_free  # noqa: E402

from jaxdos.structures import CrystalBatch  # noqa: E402

graph_mod = pytest.importorskip("jaxdos.crystal.graph")


def _crystal_batch(cells, fracs, num_atoms, pad_atoms=3, pad_graphs=1):
    n, g = len(fracs), len(num_atoms)
    batch = np.repeat(np.arange(g), num_atoms)
    return CrystalBatch(
        atomic_numbers=jnp.asarray(np.r_[np.full(n, 6), np.zeros(pad_atoms)].astype(np.int32)),
        frac_coords=jnp.asarray(np.r_[fracs, np.zeros((pad_atoms, 3))].astype(np.float32)),
        lattice=jnp.asarray(
            np.r_[cells, np.tile(np.eye(3), (pad_graphs, 1, 1))].astype(np.float32)
        ),
        num_atoms=jnp.asarray(np.r_[num_atoms, np.zeros(pad_graphs)].astype(np.int32)),
        batch=jnp.asarray(np.r_[batch, np.full(pad_atoms, g)].astype(np.int32)),
        node_mask=jnp.asarray(np.r_[np.ones(n), np.zeros(pad_atoms)].astype(bool)),
        graph_mask=jnp.asarray(np.r_[np.ones(g), np.zeros(pad_graphs)].astype(bool)),
    )


def _tie_free_batch(seed, num_atoms, density):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        cells, fracs = random_crystals(rng, num_atoms, density)
        if tie_free(cells, fracs, num_atoms):
            return cells, fracs
    pytest.fail("no tie-free random batch found")


def test_graph_matches_mattergen(gemnet_scale_file):
    # Sparse, medium and dense crystals in one batch; the dense one hits the 50-neighbour cut.
    num_atoms, density = [2, 5, 4], [0.01, 0.08, 0.03]
    cells, fracs = _tie_free_batch(0, num_atoms, density)
    model = build_gemnet(TINY, seed=0)
    nat = torch.tensor(num_atoms)
    cart = torch.einsum(
        "ni,nij->nj", torch.tensor(fracs), torch.tensor(cells).repeat_interleave(nat, 0)
    )
    with torch.no_grad():
        out = model.generate_interaction_graph(cart, torch.tensor(cells), nat, None, None, None)
    edge_index, neighbors, dist, vec, _, id3_ba, id3_ca, _, offsets = out
    ref = {
        (int(s), int(t), *map(int, o)): (float(d), v.numpy())
        for s, t, o, d, v in zip(edge_index[0], edge_index[1], offsets, dist, vec, strict=True)
    }
    assert len(ref) == edge_index.shape[1], "duplicate edges in MatterGen's graph"

    # Budgets large enough for one compile (build_graph_checked would regrow them otherwise).
    config = graph_mod.GraphConfig(
        max_atoms_per_crystal=8, candidates_per_atom=8192, edges_per_atom=128, max_in_degree=128
    )
    graph, _ = graph_mod.build_graph_checked(_crystal_batch(cells, fracs, num_atoms), config)
    assert int(graph.stats.in_degree_needed) > 50  # the max-neighbour cut was exercised
    m = np.asarray(graph.edge_mask)
    got = {
        (int(s), int(t), *map(int, o)): (float(d), np.asarray(v))
        for s, t, o, d, v in zip(
            np.asarray(graph.idx_s)[m],
            np.asarray(graph.idx_t)[m],
            np.asarray(graph.cell_offsets)[m],
            np.asarray(graph.dist)[m],
            np.asarray(graph.vec)[m],
            strict=True,
        )
    }
    assert set(got) == set(ref)
    for k, (d, v) in ref.items():
        np.testing.assert_allclose(got[k][0], d, rtol=1e-5, err_msg=str(k))
        np.testing.assert_allclose(got[k][1], v, atol=1e-5, err_msg=str(k))
    np.testing.assert_array_equal(np.asarray(graph.num_edges)[: len(num_atoms)], neighbors.numpy())

    # Triplets: for every edge c->a, the multiset of edges b->a it meets (by edge identity).
    ref_keys = list(ref)
    ref_trip = {k: [] for k in ref_keys}
    for ba, ca in zip(id3_ba.tolist(), id3_ca.tolist(), strict=True):
        ref_trip[ref_keys[ca]].append(ref_keys[ba])
    keys = [
        (int(s), int(t), *map(int, o))
        for s, t, o in zip(
            np.asarray(graph.idx_s),
            np.asarray(graph.idx_t),
            np.asarray(graph.cell_offsets),
            strict=True,
        )
    ]
    trip_ba, trip_mask = np.asarray(graph.trip_ba), np.asarray(graph.trip_mask)
    for e in np.flatnonzero(m):
        got_trip = sorted(keys[b] for b in trip_ba[e][trip_mask[e]])
        assert got_trip == sorted(ref_trip[keys[e]]), keys[e]
