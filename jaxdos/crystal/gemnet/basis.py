"""Parameter-free bases: envelope, Gaussian radial basis, real Y_l0, noise-level encoding, and the
periodic Fourier features of fractional offsets (jaxdos levers, not MatterGen's).

MatterGen values (docs/spec/mattergen.md §2.3): distances scaled by 1/cutoff; envelope exponent
p = 5; 128 Gaussians with centres k/127 on [0, 1] and coefficient -0.5 * 127^2; Y_l0 for
l = 0..6.
"""

import math

import jax.numpy as jnp
import numpy as np

from jaxdos.typing import Array

__all__ = [
    "polynomial_envelope",
    "radial_basis",
    "spherical_basis",
    "noise_level_encoding",
    "noise_level_div_term",
    "periodic_fourier",
]


def polynomial_envelope(x: Array, exponent: int = 5) -> Array:
    """1 + a x^p + b x^(p+1) + c x^(p+2) for x < 1, else 0 (smooth cut-off), shape of `x`."""
    p = exponent
    a = -(p + 1) * (p + 2) / 2
    b = p * (p + 2)
    c = -p * (p + 1) / 2
    env = 1.0 + a * x**p + b * x ** (p + 1) + c * x ** (p + 2)
    return jnp.where(x < 1.0, env, 0.0)


def radial_basis(dist: Array, cutoff: float, num_radial: int, exponent: int = 5) -> Array:
    """Enveloped Gaussian smearing of `dist` `[E]` -> `[E, num_radial]` (PyG GaussianSmearing)."""
    x = dist / cutoff
    offset = jnp.linspace(0.0, 1.0, num_radial)
    coeff = -0.5 / float(1.0 / (num_radial - 1)) ** 2
    rbf = jnp.exp(coeff * (x[:, None] - offset[None, :]) ** 2)
    return polynomial_envelope(x, exponent)[:, None] * rbf


def _legendre(cos: Array, num_spherical: int) -> list[Array]:
    """P_0..P_{L-1}(cos) by the Bonnet recurrence."""
    ps = [jnp.ones_like(cos), cos]
    for l in range(1, num_spherical - 1):
        ps.append(((2 * l + 1) * cos * ps[l] - l * ps[l - 1]) / (l + 1))
    return ps[:num_spherical]


def spherical_basis(cos: Array, num_spherical: int) -> Array:
    """Real zonal harmonics sqrt((2l+1)/4pi) P_l(cos), `[...] -> [..., num_spherical]`."""
    ps = _legendre(cos, num_spherical)
    norms = [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)]
    return jnp.stack([n * p for n, p in zip(norms, ps, strict=True)], axis=-1)


def noise_level_div_term(dim: int) -> np.ndarray:
    """MatterGen's `div_term` buffer: exp(-2k ln(10000) / dim), k = 0..dim/2-1."""
    return np.exp(np.arange(0, dim, 2, dtype=np.float64) * (-math.log(10000.0) / dim)).astype(
        np.float32
    )


def noise_level_encoding(t: Array, dim: int) -> Array:
    """Sinusoidal encoding `[G] -> [G, dim]`, interleaved: [:, 2k] = sin, [:, 2k+1] = cos."""
    arg = t[:, None] * jnp.asarray(noise_level_div_term(dim))[None, :]
    return jnp.stack([jnp.sin(arg), jnp.cos(arg)], axis=-1).reshape(t.shape[0], dim)


def periodic_fourier(df: Array, num_frequencies: int) -> Array:
    """`[..., 3]` fractional offsets -> `[..., 6 K]`: sin / cos(2 pi k df), k = 1..K, per axis.

    Periodic in each offset, so every periodic image of a pair gives the same features.
    """
    k = jnp.arange(1, num_frequencies + 1, dtype=df.dtype)
    phase = 2 * jnp.pi * df[..., None] * k
    return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)], axis=-1).reshape(*df.shape[:-1], -1)
