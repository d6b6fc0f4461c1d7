"""Gradient guidance of the crystal sampler by a differentiable loss of the denoised estimate."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.crystal.diffusion.guidance import (
    ClassifierFree,
    DenoisedEstimate,
    GradientGuidance,
    NoGuidance,
    apply_gradient_guidance,
)
from jaxdos.crystal.diffusion.num_atoms import prior_batch
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig
from jaxdos.crystal.generate import generate
from tests.crystal.test_crystal_sampler import toy_params, toy_score


def volume_loss(params, targets, est: DenoisedEstimate):
    """log(V / atom / target)^2 per crystal, plus a type and a coordinate term (gradient test)."""
    vol = jnp.abs(jnp.linalg.det(est.lattice)) / est.batch.num_atoms
    nm = est.batch.node_mask.astype(jnp.float32)
    seg = jnp.where(est.batch.node_mask, est.batch.batch, 0)
    g = est.batch.num_graphs
    types = jax.ops.segment_sum(nm * est.type_probs[:, 15], seg, num_segments=g)  # P(S)
    coords = jax.ops.segment_sum(nm * jnp.sin(2 * jnp.pi * est.frac[:, 0]), seg, num_segments=g)
    size = jnp.log(vol / params["target"]) ** 2
    return size + params["w_types"] * types + params["w_pos"] * coords, jnp.bool_(False)


def _estimate(key, g=3):
    b = prior_batch(np.full(g, 4))
    k1, k2, k3 = jax.random.split(key, 3)
    n = b.num_nodes
    return DenoisedEstimate(
        type_probs=jax.nn.softmax(jax.random.normal(k1, (n, 101))),
        frac=jax.random.uniform(k2, (n, 3)),
        lattice=jnp.eye(3) * 4.0 + 0.3 * jax.random.normal(k3, (g, 3, 3)),
        batch=jax.tree.map(jnp.asarray, b),
    )


def test_guidance_gradient_matches_finite_differences():
    est = _estimate(jax.random.key(0))
    params = {"target": 15.0, "w_types": 2.0, "w_pos": 0.5}
    guide = GradientGuidance(loss=volume_loss, strength=0.7)
    zeros = (jnp.zeros_like(est.frac), jnp.zeros_like(est.lattice), jnp.zeros_like(est.type_probs))
    alpha = 0.8
    sp, sc, lg, overflow = apply_gradient_guidance(guide, params, None, est, *zeros, alpha)
    assert not bool(overflow)
    w = 0.7 * alpha**2

    def total(e):
        return float(jnp.sum(jnp.where(e.batch.graph_mask, volume_loss(params, None, e)[0], 0.0)))

    h = 1e-3
    for field, got, scale, idx in (
        ("frac", sp, w, (1, 0)),
        ("frac", sp, w, (6, 0)),
        ("lattice", sc, w / alpha, (2, 0, 1)),
        ("type_probs", lg, w, (3, 15)),
    ):
        x = np.asarray(getattr(est, field), np.float64)
        up, dn = x.copy(), x.copy()
        up[idx] += h
        dn[idx] -= h
        e_up = est._replace(**{field: jnp.asarray(up, jnp.float32)})
        e_dn = est._replace(**{field: jnp.asarray(dn, jnp.float32)})
        fd = (total(e_up) - total(e_dn)) / (2 * h)
        np.testing.assert_allclose(float(got[idx]), -scale * fd, rtol=2e-2, atol=1e-3)
    # padding atoms and graphs get no guidance
    m = np.asarray(est.batch.node_mask)
    assert np.all(np.asarray(sp)[~m] == 0) and np.all(np.asarray(lg)[~m] == 0)


CFG = CrystalSamplingConfig(steps=8)
G = 8


def _run(guidance, params, key=0, tau_lat=1.0):
    cfg = dataclasses.replace(CFG, guidance=guidance)
    return generate(
        toy_score,
        toy_params(G, tau_lat=tau_lat),
        key=jax.random.key(key),
        num_atoms=np.full(G, 4),
        config=cfg,
        guide_params=params,
    ).batch


def test_strength_zero_is_the_unguided_sampler_bit_for_bit():
    params = {"target": 30.0, "w_types": 1.0, "w_pos": 1.0}
    plain = _run(NoGuidance(), None)
    zero = _run(GradientGuidance(loss=volume_loss, strength=0.0), params)
    for a, b in zip(plain, zero, strict=True):
        np.testing.assert_array_equal(a, b)


def test_guidance_moves_the_volume_the_asked_way():
    plain = _run(NoGuidance(), None)
    vol = lambda b: np.abs(np.linalg.det(b.lattice[:G])) / 4
    v0 = vol(plain).mean()
    guide = GradientGuidance(loss=volume_loss, strength=1.0)
    off = {"w_types": 0.0, "w_pos": 0.0}
    lo = _run(guide, {"target": 10.0, **off})
    hi = _run(guide, {"target": 40.0, **off})
    # the toy's volumes per atom spread around 25 A^3; guidance pulls each run towards its target
    assert vol(lo).mean() < v0 - 1.0 < v0 + 1.0 < vol(hi).mean(), (vol(lo), v0, vol(hi))


def test_bad_guidance_is_rejected():
    with pytest.raises(ValueError, match="strength"):
        GradientGuidance(loss=volume_loss, strength=-1.0)
    with pytest.raises(ValueError, match="loss"):
        GradientGuidance(loss=3, strength=1.0)
    with pytest.raises(ValueError, match="base"):
        GradientGuidance(loss=volume_loss, strength=1.0, base="cfg")
    with pytest.raises(ValueError, match="dos"):
        generate(
            toy_score,
            toy_params(2),
            key=jax.random.key(0),
            num_atoms=np.full(2, 4),
            config=dataclasses.replace(
                CFG,
                guidance=GradientGuidance(
                    loss=volume_loss, strength=1.0, base=ClassifierFree(cfg_scale=2.0)
                ),
            ),
        )
