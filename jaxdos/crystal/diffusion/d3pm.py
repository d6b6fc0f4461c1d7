"""Absorbing ("mask") D3PM for atom types (MatterGen's `MaskDiffusion`).

See docs/spec/mattergen.md §4.3.

Classes are zero-based: class c <-> Z = c + 1, class `MASK_CLASS = 100` <-> Z = 101 (the mask).
MatterGen's "standard" schedule with T levels: beta_k = 1 / (T - k) for k = 0..T-1, so the keep
probability after k corruption steps is p_k = prod_{j<k} (1 - beta_j) = 1 - k / T (p_T = 0).

Continuous time t in (0, 1] maps to k = floor(t * (T - 1)) (`to_discrete_time`); the forward
marginal is taken at level k + 1 and the reverse (loss / sampling) step goes k + 1 -> k using
q(x_k | x_{k+1}, x_0). T = 1000 in training; the sampler uses T = its number of steps (MatterGen
asserts the two are equal, so fewer sampling steps means a shorter discrete schedule).
"""

import dataclasses

import jax
import jax.numpy as jnp

from jaxdos.crystal.batch import NUM_TYPE_CLASSES
from jaxdos.typing import Array, PRNGKey

__all__ = [
    "MASK_CLASS",
    "D3PMConfig",
    "keep_prob",
    "beta",
    "to_discrete_time",
    "q_sample",
    "posterior_logits",
    "d3pm_loss",
]

MASK_CLASS = NUM_TYPE_CLASSES - 1  # 100
_EPS = 1e-20  # MatterGen's log floor


@dataclasses.dataclass(frozen=True, kw_only=True)
class D3PMConfig:
    """Absorbing D3PM settings.

    Attributes:
        num_steps: T, the number of discrete levels (1000 in MatterGen).
        hybrid_coeff: lambda of the hybrid loss (KL + lambda * CE(x_0)), 0.01 in MatterGen.
    """

    num_steps: int = 1000
    hybrid_coeff: float = 0.01

    def __post_init__(self):
        if not 2 <= self.num_steps <= 100_000:
            raise ValueError(f"num_steps: expected 2..100000, got {self.num_steps}")
        if not self.hybrid_coeff >= 0:
            raise ValueError(f"hybrid_coeff: expected >= 0, got {self.hybrid_coeff}")


def keep_prob(k: Array, num_steps: int) -> Array:
    """p_k = 1 - k / T, the probability that x_k still equals x_0 (p_T = 0 exactly)."""
    return jnp.clip(1.0 - jnp.asarray(k, jnp.float32) / num_steps, 0.0, 1.0)


def beta(k: Array, num_steps: int) -> Array:
    """beta_k = 1 / (T - k), the probability of masking at the step k -> k + 1."""
    return 1.0 / (num_steps - jnp.asarray(k, jnp.float32))


def to_discrete_time(t: Array, num_steps: int) -> Array:
    """k = floor(t * (T - 1)) as int32, in [0, T - 1] for t in [0, 1]."""
    return jnp.clip(jnp.floor(t * (num_steps - 1)), 0, num_steps - 1).astype(jnp.int32)


def q_sample(key: PRNGKey, x0: Array, level: Array, num_steps: int) -> Array:
    """Sample x_level ~ q(x_level | x_0): keep x_0 with probability p_level, else mask.

    Args:
        key: PRNG key.
        x0: `[N]` int classes.
        level: `[N]` int corruption level in [0, T].
        num_steps: T.

    Returns:
        `[N]` int32 classes.
    """
    keep = jax.random.uniform(key, x0.shape) < keep_prob(level, num_steps)
    return jnp.where(keep, x0, MASK_CLASS).astype(jnp.int32)


def posterior_logits(x0_probs: Array, x_next: Array, k: Array, num_steps: int) -> Array:
    """Logits of q(x_k | x_{k+1}, x_0) with x_0 given as probabilities (predict-x0 form).

    log(q_k(. | x_0) + eps) + log(q(x_{k+1} | x_k = .) + eps) with q_k(. | x_0) = p_k x0_probs +
    (1 - p_k) e_mask and the one-step transition into x_{k+1}: (1 - beta_k) from x_{k+1} itself if
    it is not the mask; beta_k from any non-mask class and 1 from the mask if it is.

    Args:
        x0_probs: `[N, Z]` probabilities of x_0 (Z = 101; one-hot for the true posterior).
        x_next: `[N]` int classes x_{k+1}.
        k: `[N]` int discrete time.
        num_steps: T.

    Returns:
        `[N, Z]` unnormalised logits.
    """
    c = x0_probs.shape[-1]
    p_k = keep_prob(k, num_steps)[:, None]
    b_k = beta(k, num_steps)[:, None]
    onehot_mask = jax.nn.one_hot(MASK_CLASS, c)
    q_k = p_k * x0_probs + (1.0 - p_k) * onehot_mask
    is_mask = (x_next == MASK_CLASS)[:, None]
    trans_from_mask_target = jnp.where(onehot_mask > 0, 1.0, b_k)  # x_{k+1} = mask
    trans_to_class = (1.0 - b_k) * jax.nn.one_hot(x_next, c)  # x_{k+1} = c, not the mask
    trans = jnp.where(is_mask, trans_from_mask_target, trans_to_class)
    return jnp.log(q_k + _EPS) + jnp.log(trans + _EPS)


def d3pm_loss(
    logits: Array, x0: Array, x_next: Array, k: Array, config: D3PMConfig
) -> tuple[Array, Array]:
    """Per-atom hybrid loss: KL(q(x_k|x_{k+1},x_0) || p(x_k|x_{k+1})) (CE at k = 0) + lambda CE.

    Args:
        logits: `[N, Z]` network logits of p(x_0 | x_{k+1}) (raw, no element mask).
        x0: `[N]` int true classes.
        x_next: `[N]` int corrupted classes at level k + 1.
        k: `[N]` int discrete time.
        config: D3PM settings.

    Returns:
        (`[N]` total per-atom loss, `[N]` the lambda-free cross-entropy term).
    """
    c = logits.shape[-1]
    t_steps = config.num_steps
    q_logits = posterior_logits(jax.nn.one_hot(x0, c), x_next, k, t_steps)
    p_logits = posterior_logits(jax.nn.softmax(logits, axis=-1), x_next, k, t_steps)
    log_q = jax.nn.log_softmax(q_logits, axis=-1)
    log_p = jax.nn.log_softmax(p_logits, axis=-1)
    kl = jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)
    nll_at_zero = -jnp.take_along_axis(log_p, x0[:, None], axis=-1)[:, 0]
    vb = jnp.where(k == 0, nll_at_zero, kl)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), x0[:, None], axis=-1)[:, 0]
    return vb + config.hybrid_coeff * ce, ce
