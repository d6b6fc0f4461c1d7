"""FractionalHead (GemNetConfig.frac_head): zero start, symmetries, no lattice input, conditions,
batch independence, a numpy reference of its pair features, and a fine-tune that adds it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_gemnet import COND, DOS, G_SLOTS, N_SLOTS, T, _batch, _crystals

from jaxdos.crystal.batch import DosCondition
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
from jaxdos.crystal.frac_head import FREQUENCIES, _slots
from jaxdos.crystal.gemnet.basis import periodic_fourier

HEAD = dataclasses.replace(COND, frac_head=2)


@pytest.fixture(scope="module")
def head():
    batch = _batch(_crystals())
    model = GemNetTDenoiser(HEAD)
    params = jax.jit(model.init)(jax.random.key(0), batch, T)["params"]
    out = params["frac_head"]["out"]
    # A live output layer, so the symmetry tests see the head act.
    live = {**out, "kernel": 0.5 * jax.random.normal(jax.random.key(1), out["kernel"].shape)}
    active = {"params": {**params, "frac_head": {**params["frac_head"], "out": live}}}
    fn = jax.jit(lambda p, b, t, c: model.apply(p, b, t, c, mutable=["diagnostics"])[0])
    run = lambda p, b, t=T, cond=None: jax.device_get(fn(p, b, t, cond))
    return dict(batch=batch, params={"params": params}, active=active, run=run)


def test_a_fresh_head_leaves_the_scores_unchanged(head):
    base = GemNetTDenoiser(dataclasses.replace(HEAD, frac_head=0))
    p = {"params": {k: v for k, v in head["params"]["params"].items() if k != "frac_head"}}
    ref = jax.jit(lambda p, b: base.apply(p, b, T, mutable=["diagnostics"])[0])(p, head["batch"])
    got = head["run"](head["params"], head["batch"])
    for f in ref._fields:
        np.testing.assert_array_equal(getattr(got, f), getattr(ref, f))
    moved = head["run"](head["active"], head["batch"])
    m = np.asarray(head["batch"].node_mask)
    assert np.abs(np.asarray(moved.frac - ref.frac))[m].max() > 1e-3
    np.testing.assert_array_equal(np.asarray(moved.frac)[~m], 0.0)


def test_rotation_permutation_translation_and_images(head):
    b, run, p = head["batch"], head["run"], head["active"]
    o1 = run(p, b)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    r = q * np.sign(np.linalg.det(q))
    rotated = b._replace(lattice=jnp.asarray(np.asarray(b.lattice) @ r.T, jnp.float32))
    np.testing.assert_allclose(run(p, rotated).frac, o1.frac, atol=2e-5, rtol=1e-3)

    perm = [np.array([2, 0, 1]), np.array([1, 3, 0, 2])]
    shift = [np.array([0.31, -0.2, 0.77]), np.array([0.5, 0.5, 0.1])]
    moved = [((f[pi] + s) % 1.0, lat, z[pi])
             for (f, lat, z), pi, s in zip(_crystals(), perm, shift, strict=True)]  # fmt: skip
    idx = np.concatenate([perm[0], 3 + perm[1]])
    np.testing.assert_allclose(run(p, _batch(moved)).frac[:7], o1.frac[idx], atol=2e-5, rtol=1e-3)

    fr = np.asarray(b.frac_coords).copy()
    fr[:7] += np.random.default_rng(4).integers(-2, 3, (7, 3))
    imaged = run(p, b._replace(frac_coords=jnp.asarray(fr)))
    np.testing.assert_allclose(imaged.frac, o1.frac, atol=2e-5, rtol=1e-3)


def test_the_head_reads_no_lattice_and_follows_only_conditioned_crystals(head):
    """The head's share of the score (the output minus a fresh head's) ignores the cell, and the
    DOS moves it only on crystals whose condition is on."""
    b, run = head["batch"], head["run"]
    share = lambda bb, c=None: (run(head["active"], bb, cond=c).frac
                                - run(head["params"], bb, cond=c).frac)  # fmt: skip
    strained = b._replace(lattice=b.lattice * jnp.array([1.3, 0.8, 1.1])[:, None])
    np.testing.assert_allclose(share(strained), share(b), atol=2e-5, rtol=1e-3)
    rng = np.random.default_rng(8)
    dos = jnp.asarray(rng.uniform(0, 3, (G_SLOTS, DOS)), jnp.float32)
    on = jnp.array([True, False, True])
    with_dos = share(b, DosCondition(dos, on))
    np.testing.assert_allclose(with_dos[3:7], share(b)[3:7], atol=2e-5, rtol=1e-3)
    assert np.abs(with_dos[:3] - share(b)[:3]).max() > 1e-4


def test_a_crystal_scores_the_same_alone_and_in_any_slot(head):
    run, p = head["run"], head["active"]
    a, c = _crystals()
    t = jnp.full(G_SLOTS, 0.6)
    both = run(p, _batch([a, c]), t).frac
    swapped = run(p, _batch([c, a]), t).frac  # c now occupies atom slots 0..3
    alone = run(p, _batch([c]), t).frac
    np.testing.assert_allclose(swapped[:4], both[3:7], atol=2e-5, rtol=1e-3)
    np.testing.assert_allclose(alone[:4], both[3:7], atol=2e-5, rtol=1e-3)


def test_slots_and_fourier_features_against_numpy(head):
    b = head["batch"]
    slots = np.asarray(_slots(b, HEAD.graph.max_atoms_per_crystal))
    a = HEAD.graph.max_atoms_per_crystal
    want = [0, 1, 2, a, a + 1, a + 2, a + 3] + [G_SLOTS * a] * (N_SLOTS - 7)
    np.testing.assert_array_equal(slots, want)

    df = np.random.default_rng(5).uniform(-2, 2, (4, 3))
    k = np.arange(1, FREQUENCIES + 1)
    ph = 2 * np.pi * df[:, :, None] * k
    ref = np.concatenate([np.sin(ph), np.cos(ph)], axis=-1).reshape(4, -1)
    features = lambda d: periodic_fourier(jnp.asarray(d, jnp.float32), FREQUENCIES)
    np.testing.assert_allclose(features(df), ref, atol=2e-5)
    np.testing.assert_allclose(features(df + [1, -2, 3]), ref, atol=5e-5)


def test_frac_head_range():
    with pytest.raises(ValueError, match="frac_head"):
        dataclasses.replace(COND, frac_head=9)


def test_a_finetune_adds_the_head_to_a_conditional_init_and_starts_with_its_scores(tmp_path):
    from jaxdos.crystal.checkpoint import save_model
    from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
    from jaxdos.crystal.fit import CrystalFitConfig, initial_model
    from jaxdos.data.budgets import CrystalBudgets
    from jaxdos.data.world import load_world

    net = GemNetConfig.tiny(num_blocks=1, emb_size_atom=16, emb_size_edge=16, latent_dim=16,
                            num_radial=16, dos_emb_size=16).conditional()  # fmt: skip
    records = load_world("train").take(np.arange(8))
    budgets = CrystalBudgets(atoms=40, graphs=3)
    init_cfg = CrystalFitConfig(stage="finetune", model=net)
    _, params = initial_model(init_cfg, budgets, records)
    dist = NumAtomsDistribution.from_counts(np.array([2, 3]))
    save_model(tmp_path / "init", jax.device_get(params), net, dist)

    config = CrystalFitConfig(stage="finetune", init=str(tmp_path / "init"),
                              model=dataclasses.replace(net, frac_head=1)).resolved()  # fmt: skip
    model, merged = initial_model(config, budgets, records)
    assert model.config == dataclasses.replace(net, frac_head=1)
    assert "frac_head" in merged["params"]
    batch = _batch(_crystals())
    cond = DosCondition(jnp.ones((G_SLOTS, 256)), jnp.array([True, False, True]))
    apply = lambda m, p: jax.jit(lambda b: m.apply(p, b, T, cond, mutable=["diagnostics"])[0])
    ref = apply(GemNetTDenoiser(net), params)(batch)
    got = apply(model, merged)(batch)
    for f in ref._fields:
        np.testing.assert_allclose(getattr(got, f), getattr(ref, f), rtol=0, atol=1e-6)
