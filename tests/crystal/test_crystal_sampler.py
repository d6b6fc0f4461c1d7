"""The PC sampler on a toy single-prototype target with its exact score; CFG; seeds; bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.crystal.batch import DosCondition, ScoreOutput
from jaxdos.crystal.diffusion import lattice, wrapped_normal
from jaxdos.crystal.diffusion.corruption import DiffusionConfig
from jaxdos.crystal.diffusion.guidance import ClassifierFree, guided_score
from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20, NumAtomsDistribution, prior_batch
from jaxdos.crystal.diffusion.sampler import (
    SELECTED_ATOMIC_NUMBERS,
    CrystalSamplingConfig,
    element_logit_bias,
)
from jaxdos.crystal.generate import generate
from jaxdos.structures import CrystalBatch

PROTO_FRAC = np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.8], [0.15, 0.65, 0.4], [0.9, 0.05, 0.55]])
PROTO_Z = np.array([8, 26, 8, 3])
PROTO_LAT = np.array([[4.0, 0.2, 0.0], [0.2, 4.5, 0.1], [0.0, 0.1, 5.0]])
DCFG = DiffusionConfig()


def toy_params(g, tau_pos=0.0, tau_lat=0.0):
    """Per-atom prototype arrays for G copies of a 4-atom crystal (padding to the bucket).

    The toy data distribution is the prototype blurred by a wrapped normal of width `tau_pos` on
    the coordinates and symmetric Gaussian noise of std `tau_lat` on the lattice (0: a delta).
    """
    b = prior_batch(np.full(g, 4))
    n = b.num_nodes
    frac = np.zeros((n, 3), np.float32)
    frac[: 4 * g] = np.tile(PROTO_FRAC, (g, 1))
    z = np.ones(n, np.int32)
    z[: 4 * g] = np.tile(PROTO_Z, g)
    return {
        "frac": jnp.asarray(frac),
        "z": jnp.asarray(z),
        "lat": jnp.asarray(PROTO_LAT),
        "tau_pos": jnp.float32(tau_pos),
        "tau_lat": jnp.float32(tau_lat),
    }


def toy_score(params, batch: CrystalBatch, t, cond, key):
    """Exact "score x std" of the toy target's marginal at time t.

    Coordinates: wrapped normal around the prototype with variance tau^2 + sigma_t^2; lattice:
    Gaussian with mean of the VP marginal and variance alpha^2 tau^2 + std_t^2.

    With a condition, the conditional model swaps the first element (O -> S) where use_cond.
    """
    del key
    n = params["frac"].shape[0]
    reps = batch.num_nodes // n
    frac0 = jnp.tile(params["frac"], (reps, 1))
    z0 = jnp.tile(params["z"], reps)
    if cond is not None:
        z0 = jnp.where(cond.use_cond[batch.batch] & (z0 == 8), 16, z0)
    n_atom = batch.num_atoms[batch.batch]
    sig = wrapped_normal.sigma(t[batch.batch], n_atom, DCFG.pos)
    sig_tot = jnp.sqrt(sig**2 + params["tau_pos"] ** 2)
    frac = sig[:, None] * wrapped_normal.wrapped_normal_score(
        batch.frac_coords - frac0, sig_tot[:, None]
    )
    lat0 = jnp.broadcast_to(params["lat"], batch.lattice.shape)
    mean, std = lattice.marginal(lat0, t, batch.num_atoms, DCFG.cell)
    var = (lattice.alpha(t, DCFG.cell) * params["tau_lat"]) ** 2 + std**2
    lat = -(batch.lattice - mean) * (std / var)[:, None, None]
    logits = 20.0 * jax.nn.one_hot(z0 - 1, 101)
    return ScoreOutput(frac=frac, lattice=lat, type_logits=logits)


def _gen(g, config, key=0, dos=None, params=None):
    return generate(
        toy_score,
        toy_params(g) if params is None else params,
        key=jax.random.key(key),
        num_atoms=np.full(g, 4),
        dos=dos,
        config=config,
    )


FAST = CrystalSamplingConfig(steps=6)  # shared by most tests so the jitted sampler compiles once


G = 4  # one padded shape for most tests


def test_sampler_recovers_single_prototype():
    g = G
    out = _gen(g, FAST).batch
    m = out.node_mask
    z = out.atomic_numbers[m].reshape(g, 4)
    np.testing.assert_array_equal(z, np.tile(PROTO_Z, (g, 1)))
    d = out.frac_coords[m].reshape(g, 4, 3) - PROTO_FRAC
    d = d - np.round(d)
    assert np.abs(d).max() < 1e-3, np.abs(d).max()
    np.testing.assert_allclose(out.lattice, np.tile(PROTO_LAT, (g, 1, 1)), atol=1e-2)
    assert np.all(out.frac_coords[m] >= 0) and np.all(out.frac_coords[m] < 1)
    assert np.all(out.atomic_numbers[~m] == 0)


def test_sampler_reproduces_a_blurred_prototype_distribution():
    """Exact scores of a blurred prototype: the samples must have the blur's mean and spread."""
    g, tau_pos, tau_lat = 16, 0.04, 0.25
    out = _gen(g, CrystalSamplingConfig(steps=40), 5, params=toy_params(g, tau_pos, tau_lat)).batch
    d = out.frac_coords[out.node_mask].reshape(g, 4, 3) - PROTO_FRAC
    d = d - np.round(d)
    assert abs(d.mean()) < 0.01
    np.testing.assert_allclose(d.std(), tau_pos, rtol=0.15)
    dl = out.lattice - PROTO_LAT
    assert abs(dl.mean()) < 0.06
    np.testing.assert_allclose(dl.std(), tau_lat, rtol=0.15)
    np.testing.assert_allclose(out.lattice, np.swapaxes(out.lattice, 1, 2), atol=1e-4)


def test_seeds_reproduce_and_differ():
    p = toy_params(G, 0.05, 0.2)
    a, b, c = (_gen(G, FAST, s, params=p).batch for s in (1, 1, 2))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.frac_coords, c.frac_coords)


def test_cfg_scale_zero_is_unconditional_and_one_is_conditional():
    dos = np.abs(np.sin(np.arange(256) / 9.0)).astype(np.float32)
    g = G
    params = toy_params(g)
    uncond = _gen(g, FAST, 3, params=params).batch
    zero = _gen(
        g, CrystalSamplingConfig(steps=6, guidance=ClassifierFree(cfg_scale=0.0)), 3, dos, params
    ).batch
    for x, y in zip(uncond, zero, strict=True):
        np.testing.assert_array_equal(x, y)
    one = _gen(
        g, CrystalSamplingConfig(steps=6, guidance=ClassifierFree(cfg_scale=1.0)), 3, dos, params
    ).batch
    z = one.atomic_numbers[one.node_mask].reshape(g, 4)
    np.testing.assert_array_equal(z, np.tile(np.where(PROTO_Z == 8, 16, PROTO_Z), (g, 1)))


def test_guided_score_is_lerp_of_one_batched_call():
    g = 2
    params = toy_params(g)
    b = jax.tree.map(jnp.asarray, prior_batch(np.full(g, 4)))
    score = jax.jit(toy_score)
    b = b._replace(
        frac_coords=jax.random.uniform(jax.random.key(0), b.frac_coords.shape),
        atomic_numbers=jnp.where(b.node_mask, 101, 0),
    )
    t = jnp.array([0.3, 0.7])
    cond = DosCondition(dos=jnp.ones((g, 256)), use_cond=jnp.array([True, False]))
    calls = []

    def counting(*args):
        calls.append(args[1].num_graphs)
        return toy_score(*args)

    cfg_scale = 2.5
    guided = jax.jit(guided_score, static_argnums=(0, 6))
    out = guided(
        counting, params, b, t, cond, jax.random.key(0), ClassifierFree(cfg_scale=cfg_scale)
    )
    assert calls == [2 * g]
    un = score(params, b, t, None, None)
    co = score(params, b, t, cond, None)
    for o, u, c in zip(out, un, co, strict=True):
        np.testing.assert_allclose(o, u + cfg_scale * (c - u), rtol=1e-5, atol=1e-4)
    # The second crystal has use_cond False: guidance leaves it unconditional.
    np.testing.assert_array_equal(out.type_logits[4:8], un.type_logits[4:8])


def test_element_mask_blocks_disallowed_elements():
    g = G
    params = toy_params(g)
    params = {**params, "z": jnp.where(params["z"] == 26, 2, params["z"])}  # He is disallowed
    out = _gen(g, FAST, 4, params=params).batch
    assert 2 not in out.atomic_numbers[out.node_mask]
    assert len(SELECTED_ATOMIC_NUMBERS) == 76
    bias = np.asarray(element_logit_bias((8, 26)))
    assert bias[7] == 0 and bias[25] == 0 and bias[100] == -1e10 and np.sum(bias == 0) == 2


def two_element_score(params, batch, t, cond, key):
    """The toy geometry score with type logits O : S = 1 : 0 for every atom at every t."""
    out = toy_score(params, batch, t, cond, key)
    logits = jnp.zeros_like(out.type_logits).at[:, 7].set(1.0)
    return ScoreOutput(out.frac, out.lattice, logits)


def test_type_temperature_sharpens_the_drawn_types():
    """At T = 1 an atom unmasked before the last step is S with probability 1 / (1 + e) = 0.27;
    at T = 0.1 with 1 / (1 + e^10) = 5e-5. The atoms still masked at the last step take the
    arg-max, O, at any T, so at T = 1 the S fraction lies below 0.27."""
    g = 16

    def s_fraction(temperature):
        cfg = CrystalSamplingConfig(
            steps=20, allowed_elements=(8, 16), type_temperature=temperature
        )
        out = generate(
            two_element_score, toy_params(g), key=jax.random.key(3), num_atoms=np.full(g, 4),
            config=cfg,
        ).batch  # fmt: skip
        z = out.atomic_numbers[out.node_mask]
        assert set(z.tolist()) <= {8, 16}
        return np.mean(z == 16)

    assert 0.05 < s_fraction(1.0) < 0.27
    assert s_fraction(0.1) == 0.0
    with pytest.raises(ValueError, match="type_temperature"):
        CrystalSamplingConfig(type_temperature=0.0)


def test_num_atoms_sampled_from_distribution():
    out = generate(
        toy_score,
        toy_params(1),
        key=jax.random.key(0),
        num_samples=1,
        config=CrystalSamplingConfig(steps=4),
        distribution=NumAtomsDistribution(probs=(0, 0, 0, 1.0)),
    )
    np.testing.assert_array_equal(out.batch.num_atoms, [4])
    draws = ALEX_MP_20.sample(np.random.default_rng(0), 20_000)
    np.testing.assert_allclose(np.mean(draws == 4), ALEX_MP_20.probs[3], atol=0.01)
    assert draws.min() >= 1 and draws.max() <= 20


def test_bad_inputs_raise_clear_errors():
    cfg = CrystalSamplingConfig(steps=4, guidance=ClassifierFree(cfg_scale=2.0))
    good = np.ones(256, np.float32)
    with pytest.raises(ValueError, match="dos"):
        _gen(1, cfg, dos=np.full(256, np.nan))
    with pytest.raises(ValueError, match="dos"):
        _gen(1, cfg, dos=np.ones(255))
    with pytest.raises(ValueError, match="dos"):
        _gen(1, cfg, dos=-good)
    with pytest.raises(ValueError, match="dos"):
        _gen(1, cfg, dos=None)
    with pytest.raises(ValueError, match="dos"):
        _gen(1, CrystalSamplingConfig(steps=4), dos=good)
    with pytest.raises(ValueError, match="num_atoms"):
        generate(toy_score, {}, key=jax.random.key(0), num_atoms=[0, 3])
    with pytest.raises(ValueError, match="num_atoms"):
        generate(toy_score, {}, key=jax.random.key(0), num_atoms=[101])
    with pytest.raises(ValueError, match="atom_budget"):
        generate(toy_score, {}, key=jax.random.key(0), num_atoms=[10, 10], atom_budget=16)
    with pytest.raises(ValueError, match="allowed_elements"):
        CrystalSamplingConfig(allowed_elements=(0, 8))
    with pytest.raises(ValueError, match="allowed_elements"):
        CrystalSamplingConfig(allowed_elements=(8, 118))
    with pytest.raises(ValueError, match="cfg_scale"):
        ClassifierFree(cfg_scale=float("nan"))
    with pytest.raises(ValueError, match="guidance"):
        CrystalSamplingConfig(guidance="cfg")
    with pytest.raises(ValueError, match="steps: expected 2"):
        dataclasses.replace(CrystalSamplingConfig(), steps=1)


def test_overflow_diagnostics_are_accumulated_over_the_trajectory():
    """A score function reporting an overflow at early (large-t) steps marks the whole run."""
    from jaxdos.crystal.diffusion.losses import ScoreWithDiagnostics

    def flagged(params, batch, t, cond, key):
        out = toy_score(params, batch, t, cond, key)
        need = jnp.int32(jnp.round(10 * t[0]))
        return ScoreWithDiagnostics(out, t[0] > 0.9, {"need": need})

    out = generate(
        flagged, toy_params(G), key=jax.random.key(0), num_atoms=np.full(G, 4), config=FAST
    )
    assert out.overflow and int(out.stats["need"]) == 10
    z = out.batch.atomic_numbers[out.batch.node_mask].reshape(G, 4)
    np.testing.assert_array_equal(z, np.tile(PROTO_Z, (G, 1)))


@pytest.mark.slow
def test_gemnet_tiny_end_to_end_generation_with_cfg():
    from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
    from jaxdos.crystal.generate import generate_with_model
    from jaxdos.structures import to_structures, unpack

    model = GemNetTDenoiser(GemNetConfig.tiny().conditional())
    b = jax.tree.map(jnp.asarray, prior_batch(np.full(2, 4)))
    b = b._replace(
        lattice=b.lattice * 4.0,
        atomic_numbers=jnp.where(b.node_mask, 8, 0),
        frac_coords=jax.random.uniform(jax.random.key(1), b.frac_coords.shape),
    )
    cond = DosCondition(jnp.ones((2, 256)), jnp.ones(2, bool))
    params = {"params": jax.jit(model.init)(jax.random.key(0), b, jnp.full(2, 0.5), cond)["params"]}
    cfg = CrystalSamplingConfig(steps=3, guidance=ClassifierFree(cfg_scale=2.0))
    gen, used = generate_with_model(
        model,
        params,
        key=jax.random.key(0),
        num_atoms=[3, 5],
        dos=np.ones(256, np.float32),
        config=cfg,
    )
    assert not gen.overflow
    structs = to_structures(unpack(gen.batch))
    assert [len(s) for s in structs] == [3, 5]
    assert all(z in SELECTED_ATOMIC_NUMBERS for s in structs for z in s.atomic_numbers)
