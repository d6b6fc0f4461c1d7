"""Wrapped-normal VE diffusion of fractional coordinates (docs/spec/mattergen.md §4.1).

MatterGen's `NumAtomsVarianceAdjustedWrappedVESDE`: zero drift, sigma(t) = sigma_min *
(sigma_max / sigma_min)^t / N^(1/3) with N the crystal's number of atoms (denser cells need
less fractional noise), x_t = (x_0 + sigma(t) eps) mod 1. The network predicts "score x std" in
fractional units; the target is sigma * grad log p_wrapped(x_t | x_0), evaluated by a truncated
sum over integer images k in {-n..n}^3 (n = `num_images` = 3 in MatterGen). The isotropic wrapped
normal factorises over the 3 axes, so the 7^3-term softmax of docs/spec/mattergen.md §4.1 equals the
per-axis 7-term one here.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxdos.typing import Array, PRNGKey

__all__ = [
    "WrappedNormalConfig",
    "sigma",
    "diffusion_coeff",
    "wrapped_normal_score",
    "wrapped_normal_log_density",
    "forward_sample",
    "prior_sample",
    "score_matching_loss",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class WrappedNormalConfig:
    """Fractional-coordinate VE settings.

    Attributes:
        sigma_min: noise at t = 0 for a 1-atom cell (MatterGen code default 0.01).
        sigma_max: noise at t = 1 for a 1-atom cell (5.0).
        num_images: n, images per direction in the score's truncated sum (3).
    """

    sigma_min: float = 0.01
    sigma_max: float = 5.0
    num_images: int = 3

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"sigma_min/sigma_max: need 0 < sigma_min < sigma_max, got "
                f"{self.sigma_min}, {self.sigma_max}"
            )
        if not 1 <= self.num_images <= 50:
            raise ValueError(f"num_images: expected 1..50, got {self.num_images}")


def sigma(t: Array, num_atoms: Array, config: WrappedNormalConfig) -> Array:
    """N-adjusted noise scale sigma(t) / N^(1/3), broadcast over `t` and `num_atoms` (N >= 1)."""
    n = jnp.maximum(jnp.asarray(num_atoms, jnp.float32), 1.0)
    s = config.sigma_min * (config.sigma_max / config.sigma_min) ** t
    return s / jnp.cbrt(n)


def diffusion_coeff(t: Array, num_atoms: Array, config: WrappedNormalConfig) -> Array:
    """g(t) = sigma(t) sqrt(2 ln(sigma_max / sigma_min)), so d(sigma^2)/dt = g^2."""
    return sigma(t, num_atoms, config) * math.sqrt(
        2 * math.log(config.sigma_max / config.sigma_min)
    )


def _image_offsets(num_images: int) -> Array:
    return jnp.arange(-num_images, num_images + 1, dtype=jnp.float32)


def wrapped_normal_score(d: Array, sig: Array, num_images: int = 3) -> Array:
    """grad_x log p_wrapped(x) at displacement d = x_t - x_0 (not divided by anything else).

    score = -sum_k w_k (d + k) / sigma^2 with w = softmax_k(-(d + k)^2 / (2 sigma^2)), per axis.

    Args:
        d: `[..., 3]` displacements (any real values; MatterGen passes x_t - x_0 in (-1, 1)).
        sig: noise scale broadcastable to `d[..., :1]`.
        num_images: n, images per direction.

    Returns:
        `[..., 3]` score.
    """
    dk = d[..., None] + _image_offsets(num_images)  # [..., 3, 2K+1]
    s2 = jnp.asarray(sig)[..., None] ** 2
    w = jax.nn.softmax(-(dk**2) / (2 * s2), axis=-1)
    return -jnp.sum(w * dk, axis=-1) / s2[..., 0]


def wrapped_normal_log_density(d: Array, sig: Array, num_images: int = 3) -> Array:
    """log p_wrapped at displacement d, `[..., 3]` -> `[...]` (normalised on the unit torus)."""
    dk = d[..., None] + _image_offsets(num_images)
    s2 = jnp.asarray(sig)[..., None] ** 2
    log_terms = -(dk**2) / (2 * s2) - 0.5 * jnp.log(2 * jnp.pi * s2)
    return jnp.sum(jax.nn.logsumexp(log_terms, axis=-1), axis=-1)


def forward_sample(key: PRNGKey, x0: Array, sig: Array) -> tuple[Array, Array]:
    """x_t = (x_0 + sigma eps) mod 1.

    Args:
        key: PRNG key.
        x0: `[N, 3]` fractional coordinates.
        sig: `[N]` per-atom noise scale.

    Returns:
        (`[N, 3]` x_t in [0, 1), `[N, 3]` eps).
    """
    eps = jax.random.normal(key, x0.shape, x0.dtype)
    return jnp.mod(x0 + sig[:, None] * eps, 1.0), eps


def prior_sample(key: PRNGKey, num_atoms_per_atom: Array, config: WrappedNormalConfig) -> Array:
    """x_1 = (sigma(1) eps) mod 1, `[N, 3]`, with sigma(1) = sigma_max / N^(1/3) per atom."""
    sig = sigma(jnp.float32(1.0), num_atoms_per_atom, config)
    eps = jax.random.normal(key, (num_atoms_per_atom.shape[0], 3))
    return jnp.mod(sig[:, None] * eps, 1.0)


def score_matching_loss(
    pred: Array, x_t: Array, x0: Array, sig: Array, config: WrappedNormalConfig
) -> Array:
    """Per-atom loss: mean over the 3 axes of (sigma * score_wrapped - pred)^2, `[N]`.

    Args:
        pred: `[N, 3]` network "score x std".
        x_t: `[N, 3]` noisy coordinates.
        x0: `[N, 3]` clean coordinates.
        sig: `[N]` per-atom noise scale.
        config: VE settings.
    """
    target = sig[:, None] * wrapped_normal_score(x_t - x0, sig[:, None], config.num_images)
    return jnp.mean((target - pred) ** 2, axis=-1)
