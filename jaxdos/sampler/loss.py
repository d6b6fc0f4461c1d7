"""Log-linear noise schedule, low-discrepancy times and the RADD λ-DCE loss (Section 4.1, C.1).

Schedule contract (RADD/MDLM log-linear, eps = 1e-3): the total noise is
σ̄(t) = -log(1 - (1 - eps) t), so a bin is masked at time t with probability
λ(t) = 1 - exp(-σ̄(t)) = (1 - eps) t, linear in t. Sampling on a grid t > s unmasks a masked bin
with probability r = (α(s) - α(t)) / (1 - α(t)) = (t - s) / t (the eps cancels).

Loss (RADD λ-DCE, Ou et al. 2024): mask each bin with probability λ and score
-(1/λ) Σ_masked log q_θ(x_0^i | x_t), divided by L so it reads per bin. The network is also given t
(the paper conditions on t); with the log-linear schedule this is RADD's t-DCE up to the constant
factor 1/(1 - eps).
"""

import jax
import jax.numpy as jnp

from jaxdos.kernels.tokenizer import MASK_ID
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.model import log_probs

__all__ = [
    "SCHEDULE_EPS",
    "mask_prob",
    "unmask_prob",
    "time_grid",
    "sample_times",
    "mask_tokens",
    "dce_loss",
]

SCHEDULE_EPS = 1e-3


def mask_prob(t):
    """λ(t) = 1 - exp(-σ̄(t)) = (1 - eps) t, elementwise."""
    return (1.0 - SCHEDULE_EPS) * t


def unmask_prob(t, s):
    """Probability that a masked bin at time t is unmasked by time s < t: (t - s) / t."""
    return (t - s) / t


def time_grid(steps: int, t_min: float):
    """`[S + 1]` float32 uniform grid from 1 down to t_min."""
    return jnp.linspace(1.0, t_min, steps + 1, dtype=jnp.float32)


def sample_times(key, batch: int):
    """`[B]` low-discrepancy times: one offset u0, t_i = (u0 + i/B) mod 1, mapped into [eps, 1].

    The stratification lowers the variance of the loss estimate (RADD's "vdm" sampler).
    """
    u0 = jax.random.uniform(key, ())
    t = jnp.mod(u0 + jnp.arange(batch, dtype=jnp.float32) / batch, 1.0)
    return (1.0 - SCHEDULE_EPS) * t + SCHEDULE_EPS


def mask_tokens(key, tokens, lam):
    """Mask each bin of `tokens` `[B, L]` with probability `lam` `[B]`; (x_t, mask) `[B, L]`."""
    mask = jax.random.uniform(key, tokens.shape) < lam[:, None]
    return jnp.where(mask, MASK_ID, tokens), mask


def dce_loss(params, tokens, scale, key, weights=None, *, config: ModelConfig):
    """RADD λ-DCE loss of a clean batch.

    Args:
        params: `DOSTransformer` variables.
        tokens: `[B, L]` int32 clean tokens (values and [BG], never [MASK]).
        scale: `[B]` K > 0.
        key: PRNG key for the times and the masks.
        weights: optional `[B]` example weights (0 on padding rows); default all ones.
        config: the network config.

    Returns:
        `(loss, metrics)`: scalar mean over the batch of -(1/λ) Σ_masked log q / L, and a dict with
        `loss` and `masked_nll` (mean NLL per masked bin, the number to watch in validation).
    """
    k_t, k_mask = jax.random.split(key)
    b, l = tokens.shape
    t = sample_times(k_t, b)
    lam = mask_prob(t)
    x_t, mask = mask_tokens(k_mask, tokens, lam)
    logp = log_probs(params, x_t, jnp.log(scale), t, config=config)
    nll = -jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    nll = jnp.where(mask, nll, 0.0)
    w = jnp.ones((b,), jnp.float32) if weights is None else weights.astype(jnp.float32)
    per_example = nll.sum(-1) / (lam * l)
    loss = jnp.sum(w * per_example) / jnp.maximum(w.sum(), 1.0)
    masked_nll = jnp.sum(w * nll.sum(-1)) / jnp.maximum(jnp.sum(w * mask.sum(-1)), 1.0)
    return loss, {"loss": loss, "masked_nll": masked_nll}
