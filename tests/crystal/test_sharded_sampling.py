"""CDOSGen sampling over several devices: layout, per-crystal keys, 1 = 2 = 8 fake devices, and
one call spanning 2 processes = 1 process."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fake_devices import ROOT, run_on_fake_devices, run_on_processes
from pipeline.untrained import untrained_model

from jaxdos.crystal.batch import ScoreOutput
from jaxdos.crystal.diffusion.losses import ScoreWithDiagnostics
from jaxdos.crystal.diffusion.num_atoms import (
    device_atom_budget,
    device_prior_batch,
    prior_batch,
)
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig, crystal_keys
from jaxdos.crystal.generate import _merge, generate
from jaxdos.crystal.graph import GraphConfig, presize_budgets
from jaxdos.pipeline import generate_crystals
from jaxdos.structures import unpack

COUNTS = np.array([3, 1, 4, 1, 5, 2, 6], np.int32)
# 11 crystals: 6 + 5 (+ 1 padding slot) on 2 devices, the 6-atom one on device 1.
TOY_COUNTS = np.array([3, 1, 4, 1, 5, 2, 6, 2, 3, 5, 4], np.int32)
TOY_CONFIG = CrystalSamplingConfig(steps=5, corrector_steps=1)


def toy_score(params, batch, t, cond, key):
    """An analytic score (pull to a point, a 4 A cube) with flat type logits, so types are random
    draws."""
    frac = -params * (batch.frac_coords - 0.3)
    lat = -(batch.lattice - 4.0 * jnp.eye(3))
    return ScoreOutput(frac, lat, jnp.zeros((batch.num_nodes, 101)))


def flagging_score(params, batch, t, cond, key):
    """`toy_score` that reports an overflow for a sub-batch holding a 6-atom crystal."""
    out = toy_score(params, batch, t, cond, key)
    return ScoreWithDiagnostics(out, jnp.any(batch.num_atoms == 6), jnp.max(batch.num_atoms))


def toy_generate(score, mesh=None):
    return generate(
        score,
        jnp.float32(0.5),
        key=jax.random.key(7),
        num_atoms=TOY_COUNTS,
        config=TOY_CONFIG,
        mesh=mesh,
    )


@functools.cache
def _tiny_model():
    return untrained_model(8, [2, 3, 4])


def tiny_pipeline(**kw):
    """generate_crystals with a 1-block 8-wide GemNet, CFG on, no corrector (the toy tests its
    reduction; one network call per step compiles faster), 5 crystals in batches of 3 (the last
    padded with repeats; 2 + 1 crystals on 2 devices)."""
    dos = np.abs(np.random.default_rng(0).normal(size=(5, 256))).astype(np.float32)
    model = _tiny_model()
    return generate_crystals(
        dos, steps=3, corrector_steps=0, batch_size=3, seed=1, model=model, **kw
    )


def test_device_prior_batch_splits_whole_crystals_in_global_order():
    one = prior_batch(COUNTS)
    for d in (1, 2, 3, 8):
        stacked = device_prior_batch(COUNTS, d)
        per = -(-COUNTS.size // d)
        assert stacked.lattice.shape == (d, per, 3, 3)
        assert stacked.atomic_numbers.shape[1] == device_atom_budget(COUNTS, d)
        # Padding graph slots are masked and empty, so they never enter the global means.
        assert stacked.graph_mask.sum() == COUNTS.size
        np.testing.assert_array_equal(stacked.num_atoms[~stacked.graph_mask], 0)
        merged = _merge(stacked)
        np.testing.assert_array_equal(unpack(merged).num_atoms, COUNTS)
        np.testing.assert_array_equal(merged.node_mask.sum(), COUNTS.sum())
    # One device is exactly the one-batch layout.
    d1 = _merge(device_prior_batch(COUNTS, 1))
    for a, b in zip(d1, one, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="atom_budget"):
        device_prior_batch(COUNTS, 2, atom_budget=8)


def test_crystal_keys_depend_on_the_crystal_not_the_layout():
    key = jax.random.key(3)
    whole = jax.tree.map(jnp.asarray, prior_batch(COUNTS))
    atom_keys, graph_keys = crystal_keys(key, whole)
    ref = jax.random.key_data(atom_keys)[np.asarray(whole.node_mask)]
    stacked = device_prior_batch(COUNTS, 3)
    per = stacked.lattice.shape[1]
    got = []
    for d in range(3):
        sub = jax.tree.map(lambda x, d=d: jnp.asarray(x[d]), stacked)
        ak, gk = crystal_keys(key, sub, d * per)
        got.append(jax.random.key_data(ak)[np.asarray(sub.node_mask)])
        real = np.asarray(sub.graph_mask)
        np.testing.assert_array_equal(
            jax.random.key_data(gk)[real],
            jax.random.key_data(graph_keys)[d * per : d * per + real.sum()],
        )
    np.testing.assert_array_equal(np.concatenate(got), ref)
    assert len({tuple(k) for k in np.asarray(ref)}) == COUNTS.sum()  # every atom its own key


def test_presized_budgets_cover_the_run_and_never_shrink():
    base = GraphConfig(
        max_neighbors=20, candidates_per_atom=64, edges_per_atom=16, max_in_degree=16
    )
    got = presize_budgets(base, [2, 24, 7], limit_density=0.0577)
    assert got.max_atoms_per_crystal == 24
    # n (2 r + 1)^3, r = ceil(7 / (n / 0.0577)^(1/3)): 2 * 7^3, 24 * 3^3, 7 * 5^3 -> 875 -> 1024
    assert got.candidates_per_atom == 1024
    assert (got.edges_per_atom, got.max_in_degree) == (32, 32)  # 5/4 and 3/2 of k = 20
    big = GraphConfig(edges_per_atom=256, max_in_degree=256, candidates_per_atom=4096)
    assert presize_budgets(big, [4], 0.0577) == big
    with pytest.raises(ValueError, match="num_atoms"):
        presize_budgets(base, [0], 0.0577)


def test_toy_sampler_gives_the_same_crystals_on_1_2_8_devices():
    # The analytic score, with one corrector step, so the batch-global norms are reduced across
    # devices.
    script = """
        import jax, jax.numpy as jnp, numpy as np
        from jaxdos import sharding
        from jaxdos.crystal.diffusion import sampler
        from jaxdos.crystal.diffusion.num_atoms import device_prior_batch
        from test_sharded_sampling import TOY_CONFIG as cfg, TOY_COUNTS as counts, toy_generate
        from test_sharded_sampling import toy_score as score

        outs = {}
        for d in (1, 2, 8):
            outs[d] = toy_generate(score, sharding.local_mesh(d))
            assert outs[d].device_overflow.shape == (d,)
        ref = outs[1].batch
        m = ref.node_mask
        assert len(set(ref.atomic_numbers[m].tolist())) > 5  # the types really are draws
        for d in (2, 8):
            b = outs[d].batch
            np.testing.assert_array_equal(b.atomic_numbers[b.node_mask], ref.atomic_numbers[m])
            np.testing.assert_allclose(b.frac_coords[b.node_mask], ref.frac_coords[m], atol=1e-5)
            np.testing.assert_allclose(b.lattice[b.graph_mask], ref.lattice, rtol=1e-5, atol=1e-4)
        # The trajectory really runs split: the state stays on the 8 devices, one row each.
        mesh = sharding.local_mesh(8)
        state = sampler.init_state(jax.random.key(0), device_prior_batch(counts, 8), cfg)
        state = state._replace(batch=sharding.place(state.batch, mesh, split=True),
                               overflow=sharding.place(state.overflow, mesh, split=True))
        out = sampler.make_sampler(score, cfg)(jnp.float32(0.5), state, None)
        shards = out.batch.frac_coords.addressable_shards
        assert len({s.device for s in shards}) == 8 and shards[0].data.shape[0] == 1
        print("ok")
    """
    assert run_on_fake_devices(script, ROOT / "tests" / "crystal").strip().endswith("ok")


@pytest.mark.slow
def test_gemnet_pipeline_gives_the_same_crystals_on_1_2_8_devices():
    # The real network (untrained, width 16) through generate_crystals with DOS conditioning and
    # classifier-free guidance; about 4 minutes on 2 busy cores (three compilations).
    script = """
        import numpy as np
        from pipeline.untrained import untrained_model
        from jaxdos.pipeline import generate_crystals
        model = untrained_model(16, [2, 3, 4])
        dos = np.abs(np.random.default_rng(0).normal(size=(5, 256))).astype(np.float32)
        res = {d: generate_crystals(dos, steps=3, batch_size=5, seed=1, model=model, devices=d)[0]
               for d in (1, 2, 8)}
        for d in (2, 8):
            np.testing.assert_array_equal(res[d].atomic_numbers, res[1].atomic_numbers)
            np.testing.assert_allclose(res[d].frac_coords, res[1].frac_coords, atol=1e-5)
            np.testing.assert_allclose(res[d].lattice, res[1].lattice, rtol=1e-5, atol=1e-5)
        print("ok")
    """
    assert run_on_fake_devices(script, timeout=900).strip().endswith("ok")


@pytest.mark.slow
def test_one_call_across_two_processes_gives_the_one_process_crystals(tmp_path):
    # Two one-device processes make one call on the global mesh: the analytic score (one device
    # flags an overflow, which both processes must see to re-run alike), then generate_crystals
    # with a tiny GemNet; every process returns all the crystals of a one-process run.
    script = """
        import sys
        import jax, numpy as np, pytest
        from jaxdos import sharding
        assert sharding.initialize_distributed()  # from the JAX_* variables
        from test_sharded_sampling import flagging_score, tiny_pipeline, toy_generate

        toy = toy_generate(flagging_score, sharding.make_mesh())
        assert toy.device_overflow.tolist() == [False, True] and toy.overflow and toy.stats == 6
        with pytest.raises(ValueError, match="devices"):
            tiny_pipeline(devices=1, across_processes=True)
        crystals, source = tiny_pipeline(across_processes=True)
        b = toy.batch
        np.savez(f"{sys.argv[1]}/p{jax.process_index()}.npz", **crystals._asdict(), source=source,
                 toy_types=b.atomic_numbers[b.node_mask], toy_frac=b.frac_coords[b.node_mask],
                 toy_lattice=b.lattice[b.graph_mask])
        print("ok", jax.process_index())
    """
    outs = run_on_processes(script, ROOT / "tests" / "crystal", args=[tmp_path])
    assert [o.split()[-2:] for o in outs] == [["ok", "0"], ["ok", "1"]]
    toy = toy_generate(flagging_score).batch  # one device, this process
    ref, ref_source = tiny_pipeline()
    for p in range(2):
        with np.load(tmp_path / f"p{p}.npz") as z:
            np.testing.assert_array_equal(z["toy_types"], toy.atomic_numbers[toy.node_mask])
            np.testing.assert_allclose(z["toy_frac"], toy.frac_coords[toy.node_mask], atol=1e-5)
            np.testing.assert_allclose(z["toy_lattice"], toy.lattice, rtol=1e-5, atol=1e-4)
            np.testing.assert_array_equal(z["atomic_numbers"], ref.atomic_numbers)
            np.testing.assert_allclose(z["frac_coords"], ref.frac_coords, atol=1e-5)
            np.testing.assert_allclose(z["lattice"], ref.lattice, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(z["source"], ref_source)
