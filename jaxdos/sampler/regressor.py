"""Property regressors r_φ for classifier guidance (Section 4.1, Appendix C.1).

r_φ reads the expected token embedding `softmax(ℓ) · E` `[B, L, D]`, with E the score network's own
embedding matrix (the 1026 predictable rows), plus log K, and predicts the three DOS properties of
`jaxdos.kernels.properties.PROPERTY_NAMES` (E_BG, DOS(E_F), N(E_F)) standardised by their training
statistics: one multi-head MLP, `[B, L, D], [B] -> [B, P]`.

Training makes it meaningful mid-trajectory: a clean batch is masked at a low-discrepancy time t,
the frozen score network gives log-probabilities ℓ (one-hot at committed bins by carry-over, its
predicted distribution at masked bins), and r_φ regresses the properties of the *clean* DOS from
softmax(ℓ)·E. That is exactly the input it sees inside Algorithm 2. Targets are measured on the
decoded tokens (`decode(tokens, K)`), the same way samples are measured at rejection time.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdos.kernels.grid import N_BINS
from jaxdos.kernels.properties import PROPERTY_NAMES, all_properties
from jaxdos.kernels.tokenizer import decode
from jaxdos.sampler.config import ModelConfig, RegressorConfig
from jaxdos.sampler.loss import mask_prob, mask_tokens, sample_times
from jaxdos.sampler.model import embedding_matrix, fourier_features, log_probs

__all__ = [
    "PropertyRegressor",
    "init_regressor",
    "predict_properties",
    "token_properties",
    "property_stats",
    "regressor_loss",
]


class PropertyRegressor(nn.Module):
    """r_φ: `(expected embedding [B, L, D], log_scale [B]) -> standardised properties [B, P]`."""

    config: RegressorConfig

    @nn.compact
    def __call__(self, pe, log_scale):
        cfg = self.config
        b = pe.shape[0]
        # A per-bin projection before flattening keeps the MLP small while keeping position: the
        # properties read fixed energy windows (bins 127/128, bins < 128, the gap around E_F).
        h = nn.Dense(cfg.proj_dim, name="proj")(nn.LayerNorm(name="ln")(pe)).reshape(b, -1)
        k = fourier_features(log_scale * 10.0, dim=16, max_period=1e3)
        h = jnp.concatenate([h, k, log_scale[:, None]], axis=-1)
        h = nn.gelu(nn.Dense(cfg.hidden, name="fc1")(h))
        h = nn.gelu(nn.Dense(cfg.hidden, name="fc2")(h))
        return nn.Dense(len(PROPERTY_NAMES), name="out")(h)


def init_regressor(key, model_config: ModelConfig):
    """Fresh params of `PropertyRegressor(model_config.regressor)` for width D = model width."""
    pe = jnp.zeros((1, N_BINS, model_config.width), jnp.float32)
    return PropertyRegressor(model_config.regressor).init(key, pe, jnp.zeros((1,)))


def predict_properties(reg_params, diffusion_params, probs, log_scale, *, config: ModelConfig):
    """Standardised predictions `[B, P]` from class probabilities `[B, L, V']` and log K `[B]`."""
    e = embedding_matrix(diffusion_params).astype(jnp.float32)
    pe = jnp.einsum("blv,vd->bld", probs, e)
    return PropertyRegressor(config.regressor).apply(reg_params, pe, log_scale)


def token_properties(tokens, scale):
    """`[B, P]` properties (physical units) of the DOS decoded from tokens `[B, L]` and K `[B]`."""
    props = all_properties(decode(tokens, scale))
    return jnp.stack([props[name] for name in PROPERTY_NAMES], axis=-1)


def property_stats(tokens, scale):
    """`(mean [P], std [P])` of `token_properties` over a training set; std floored at 1e-3."""
    p = jax.jit(token_properties)(tokens, scale)
    return p.mean(0), jnp.maximum(p.std(0), 1e-3)


def regressor_loss(
    reg_params, diffusion_params, tokens, scale, prop_mean, prop_std, key, weights=None, *, config
):
    """MSE of standardised properties on partially masked inputs (see module doc).

    Args:
        reg_params: r_φ params (the only thing differentiated).
        diffusion_params: frozen score-network params (gradients are stopped).
        tokens: `[B, L]` clean tokens; scale: `[B]` K.
        prop_mean, prop_std: `[P]` standardisation statistics.
        key: PRNG key for times and masks.
        weights: optional `[B]` example weights (0 on padding rows).
        config: the `ModelConfig` of the score network.

    Returns:
        `(loss, metrics)` with per-property MSE in standardised units (`mse_<name>`).
    """
    k_t, k_mask = jax.random.split(key)
    t = sample_times(k_t, tokens.shape[0])
    x_t, _ = mask_tokens(k_mask, tokens, mask_prob(t))
    log_scale = jnp.log(scale)
    frozen = jax.lax.stop_gradient(diffusion_params)
    probs = jax.nn.softmax(log_probs(frozen, x_t, log_scale, t, config=config), axis=-1)
    pred = predict_properties(reg_params, frozen, probs, log_scale, config=config)
    target = (token_properties(tokens, scale) - prop_mean) / prop_std
    w = jnp.ones(tokens.shape[:1], jnp.float32) if weights is None else weights.astype(jnp.float32)
    per_prop = jnp.sum(w[:, None] * (pred - target) ** 2, axis=0) / jnp.maximum(w.sum(), 1.0)
    metrics = {f"mse_{n}": per_prop[i] for i, n in enumerate(PROPERTY_NAMES)}
    loss = per_prop.mean()
    return loss, {"loss": loss, **metrics}
