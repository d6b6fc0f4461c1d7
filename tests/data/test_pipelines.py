"""grain pipelines: determinism, exact resume, masks, budgets, token round trip, field contract."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from jaxdos.crystal.graph import GraphConfig, build_graph_checked
from jaxdos.data.budgets import (
    CrystalBudgets,
    budgets_from_records,
    neighbour_counts,
    neighbour_stats,
)
from jaxdos.data.pipelines import (
    CrystalGraphBatch,
    DosBatch,
    crystal_batches,
    dos_batches,
    encode_records,
    pack_greedy,
)
from jaxdos.data.records import Records
from jaxdos.kernels.tokenizer import N_LEVELS, decode, encode
from jaxdos.structures import CrystalBatch

CUTOFF = 4.0


def _equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for f, g in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
            np.testing.assert_array_equal(f, g)


def _resume_check(make_ds, stop):
    """Batches after a JSON-checkpointed state equal the uninterrupted run's."""
    full = list(make_ds())
    it = iter(make_ds())
    for _ in range(stop):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint would store
    fresh = iter(make_ds())
    fresh.set_state(state)
    _equal(list(fresh), full[stop:])
    _equal(list(it), full[stop:])


# ----------------------------------------------------------------------------- DOS token batches


def test_dos_batches_shapes_masks_and_epoch_coverage(records):
    m, b = len(records), 16
    batches = list(dos_batches(records, batch_size=b, seed=5, num_epochs=2))
    steps = -(-m // b)
    assert len(batches) == 2 * steps
    for x in batches:
        assert x.tokens.shape == (b, 256) and x.tokens.dtype == np.int32
        assert x.scale.shape == (b,) and x.properties.shape == (b, 3) and x.valid.dtype == bool
        np.testing.assert_array_equal(x.index < 0, ~x.valid)
        assert np.all(x.scale[~x.valid] == 1.0) and np.all(x.properties[~x.valid] == 0)
    for epoch in range(2):
        part = batches[epoch * steps : (epoch + 1) * steps]
        idx = np.concatenate([x.index[x.valid] for x in part])
        np.testing.assert_array_equal(np.sort(idx), np.arange(m))  # every record exactly once
        assert part[-1].valid.sum() == m - (steps - 1) * b  # only the tail batch is padded
    first = np.concatenate([x.index for x in batches[:steps]])
    second = np.concatenate([x.index for x in batches[steps:]])
    assert not np.array_equal(first, second)  # reshuffled per epoch


def test_dos_tokens_round_trip_and_properties(records):
    batches = list(dos_batches(records, batch_size=32, seed=0))
    idx = np.concatenate([x.index[x.valid] for x in batches])
    tokens = np.concatenate([x.tokens[x.valid] for x in batches])
    props = np.concatenate([x.properties[x.valid] for x in batches])
    k = records.scale[idx]
    back = np.asarray(jax.jit(decode)(jnp.asarray(tokens), jnp.asarray(k)))
    half_level = 0.5 * k[:, None] / (N_LEVELS - 1)
    assert np.all(np.abs(back - records.dos[idx]) <= half_level * (1 + 1e-4) + 1e-7)
    expected = np.asarray(jax.jit(encode)(jnp.asarray(records.dos), jnp.asarray(records.scale)))
    expected = expected[idx]
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_array_equal(props[:, 0], records.band_gap[idx])
    np.testing.assert_array_equal(props[:, 1], records.dos_at_fermi[idx])
    np.testing.assert_array_equal(props[:, 2], records.integrated_dos[idx])


def test_encode_records_chunks_match_one_call(rng):
    dos = (rng.random((1500, 256)) * (rng.random((1500, 256)) > 0.3)).astype(np.float32)
    k = dos.max(-1) * rng.uniform(1.0, 1.5, size=1500).astype(np.float32)  # K >= max is allowed
    expected = np.asarray(jax.jit(encode)(jnp.asarray(dos), jnp.asarray(k)))
    np.testing.assert_array_equal(encode_records(dos, k), expected)


def test_dos_batches_deterministic_under_seed(records):
    a = list(dos_batches(records, batch_size=16, seed=7, num_epochs=2))
    b = list(dos_batches(records, batch_size=16, seed=7, num_epochs=2))
    _equal(a, b)
    c = list(dos_batches(records, batch_size=16, seed=8, num_epochs=2))
    assert not np.array_equal(a[0].index, c[0].index)
    plain = list(dos_batches(records, batch_size=16, shuffle=False))
    np.testing.assert_array_equal(plain[0].index, np.arange(16))


@pytest.mark.parametrize("stop", [3, 7, 9])  # mid-epoch, at the epoch's tail, in epoch 2
def test_dos_batches_resume_exactly(records, stop):
    _resume_check(lambda: dos_batches(records, batch_size=13, seed=2, num_epochs=2), stop)


def test_dos_batches_endless_stream(records):
    it = iter(dos_batches(records, batch_size=50, seed=0, num_epochs=None))
    seen = [next(it) for _ in range(7)]  # 2 batches per epoch: crosses three epoch boundaries
    assert all(x.tokens.shape == (50, 256) for x in seen)


def test_dos_batches_shards_partition_the_global_batch(records):
    whole = list(dos_batches(records, batch_size=16, seed=1))
    shards = [
        list(dos_batches(records, batch_size=16, seed=1, shard_index=p, shard_count=4))
        for p in range(4)
    ]
    for step, x in enumerate(whole):
        parts = [s[step] for s in shards]
        assert all(part.tokens.shape == (4, 256) for part in parts)
        for field in DosBatch._fields:
            np.testing.assert_array_equal(
                np.concatenate([getattr(part, field) for part in parts]), getattr(x, field)
            )


def test_dos_batches_reject_bad_arguments(records):
    with pytest.raises(ValueError, match="batch_size"):
        dos_batches(records, batch_size=0)
    with pytest.raises(ValueError, match="num_epochs"):
        dos_batches(records, batch_size=4, num_epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        dos_batches(records, batch_size=6, shard_count=4)
    with pytest.raises(ValueError, match="shard_index"):
        dos_batches(records, batch_size=8, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="records.scale"):
        dos_batches(records._replace(scale=np.zeros_like(records.scale)), batch_size=4)


# ----------------------------------------------------------------------------- crystal batches


@pytest.fixture(scope="module")
def budgets(records):
    return budgets_from_records(records, batch_size=6, cutoff=CUTOFF, quantile=0.9)


def test_crystal_batches_respect_budgets_and_reconstruct_records(records, budgets):
    edges = neighbour_counts(records, CUTOFF)
    n, g = budgets.atoms, budgets.graphs
    batches = list(crystal_batches(records, budgets, seed=1, edge_counts=edges))
    seen = []
    for full in batches:
        assert isinstance(full, CrystalGraphBatch) and isinstance(full.crystal, CrystalBatch)
        x = full.crystal
        assert x.atomic_numbers.shape == (n,) and x.atomic_numbers.dtype == np.int32
        assert x.frac_coords.shape == (n, 3) and x.frac_coords.dtype == np.float32
        assert x.lattice.shape == (g, 3, 3) and x.lattice.dtype == np.float32
        assert x.num_atoms.dtype == np.int32 and x.batch.dtype == np.int32
        assert x.node_mask.dtype == bool and x.graph_mask.dtype == bool
        assert full.dos.shape == (g, 256)
        real = full.index[x.graph_mask]
        assert x.node_mask.sum() <= n and x.graph_mask.sum() <= g - 1 and not x.graph_mask[-1]
        assert edges[real].sum() <= budgets.edges
        assert x.node_mask.sum() == x.num_atoms.sum() == records.num_atoms[real].sum()
        assert np.all(x.batch[~x.node_mask] == g - 1) and np.all(
            x.atomic_numbers[~x.node_mask] == 0
        )
        np.testing.assert_array_equal(
            x.lattice[~x.graph_mask], np.broadcast_to(np.eye(3), (g - len(real), 3, 3))
        )
        for slot, r in enumerate(real):
            atoms = x.batch == slot
            k = records.num_atoms[r]
            np.testing.assert_array_equal(x.atomic_numbers[atoms], records.atomic_numbers[r, :k])
            np.testing.assert_array_equal(x.frac_coords[atoms], records.frac_coords[r, :k])
            np.testing.assert_array_equal(x.lattice[slot], records.lattice[r])
            np.testing.assert_array_equal(full.dos[slot], records.dos[r])
        seen.append(real)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(len(records)))
    # Budgets from a high quantile: most batches carry the full B = G - 1 crystals.
    assert np.mean([x.crystal.graph_mask.sum() == g - 1 for x in batches]) > 0.5


def test_crystal_batch_feeds_crystal_batch_contract(records, budgets):
    x = next(iter(crystal_batches(records, budgets, seed=0))).crystal
    cb = jax.tree.map(jnp.asarray, x)
    cart = np.asarray(cb.cartesian())
    ref = np.einsum("ni,nij->nj", x.frac_coords, x.lattice[x.batch])
    np.testing.assert_allclose(cart[x.node_mask], ref[x.node_mask], rtol=1e-5, atol=1e-5)


def test_crystal_batches_deterministic_and_resumable(records, budgets):
    make = lambda seed: crystal_batches(records, budgets, seed=seed, num_epochs=2)
    a, b = list(make(4)), list(make(4))
    _equal(a, b)
    assert not np.array_equal(a[0].index, list(make(5))[0].index)
    per_epoch = len(list(crystal_batches(records, budgets, seed=4, num_epochs=1)))
    for stop in (2, per_epoch, per_epoch + 3):  # mid-epoch, exactly at the boundary, epoch 2
        _resume_check(lambda: make(4), stop)


def test_crystal_batches_shards_cover_the_epoch_in_lockstep(records, budgets):
    whole = list(crystal_batches(records, budgets, seed=2))
    shards = [
        list(crystal_batches(records, budgets, seed=2, shard_index=p, shard_count=3))
        for p in range(3)
    ]
    assert len({len(s) for s in shards}) == 1  # every process steps the same number of times
    assert len(shards[0]) == -(-len(whole) // 3)
    for step, x in enumerate(whole):  # batch i goes to process i % P, unchanged
        _equal([shards[step % 3][step // 3]], [x])
    tail = len(whole) % 3
    for p in range(tail, 3 if tail else 0):  # shards past the last real batch get a padding one
        last = shards[p][-1].crystal
        assert not last.graph_mask.any() and not last.node_mask.any()


def test_pack_greedy_never_overflows_and_keeps_order(rng):
    num_atoms = rng.integers(1, 21, size=300)
    edges = rng.integers(0, 400, size=300)
    bud = CrystalBudgets(atoms=64, graphs=7, edges=1200, cutoff=5.0)
    order = rng.permutation(300)
    packs = pack_greedy(order, num_atoms, edges, bud)
    np.testing.assert_array_equal(np.concatenate(packs), order)
    for p in packs:
        assert num_atoms[p].sum() <= 64 and edges[p].sum() <= 1200 and 1 <= len(p) <= 6
    for p, q in zip(packs[:-1], packs[1:], strict=True):  # next-fit: the next crystal did not fit
        nxt = q[0]
        assert (
            num_atoms[p].sum() + num_atoms[nxt] > 64
            or len(p) == 6
            or edges[p].sum() + edges[nxt] > 1200
        )


def test_overflowing_crystal_is_an_error(records):
    tight = CrystalBudgets(atoms=20, graphs=3, edges=1, cutoff=CUTOFF)
    with pytest.raises(ValueError, match="alone needs"):
        crystal_batches(records, tight)


def test_budget_validation():
    with pytest.raises(ValueError, match="atoms"):
        CrystalBudgets(atoms=8, graphs=4)
    with pytest.raises(ValueError, match="graphs"):
        CrystalBudgets(atoms=32, graphs=1)
    with pytest.raises(ValueError, match="cutoff"):
        CrystalBudgets(atoms=32, graphs=4, edges=100)


def test_iterator_state_through_orbax_checkpoint(tmp_path, records, budgets):
    import grain
    import orbax.checkpoint as ocp

    pipelines = {
        "dos": lambda: dos_batches(records, batch_size=16, seed=3, num_epochs=2),
        "crystal": lambda: crystal_batches(records, budgets, seed=3, num_epochs=2),
    }
    mngr = ocp.CheckpointManager(tmp_path / "ckpt")
    its = {name: iter(make()) for name, make in pipelines.items()}
    for it in its.values():
        for _ in range(5):
            next(it)
    save = {name: grain.checkpoint.CheckpointSave(it) for name, it in its.items()}
    mngr.save(5, args=ocp.args.Composite(**save))
    mngr.wait_until_finished()
    fresh = {name: iter(make()) for name, make in pipelines.items()}
    restore = {name: grain.checkpoint.CheckpointRestore(it) for name, it in fresh.items()}
    mngr.restore(5, args=ocp.args.Composite(**restore))
    for name in pipelines:
        _equal(list(fresh[name]), list(its[name]))


# ----------------------------------------------------------------------------- neighbour counts


def _single(z, frac, lattice) -> Records:
    """One crystal as Records (only the geometry fields matter to neighbour_counts)."""
    n = len(z)
    pad_z = np.zeros((1, 20), np.int32)
    pad_z[0, :n] = z
    pad_f = np.zeros((1, 20, 3), np.float32)
    pad_f[0, :n] = frac
    zeros = np.zeros(1, np.float32)
    return Records(
        atomic_numbers=pad_z,
        frac_coords=pad_f,
        lattice=np.asarray(lattice, np.float32)[None],
        num_atoms=np.array([n], np.int32),
        dos=np.ones((1, 256), np.float32),
        efermi=zeros,
        scale=zeros + 1,
        band_gap=zeros,
        dos_at_fermi=zeros,
        integrated_dos=zeros,
        ids=np.array(["x"]),
    )


def test_neighbour_counts_analytic_lattices():
    sc = ([84], [[0, 0, 0]], 2.0 * np.eye(3))
    assert neighbour_counts(_single(*sc), 2.1)[0] == 6
    assert neighbour_counts(_single(*sc), 2.9)[0] == 18  # 6 faces + 12 edges at 2*sqrt(2)
    fcc_frac = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    assert neighbour_counts(_single([29] * 4, fcc_frac, 4.0 * np.eye(3)), 3.0)[0] == 4 * 12
    prim = 2.0 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])  # sheared 1-atom fcc cell
    assert neighbour_counts(_single([29], [[0, 0, 0]], prim), 3.0)[0] == 12
    assert neighbour_counts(_single([29], [[0, 0, 0]], prim), 4.1)[0] == 12 + 6


def test_neighbour_counts_match_pymatgen(records):
    counts = neighbour_counts(records.take(np.arange(5)), CUTOFF)
    for i in range(5):
        k = records.num_atoms[i]
        s = Structure(
            Lattice(records.lattice[i].astype(np.float64)),
            records.atomic_numbers[i, :k].tolist(),
            records.frac_coords[i, :k].astype(np.float64),
        )
        centre, _, _, dist = s.get_neighbor_list(CUTOFF)
        assert counts[i] == np.count_nonzero(dist > 1e-4), i


def test_neighbour_stats_knn_equals_full_set_when_uncut(records):
    sub = records.take(np.arange(6))
    full = neighbour_counts(sub, CUTOFF)
    stats = neighbour_stats(sub, CUTOFF, max_neighbors=10_000)
    np.testing.assert_array_equal(stats.edges, full)  # kept half + mirror = the symmetric set
    cut = neighbour_stats(sub, CUTOFF, max_neighbors=3)
    assert np.all(cut.edges <= full) and np.all(cut.edges <= 2 * 3 * sub.num_atoms)
    assert np.all(cut.in_degree <= stats.in_degree)


@pytest.mark.slow  # compiling build_graph takes ~10 s on 2 cores
def test_neighbour_stats_match_crystal_graph(rng):
    # Random 4-8 atom crystals in ~7 A cells: periodic self-images lie beyond the cutoff, so the
    # k-th neighbour has no exact float ties and the counts must agree exactly.
    m = 4
    n = rng.integers(4, 9, size=m).astype(np.int32)
    z = np.zeros((m, 20), np.int32)
    frac = np.zeros((m, 20, 3), np.float32)
    for i in range(m):
        z[i, : n[i]] = 6
        frac[i, : n[i]] = rng.random((n[i], 3))
    lattice = (7.0 * np.eye(3) + rng.uniform(-0.8, 0.8, size=(m, 3, 3))).astype(np.float32)
    zeros = np.zeros(m, np.float32)
    recs = Records(
        atomic_numbers=z,
        frac_coords=frac,
        lattice=lattice,
        num_atoms=n,
        dos=np.ones((m, 256), np.float32),
        efermi=zeros,
        scale=zeros + 1,
        band_gap=zeros,
        dos_at_fermi=zeros,
        integrated_dos=zeros,
        ids=np.array([f"r{i}" for i in range(m)]),
    )
    cutoff, k = 4.5, 6
    ours = neighbour_stats(recs, cutoff, max_neighbors=k)
    bud = CrystalBudgets(atoms=32, graphs=m + 1)
    x = next(iter(crystal_batches(recs, bud, shuffle=False)))
    cb = jax.tree.map(jnp.asarray, x.crystal)
    config = GraphConfig(
        cutoff=cutoff, max_neighbors=k, edges_per_atom=16, max_in_degree=32, candidates_per_atom=256
    )
    graph, _ = build_graph_checked(cb, config)
    assert int(graph.stats.half_edges_needed) == ours.edges.sum() // 2
    assert int(graph.stats.in_degree_needed) == ours.in_degree.max()


def test_budgets_from_records_statistics(records):
    bud = budgets_from_records(records, batch_size=8, quantile=1.0, num_samples=500)
    assert bud.edges is None and bud.graphs == 9 and bud.atoms % 8 == 0
    assert bud.atoms >= np.sort(records.num_atoms)[-8:].sum() * 0.5  # of the order of B * mean
    assert bud.atoms <= np.sort(records.num_atoms)[-8:].sum() + 8  # never above the worst batch
    knn = budgets_from_records(records, batch_size=8, cutoff=CUTOFF, max_neighbors=12)
    assert knn.max_neighbors == 12 and knn.in_degree % 8 == 0
    assert knn.in_degree >= neighbour_stats(records, CUTOFF, max_neighbors=12).in_degree.min()
    assert knn.edges <= budgets_from_records(records, batch_size=8, cutoff=CUTOFF).edges
