"""Score network output contract, schedule and λ-DCE loss (decreases on a toy set)."""

import jax
import jax.numpy as jnp
import numpy as np
from sampler_toy import SMALL, toy_records

from jaxdos.data.pipelines import DosBatch
from jaxdos.kernels.tokenizer import MASK_ID, N_OUTPUT, encode
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.fit import dce_objective, init_state, sampler_train_config
from jaxdos.sampler.loss import dce_loss, mask_prob, mask_tokens, sample_times, unmask_prob
from jaxdos.sampler.model import log_probs
from jaxdos.training import make_train_step


def test_output_is_a_distribution_without_mask_and_carries_committed(small_params, key):
    tokens = jax.random.randint(key, (2, 256), 0, N_OUTPUT)
    tokens = jnp.where(jax.random.uniform(key, (2, 256)) < 0.5, MASK_ID, tokens)
    logp = log_probs(small_params.diffusion, tokens, jnp.zeros(2), jnp.full(2, 0.3), config=SMALL)
    assert logp.shape == (2, 256, N_OUTPUT) and logp.dtype == jnp.float32  # no [MASK] column
    np.testing.assert_allclose(np.exp(np.asarray(logp)).sum(-1), 1.0, atol=1e-5)
    committed = np.asarray(tokens != MASK_ID)
    top = np.asarray(jnp.argmax(logp, -1))
    np.testing.assert_array_equal(top[committed], np.asarray(tokens)[committed])
    np.testing.assert_allclose(np.asarray(logp.max(-1))[committed], 0.0)
    # Masked bins get the network's log-softmax (finite everywhere), not a carried one-hot.
    assert np.all(np.asarray(logp.min(-1))[~committed] > -1e4)
    assert np.all(np.asarray(logp.min(-1))[committed] < -1e5)


def test_bf16_compute_close_to_f32(small_params, key):
    tokens = jnp.where(jax.random.uniform(key, (2, 256)) < 0.7, MASK_ID, 5)
    args = (small_params.diffusion, tokens, jnp.zeros(2), jnp.full(2, 0.5))
    f32 = log_probs(*args, config=SMALL)
    bf16 = log_probs(*args, config=ModelConfig(**{**SMALL.__dict__, "bf16": True}))
    assert bf16.dtype == jnp.float32
    masked = np.asarray(tokens == MASK_ID)
    l32, l16 = np.asarray(f32)[masked], np.asarray(bf16)[masked]
    # bf16 keeps ~3 significant digits per matmul: log-probs agree to a few % of their size.
    assert np.abs(l32 - l16).mean() < 0.05 * np.abs(l32).mean()
    assert np.corrcoef(l32.ravel(), l16.ravel())[0, 1] > 0.99


def test_dce_loss_equals_the_masked_nll_of_the_log_probs(small_params, key):
    """The loss reads log-sum-exp and the true logit; the reference reads `log_probs` (numpy)."""
    tokens = jax.random.randint(key, (3, 256), 0, N_OUTPUT)
    scale, weights = jnp.array([0.5, 2.0, 7.0]), jnp.array([1.0, 1.0, 0.0])
    loss_key = jax.random.fold_in(key, 9)
    loss, metrics = dce_loss(small_params.diffusion, tokens, scale, loss_key, weights, config=SMALL)
    k_t, k_mask = jax.random.split(loss_key)
    t = sample_times(k_t, 3)
    lam = np.asarray(mask_prob(t))
    x_t, mask = mask_tokens(k_mask, tokens, jnp.asarray(lam))
    logp = np.asarray(log_probs(small_params.diffusion, x_t, jnp.log(scale), t, config=SMALL),
                      np.float64)  # fmt: skip
    nll = -np.take_along_axis(logp, np.asarray(tokens)[..., None], -1)[..., 0] * np.asarray(mask)
    per_example = nll.sum(-1) / (lam * 256)
    np.testing.assert_allclose(float(loss), per_example[:2].mean(), rtol=2e-5)
    want = nll[:2].sum() / np.asarray(mask)[:2].sum()
    np.testing.assert_allclose(float(metrics["masked_nll"]), want, rtol=2e-5)


def test_schedule_and_mask_rate(key):
    t = sample_times(key, 1000)
    assert float(t.min()) >= 1e-3 and float(t.max()) <= 1.0
    # Stratified: exactly one time per 1/B stratum (after the affine map).
    strata = np.floor((np.asarray(t) - 1e-3) / (1 - 1e-3) * 1000).astype(int)
    assert len(np.unique(np.clip(strata, 0, 999))) >= 998
    lam = jnp.full((4000,), 0.3)
    _, m = mask_tokens(key, jnp.zeros((4000, 256), jnp.int32), lam)
    assert abs(float(m.mean()) - 0.3) < 3e-3
    np.testing.assert_allclose(float(mask_prob(jnp.float32(1.0))), 0.999)
    # Unmask probability: the mask fraction after a step equals t_next / t (log-linear).
    np.testing.assert_allclose(float(unmask_prob(0.8, 0.6)), 0.25, rtol=1e-6)


def test_loss_decreases_on_toy_set(key):
    recs = toy_records(5)
    tokens = encode(jnp.asarray(recs.dos), jnp.asarray(recs.scale))
    batch = DosBatch(tokens, jnp.asarray(recs.scale), None, jnp.ones(5, bool), None)
    # The same config (hence the same compiled step) as test_train_checkpoint's resume test.
    cfg = sampler_train_config(steps=4, learning_rate=3e-3, warmup=2, eval_every=0, ckpt_every=2)
    state = init_state(key, SMALL, cfg)
    step = make_train_step(dce_objective(SMALL), cfg)
    losses = []
    for _ in range(40):
        # The same key every step: the same masks, so the curve shows fitting, not noise.
        state, m = step(state, batch, jax.random.key(7))
        losses.append(float(m["loss"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses
