"""VP diffusion of the (symmetric) lattice towards a density-scaled cube.

See docs/spec/mattergen.md §1.2, §4.2.

MatterGen's `LatticeVPSDE`: beta(t) = beta_min + (beta_max - beta_min) t, alpha(t) =
exp(-(beta_max - beta_min) t^2 / 4 - beta_min t / 2). The limit is the cube of volume N / rho,
mu = (N / rho)^(1/3) I, with per-entry variance v = c N^(2/3) (c = 0.25, limit std 0.5 N^(1/3) A).
Marginal: mean = alpha x_0 + (1 - alpha) mu, std = sqrt((1 - alpha^2) v). All noise is symmetrised
with the variance preserved (off-diagonal (e_ij + e_ji) / sqrt 2). Lattices are rows = vectors,
symmetrised by the polar decomposition L -> W S W^T = (L L^T)^(1/2).

`time_power` p != 1 (not MatterGen; a lever of issue 12) runs that process on the warped clock
t^p: alpha(t) = alpha_MatterGen(t^p). With p = 3 the cell is mostly settled (alpha > 0.9) below
t = 0.5, where the coordinate noise still chooses the sites, so the coordinate score is learned
through a nearly clean cell. The sampler and the loss see the process only through `alpha` and
`marginal`, so nothing else changes.
"""

import dataclasses

import jax
import jax.numpy as jnp

from jaxdos.typing import Array, PRNGKey

__all__ = [
    "LatticeConfig",
    "alpha",
    "noise_fraction",
    "limit_mean",
    "limit_var",
    "marginal",
    "symmetric_noise",
    "forward_sample",
    "prior_sample",
    "polar_symmetrize",
    "score_matching_loss",
]

TIME_POWER_RANGE = (0.25, 8.0)  # allowed p of the warped clock (LatticeConfig.time_power)
AVERAGE_DENSITY = 0.05771451654022283  # atoms / A^3, alex_mp_20 (docs/spec/mattergen.md §1.3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LatticeConfig:
    """Lattice VP settings (MatterGen's released values).

    Attributes:
        beta_min: beta(0).
        beta_max: beta(1).
        limit_density: rho in atoms / A^3; the limit cube has volume N / rho.
        limit_var_scaling_constant: c in v = c N^(2/3).
        time_power: p of the warped clock t^p (1 = MatterGen; module docstring).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    limit_density: float = AVERAGE_DENSITY
    limit_var_scaling_constant: float = 0.25
    time_power: float = 1.0

    def __post_init__(self):
        if not 0 < self.beta_min < self.beta_max:
            raise ValueError(
                f"beta_min/beta_max: need 0 < min < max, got {self.beta_min}, {self.beta_max}"
            )
        lo, hi = TIME_POWER_RANGE
        if not lo <= self.time_power <= hi:
            raise ValueError(f"time_power: expected {lo}..{hi}, got {self.time_power}")
        if not self.limit_density > 0:
            raise ValueError(f"limit_density: expected > 0, got {self.limit_density}")
        if not self.limit_var_scaling_constant > 0:
            raise ValueError(
                f"limit_var_scaling_constant: expected > 0, got {self.limit_var_scaling_constant}"
            )


def _log_alpha(t: Array, config: LatticeConfig) -> Array:
    db = config.beta_max - config.beta_min
    if config.time_power != 1.0:
        t = t**config.time_power
    return -0.25 * db * t**2 - 0.5 * config.beta_min * t


def alpha(t: Array, config: LatticeConfig) -> Array:
    """alpha(t) = exp(-int_0^t beta / 2), the signal coefficient of the marginal."""
    return jnp.exp(_log_alpha(t, config))


def noise_fraction(t: Array, config: LatticeConfig) -> Array:
    """1 - alpha(t)^2, the marginal's share of the limit variance.

    MatterGen's arithmetic at time_power 1 (parity); on a warped clock alpha is within float32
    rounding of 1 at small t, so there it is -expm1(2 log alpha), which keeps the std positive.
    """
    if config.time_power == 1.0:
        return 1 - alpha(t, config) ** 2
    return -jnp.expm1(2 * _log_alpha(t, config))


def _n(num_atoms: Array) -> Array:
    return jnp.maximum(jnp.asarray(num_atoms, jnp.float32), 1.0)


def limit_mean(num_atoms: Array, config: LatticeConfig) -> Array:
    """mu = (N / rho)^(1/3) I, `[G]` -> `[G, 3, 3]`."""
    side = jnp.cbrt(_n(num_atoms) / config.limit_density)
    return side[:, None, None] * jnp.eye(3)


def limit_var(num_atoms: Array, config: LatticeConfig) -> Array:
    """v = c N^(2/3) per lattice entry, `[G]`."""
    return config.limit_var_scaling_constant * jnp.cbrt(_n(num_atoms)) ** 2


def marginal(x0: Array, t: Array, num_atoms: Array, config: LatticeConfig) -> tuple[Array, Array]:
    """Mean `[G, 3, 3]` and std `[G]` of q(L_t | L_0)."""
    a = alpha(t, config)
    mean = a[:, None, None] * x0 + (1 - a)[:, None, None] * limit_mean(num_atoms, config)
    std = jnp.sqrt(noise_fraction(t, config) * limit_var(num_atoms, config))
    return mean, std


def symmetric_noise(key: PRNGKey, shape: tuple[int, ...]) -> Array:
    """Symmetric standard noise `[..., 3, 3]`: every entry (diagonal or not) has unit variance."""
    e = jax.random.normal(key, shape)
    off = (e + jnp.swapaxes(e, -1, -2)) / jnp.sqrt(2.0)
    return jnp.where(jnp.eye(3, dtype=bool), e, off)


def forward_sample(
    key: PRNGKey, x0: Array, t: Array, num_atoms: Array, config: LatticeConfig
) -> tuple[Array, Array, Array]:
    """L_t = mean + std * sym(eps). Returns (`[G,3,3]` L_t, `[G,3,3]` mean, `[G]` std)."""
    mean, std = marginal(x0, t, num_atoms, config)
    eps = symmetric_noise(key, x0.shape)
    return mean + std[:, None, None] * eps, mean, std


def prior_sample(key: PRNGKey, num_atoms: Array, config: LatticeConfig) -> Array:
    """L_1 ~ mu + sqrt(v) sym(eps), `[G, 3, 3]`."""
    eps = symmetric_noise(key, (num_atoms.shape[0], 3, 3))
    return (
        limit_mean(num_atoms, config) + jnp.sqrt(limit_var(num_atoms, config))[:, None, None] * eps
    )


def polar_symmetrize(lattice: Array) -> Array:
    """Symmetric polar factor (L L^T)^(1/2) = W S W^T from the SVD L = W S V^T, `[..., 3, 3]`."""
    w, s, _ = jnp.linalg.svd(lattice)
    return jnp.einsum("...ij,...j,...kj->...ik", w, s, w)


def score_matching_loss(pred: Array, x_t: Array, mean: Array, std: Array) -> Array:
    """Per-crystal DSM loss: mean over 9 entries of (pred + (L_t - mean) / std)^2, `[G]`."""
    target = -(x_t - mean) / std[:, None, None]
    return jnp.mean((pred - target) ** 2, axis=(-1, -2))
