"""Algorithm 2 sampler: jit == eager, no [MASK] left, prior untouched, seeds, batch splitting,
guidance gradient vs finite differences, host-side validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_toy import SMALL

from jaxdos.kernels.tokenizer import BG_ID, MASK_ID, N_OUTPUT
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.guidance import ClassifierGuidance, NoGuidance, guided_logits
from jaxdos.sampler.model import log_probs
from jaxdos.sampler.regressor import predict_properties
from jaxdos.sampler.sampling import SamplerState, initial_tokens, sample, sampler_step

GUIDE = ClassifierGuidance(targets=(("band_gap", 2.0), ("integrated_dos", 3.0)), gammas=(1.0, 0.5))
CFG = DOSSamplingConfig(steps=6, corrector_steps=2, remask_fraction=0.3)
PRIOR = np.zeros(256, bool)
PRIOR[100:126] = True
STEP_KW = dict(model_config=SMALL, sampling_config=CFG, guidance=GUIDE)
# One compiled step shared by the step-level tests (compiles dominate this file's time on CPU).
STEP_JIT = jax.jit(lambda *a: sampler_step(*a, **STEP_KW))


def _sample(params, key, b=4, guidance=GUIDE, index=None, cfg=CFG):
    scale = jnp.linspace(0.5, 3.0, b) if index is None else 0.5 + 0.1 * jnp.asarray(index)
    return sample(
        params,
        key,
        scale,
        model_config=SMALL,
        sampling_config=cfg,
        guidance=guidance,
        prior_mask=PRIOR,
        example_index=index,
    )


def test_no_mask_left_and_prior_never_changed(small_params, key):
    out = np.asarray(_sample(small_params, key))
    assert out.shape == (4, 256) and out.dtype == np.int32
    assert not np.any(out == MASK_ID)
    assert np.all(out[:, PRIOR] == BG_ID)
    assert np.all((out >= 0) & (out < N_OUTPUT))


def test_prior_survives_every_step_with_corrector(small_params, key):
    """Run the steps one by one: the [BG] prior is intact after each predictor+corrector step."""
    b = 2
    tokens = initial_tokens(b, PRIOR)
    ex_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(b))
    state = SamplerState(tokens)
    n_masked = [int((tokens == MASK_ID).sum())]
    for i in range(CFG.steps):
        state = STEP_JIT(
            small_params, state, jnp.int32(i), ex_keys, jnp.zeros(b), jnp.asarray(tokens == BG_ID)
        )
        assert np.all(np.asarray(state.tokens)[:, PRIOR] == BG_ID)
        n_masked.append(int((state.tokens == MASK_ID).sum()))
    assert n_masked[-1] == 0 and n_masked[0] == b * (256 - PRIOR.sum())


@pytest.mark.slow  # eager sampler step: ~40 s on 2 cores
def test_jit_equals_eager_step(small_params, key):
    b = 2
    tokens = initial_tokens(b, PRIOR).at[:, :40].set(7)
    args = (
        small_params,
        SamplerState(tokens),
        jnp.int32(3),
        jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(b)),
        jnp.zeros(b),
        jnp.asarray(tokens == BG_ID),
    )
    with jax.disable_jit():
        eager = sampler_step(*args, **STEP_KW).tokens
    jitted = STEP_JIT(*args).tokens
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))


def test_seeds_reproduce_and_differ(small_params):
    a = _sample(small_params, jax.random.key(1))
    b = _sample(small_params, jax.random.key(1))
    c = _sample(small_params, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.mean(np.asarray(a) != np.asarray(c)) > 0.5


def test_batch_order_does_not_change_samples(small_params, key):
    """Per-example keys: a permuted batch (same K per example) gives the permuted samples."""
    idx = jnp.array([5, 9, 2, 7])
    a = _sample(small_params, key, index=idx)
    b = _sample(small_params, key, index=idx[::-1])
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[::-1])


@pytest.mark.slow
def test_smaller_batches_give_same_samples(small_params, key):
    """Batch-size independence (what device sharding relies on): B = 4 vs two B = 2 calls."""
    full = _sample(small_params, key, index=jnp.arange(4))
    lo = _sample(small_params, key, b=2, index=jnp.arange(2))
    hi = _sample(small_params, key, b=2, index=jnp.array([3, 2]))
    np.testing.assert_array_equal(np.asarray(full[:2]), np.asarray(lo))
    np.testing.assert_array_equal(np.asarray(full[2:]), np.asarray(hi[::-1]))


def test_guidance_gradient_matches_finite_differences(small_params, key):
    p = small_params
    b = 2
    tokens = initial_tokens(b).at[:, 128:200].set(300)
    log_scale = jnp.log(jnp.array([0.8, 2.0]))
    logp = log_probs(p.diffusion, tokens, log_scale, jnp.full((b,), 0.5), config=SMALL)

    def predict(probs, ls):
        return predict_properties(p.regressor, p.diffusion, probs, ls, config=SMALL)

    idx = jnp.array(GUIDE.indices)
    gam = jnp.array(GUIDE.gammas)
    target = (jnp.array(GUIDE.values) - p.prop_mean[idx]) / p.prop_std[idx]

    def energy(ell):  # independent restatement of the guidance objective
        pred = predict(jax.nn.softmax(ell, -1), log_scale)[:, idx]
        return jnp.sum(gam * (pred - target) ** 2)

    guided, _ = guided_logits(logp, GUIDE, predict, log_scale, p.prop_mean, p.prop_std)
    grad = logp - guided
    assert float(jnp.abs(grad[:, 128:200]).max()) < 1e-6  # committed bins: one-hot, no pull
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = jnp.asarray(rng.normal(size=logp.shape), jnp.float32)
        h = 1e-2
        fd = (energy(logp + h * d) - energy(logp - h * d)) / (2 * h)
        np.testing.assert_allclose(float(jnp.sum(grad * d)), float(fd), rtol=2e-2, atol=1e-4)


def test_no_guidance_is_identity(small_params):
    logp = jnp.log(jnp.full((1, 256, N_OUTPUT), 1.0 / N_OUTPUT))
    out, res = guided_logits(logp, NoGuidance(), None, jnp.zeros(1), None, None)
    assert out is logp and res.shape == (1, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(targets=(("bandgap", 1.0),), gammas=(1.0,)), "unknown name"),
        (dict(targets=(("band_gap", -1.0),), gammas=(1.0,)), ">= 0"),
        (dict(targets=(("band_gap", float("nan")),), gammas=(1.0,)), "finite"),
        (dict(targets=(("band_gap", 1.0),), gammas=(1.0, 2.0)), "gammas"),
        (dict(targets=(("band_gap", 1.0), (0, 2.0)), gammas=(1.0, 1.0)), "at most once"),
        (dict(targets=(), gammas=()), "at least one"),
        (dict(targets=((7, 1.0),), gammas=(1.0,)), "index"),
    ],
)
def test_bad_guidance_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassifierGuidance(**kwargs)


def test_bad_sample_inputs_raise(small_params, key):
    kw = dict(model_config=SMALL, sampling_config=CFG)
    with pytest.raises(ValueError, match="scale"):
        sample(small_params, key, jnp.array([1.0, -1.0]), **kw)
    with pytest.raises(ValueError, match="prior_mask"):
        sample(small_params, key, jnp.ones(2), prior_mask=np.zeros(255, bool), **kw)
    with pytest.raises(ValueError, match="example_index"):
        sample(small_params, key, jnp.ones(2), example_index=jnp.arange(3), **kw)
    with pytest.raises(ValueError, match="remask_fraction"):
        DOSSamplingConfig(remask_fraction=1.0)
