"""Periodic graph vs a brute-force numpy neighbour search; overflow detection and retry."""

import dataclasses

import jax
import numpy as np
import pytest
from periodic_reference import brute_force_edges, candidates_needed, pad_batch, random_crystal

from jaxdos.crystal.graph import GraphConfig, build_graph_checked, build_graph_jit, grow_budgets
from jaxdos.neighbors import GraphStats, blind_growth


def _edges_of(graph, batch):
    g = jax.device_get(graph)
    nat = np.asarray(batch.num_atoms)
    first = np.concatenate([[0], np.cumsum(nat)[:-1]])
    out = []
    dists = {}
    for e in np.flatnonzero(g.edge_mask):
        gr = int(g.edge_graph[e])
        key = (gr, int(g.idx_s[e]) - first[gr], int(g.idx_t[e]) - first[gr]) + tuple(
            int(x) for x in g.cell_offsets[e]
        )
        out.append(key)
        dists[key] = float(g.dist[e])
    return sorted(out), dists


def _check(crystals, cfg, num_nodes, num_graphs):
    fr = [c[0] for c in crystals]
    la = [c[1] for c in crystals]
    batch = pad_batch(fr, la, [np.ones(len(f), np.int32) for f in fr], num_nodes, num_graphs)
    graph, used = build_graph_checked(batch, cfg)
    assert not bool(graph.overflow)
    ref, ref_d, gaps = brute_force_edges(
        [
            np.asarray(batch.frac_coords)[sum(len(f) for f in fr[:i]) :][: len(fr[i])]
            for i in range(len(fr))
        ],
        la,
        cfg.cutoff,
        cfg.max_neighbors,
        cfg.max_cell_images_per_dim,
    )
    got, got_d = _edges_of(graph, batch)
    return ref, ref_d, got, got_d, graph, batch, gaps, used


def _assert_geometry(graph, batch):
    g = jax.device_get(graph)
    cart = np.asarray(batch.cartesian(), np.float64)
    lat = np.asarray(batch.lattice, np.float64)
    m = g.edge_mask
    src = cart[g.idx_s[m]] + np.einsum("ei,eij->ej", g.cell_offsets[m], lat[g.edge_graph[m]])
    vec = cart[g.idx_t[m]] - src
    np.testing.assert_allclose(g.dist[m], np.linalg.norm(vec, axis=-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.vec[m], vec / np.linalg.norm(vec, axis=-1)[:, None], atol=1e-5)
    # id_swap pairs each edge with its reverse.
    sw = g.id_swap[m]
    np.testing.assert_array_equal(g.idx_s[sw], g.idx_t[m])
    np.testing.assert_array_equal(g.cell_offsets[sw], -g.cell_offsets[m])
    # Triplets: every other incoming edge of the target, exactly once.
    for e in np.flatnonzero(m)[:50]:
        want = sorted(set(np.flatnonzero(m & (g.idx_t == g.idx_t[e]))) - {e})
        got = sorted(g.trip_ba[e][g.trip_mask[e]])
        assert got == want


# One shape/config for the no-truncation cases so they share a compile.
FULL = GraphConfig(
    cutoff=3.0,
    max_neighbors=10_000,
    max_cell_images_per_dim=5,
    max_atoms_per_crystal=5,
    candidates_per_atom=1024,
    edges_per_atom=128,
    max_in_degree=256,
)
TINY_LAT = np.array([[1.2, 0.0, 0.0], [0.5, 1.3, 0.0], [0.2, 0.3, 1.1]])


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_without_truncation(seed):
    rng = np.random.default_rng(seed)
    crystals = [
        random_crystal(rng, n, scale=s, skew=k) for n, s, k in [(3, 3.0, 0.4), (5, 3.5, 0.1)]
    ]
    crystals.append((rng.uniform(0, 1, (2, 3)), TINY_LAT))  # tiny cell: needs >= 3 images per axis
    ref, ref_d, got, got_d, graph, batch, _, used = _check(crystals, FULL, 12, 4)
    # The tiny cell needs 7 images per axis: 2 atoms x 7^3 candidates per centre.
    need = candidates_needed([c[1] for c in crystals], [3, 5, 2], FULL.cutoff, 5)
    assert need == 2 * 7**3
    assert used == FULL and int(graph.stats.candidates_needed) == need
    assert got == ref
    for k in ref:
        assert abs(got_d[k] - ref_d[k]) < 1e-4
    _assert_geometry(graph, batch)


def test_image_cap_binds_like_mattergen():
    # With MatterGen's cap at 1 only |n| <= 1 images exist, in both implementations.
    rng = np.random.default_rng(5)
    crystals = [(rng.uniform(0, 1, (2, 3)), TINY_LAT)]
    cfg = dataclasses.replace(FULL, max_cell_images_per_dim=1)
    ref, _, got, _, graph, batch, _, _ = _check(crystals, cfg, 12, 4)
    ref_full, *_ = brute_force_edges([crystals[0][0] % 1.0], [TINY_LAT], 3.0, 10_000, 5)
    assert got == ref and len(ref) < len(ref_full)
    assert int(graph.stats.candidates_needed) == 2 * 3**3  # the cap's box, not the 7^3 needed


def test_knn_truncation_matches_brute_force():
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        crystals = [random_crystal(rng, 4, scale=3.5, skew=0.2), random_crystal(rng, 3, scale=3.0)]
        cfg = dataclasses.replace(
            FULL,
            cutoff=5.0,
            max_neighbors=12,
            max_cell_images_per_dim=2,
            candidates_per_atom=512,
            edges_per_atom=32,
            max_in_degree=64,
        )
        ref, ref_d, got, got_d, graph, batch, gaps, _ = _check(crystals, cfg, 12, 4)
        if min(gaps) < 1e-3:  # a distance tie at the cut: the order is a convention, skip
            continue
        assert got == ref
        _assert_geometry(graph, batch)
        return
    pytest.fail("no tie-free sample found")


def test_overflow_detected_and_padding_inert():
    rng = np.random.default_rng(3)
    f, lat = random_crystal(rng, 4, scale=3.0)
    batch = pad_batch([f], [lat], [np.ones(4, np.int32)], 6, 2)
    # Every budget too small, the per-crystal atom budget included (4 atoms > 3).
    small = GraphConfig(
        cutoff=4.0,
        max_neighbors=50,
        max_atoms_per_crystal=3,
        candidates_per_atom=256,  # 500 needed
        edges_per_atom=2,
        max_in_degree=2,
    )
    g = build_graph_jit(batch, small)
    assert bool(g.overflow)
    need = candidates_needed([lat], [4], 4.0, 5)
    assert int(g.stats.atoms_needed) == 4 and int(g.stats.candidates_needed) == need > 256
    assert int(g.stats.half_edges_needed) > 6 * 2 // 2 and int(g.stats.in_degree_needed) > 2
    with pytest.raises(RuntimeError, match="overflows"):
        build_graph_checked(batch, small, max_tries=0)
    graph, used = build_graph_checked(batch, small)
    assert not bool(graph.overflow)
    assert used.max_atoms_per_crystal == 4
    assert used.candidates_per_atom == 1 << (need - 1).bit_length()  # the next power of two
    assert used.edges_per_atom > 2 and used.max_in_degree > 2
    ref, *_ = brute_force_edges([np.asarray(batch.frac_coords)[:4]], [lat], 4.0, 50, 5)
    assert _edges_of(graph, batch)[0] == ref
    gg = jax.device_get(graph)
    assert np.all(gg.idx_s[gg.edge_mask] < 4) and np.all(gg.idx_t[gg.edge_mask] < 4)
    assert np.all(gg.dist[~gg.edge_mask] == 4.0)
    assert not np.any(gg.trip_mask[~gg.edge_mask])
    assert int(gg.num_edges[0]) == int(gg.edge_mask.sum()) and int(gg.num_edges[1]) == 0


def test_saturated_growth_covers_any_cell_of_the_atom_budget():
    """A sampler's re-run is another trajectory: its candidate budget goes to the bound, which
    the most degenerate cell (every direction at the image cap) needs and no cell exceeds."""
    cfg = GraphConfig(cutoff=4.0, max_atoms_per_crystal=4, candidates_per_atom=256)
    stats = GraphStats(np.int32(300), np.int32(8), np.int32(3), np.int32(6))  # 6 atoms > 4
    exact = grow_budgets(cfg, stats, 8)
    assert exact.candidates_per_atom == 512 and exact.max_atoms_per_crystal == 6
    saturated = grow_budgets(cfg, stats, 8, saturate_candidates=True)
    assert saturated.max_atoms_per_crystal == 6
    tiny_cell = candidates_needed([np.eye(3) * 0.1], [6], 4.0, 5)
    assert saturated.candidate_bound == 6 * 11**3 == tiny_cell
    assert saturated.candidates_per_atom == 8192  # the power of two above 7986
    fits = GraphStats(np.int32(200), np.int32(8), np.int32(3), np.int32(4))
    assert grow_budgets(cfg, fits, 8, saturate_candidates=True) == cfg  # nothing overflowed
    blind = blind_growth(cfg)  # no stats: candidates to the bound, edges and in-degree doubled
    assert blind.candidates_per_atom == 8192 >= cfg.candidate_bound
    assert (blind.edges_per_atom, blind.max_in_degree) == (128, 128)
    assert blind.max_atoms_per_crystal == cfg.max_atoms_per_crystal


def test_graph_json_of_older_versions_loads():
    # Model directories and checkpoints written before `candidates_per_atom` carry `image_budget`
    # (the dense builder's images per direction): it is dropped, the new budget takes its default.
    from jaxdos import modeldir

    old = {"cutoff": 7.0, "max_neighbors": 20, "max_atoms_per_crystal": 20, "image_budget": 5,
           "edges_per_atom": 32, "max_in_degree": 32}  # fmt: skip
    got = modeldir.config_from_json(GraphConfig, old)
    assert got == GraphConfig(cutoff=7.0, max_neighbors=20, edges_per_atom=32, max_in_degree=32)
    assert got.candidates_per_atom == GraphConfig().candidates_per_atom
    with pytest.raises(ValueError, match="unknown field"):
        modeldir.config_from_json(GraphConfig, {**old, "images": 3})
