"""Guidance variants for the DOSSampler (types, not strings) and the guided update, eq. (1)/(8).

    ℓ' = ℓ - ∇_ℓ Σ_p γ_p ((r_φ(softmax(ℓ)·E, log K)_p - y*_p) / σ_p)²

The residual of property p is measured in units of its training-set standard deviation σ_p, so a
single γ scale means the same thing for E_BG (eV), DOS(E_F) (states/eV/atom) and N(E_F)
(states/atom); this is the paper's "residual-scaled γ". Multi-property guidance sums the
per-property terms. The gradient is taken by `jax.grad` of the batch sum: examples are
independent, so that is each example's own gradient.
"""

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxdos.guidance import NoGuidance  # shared with stage 2: one meaning, one type
from jaxdos.kernels.properties import PROPERTY_NAMES

__all__ = ["NoGuidance", "ClassifierGuidance", "Guidance", "guided_logits", "property_index"]


def property_index(prop) -> int:
    """Index into `PROPERTY_NAMES` of a property given by name or index; ValueError otherwise."""
    if isinstance(prop, str):
        if prop not in PROPERTY_NAMES:
            raise ValueError(f"property: unknown name {prop!r}; expected one of {PROPERTY_NAMES}")
        return PROPERTY_NAMES.index(prop)
    if isinstance(prop, int) and not isinstance(prop, bool) and 0 <= prop < len(PROPERTY_NAMES):
        return prop
    raise ValueError(
        f"property: expected a name in {PROPERTY_NAMES} or an index in [0, {len(PROPERTY_NAMES)}),"
        f" got {prop!r}"
    )


@dataclass(frozen=True)
class ClassifierGuidance:
    """Regressor guidance toward property targets (Algorithm 2, line 4).

    Fields:
        targets: `((property, y*), ...)`, property a name from `PROPERTY_NAMES` or its index;
            y* in the property's physical unit (eV, states/eV/atom, states/atom).
        gammas: one γ >= 0 per target (guidance strength in units of squared standardised residual).
    """

    targets: tuple
    gammas: tuple

    def __post_init__(self):
        targets = tuple(self.targets)
        gammas = tuple(float(g) for g in self.gammas)
        if not targets:
            raise ValueError("targets: expected at least one (property, value) pair")
        if len(gammas) != len(targets):
            raise ValueError(f"gammas: expected {len(targets)} values, got {gammas}")
        norm = []
        for item in targets:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ValueError(f"targets: expected (property, value) pairs, got {item!r}")
            idx, value = property_index(item[0]), float(item[1])
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"targets: {PROPERTY_NAMES[idx]} target must be finite and >= 0, got {value}"
                )
            norm.append((idx, value))
        if len({i for i, _ in norm}) != len(norm):
            raise ValueError(f"targets: each property at most once, got {targets}")
        if any(not math.isfinite(g) or g < 0 for g in gammas):
            raise ValueError(f"gammas: expected finite values >= 0, got {gammas}")
        # Normalised to (int, float) pairs so equal guidance hashes equal (a jit static argument).
        object.__setattr__(self, "targets", tuple(norm))
        object.__setattr__(self, "gammas", gammas)

    @property
    def indices(self) -> tuple:
        return tuple(i for i, _ in self.targets)

    @property
    def values(self) -> tuple:
        return tuple(v for _, v in self.targets)


Guidance = NoGuidance | ClassifierGuidance


def guided_logits(logp, guidance: Guidance, predict_fn, log_scale, prop_mean, prop_std):
    """Apply eq. (1) to log-probabilities `logp` `[B, L, V']`.

    Args:
        logp: `[B, L, V']` float32 log-probabilities from the score network (carry-over applied).
        guidance: the variant; `NoGuidance()` returns `logp` unchanged.
        predict_fn: `(probs [B, L, V'], log_scale [B]) -> [B, P]` standardised property predictions
            of r_φ (closed over its params, the embedding matrix and the property statistics).
        log_scale: `[B]` log K.
        prop_mean, prop_std: `[P]` training-set statistics that standardise the properties.

    Returns:
        `(logits [B, L, V'], residual [B, P_targets])`: guided logits and standardised residuals.
    """
    if isinstance(guidance, NoGuidance):
        return logp, jnp.zeros(logp.shape[:1] + (0,), logp.dtype)
    if not isinstance(guidance, ClassifierGuidance):
        raise TypeError(f"guidance: unsupported variant {type(guidance).__name__}")
    idx = jnp.asarray(guidance.indices)
    gamma = jnp.asarray(guidance.gammas, jnp.float32)

    def energy(ell, target_std):
        pred = predict_fn(jax.nn.softmax(ell, axis=-1), log_scale)[:, idx]
        residual = pred - target_std
        return jnp.sum(gamma * residual**2), residual

    target_std = (jnp.asarray(guidance.values, jnp.float32) - prop_mean[idx]) / prop_std[idx]
    grad, residual = jax.grad(energy, has_aux=True)(logp, target_std)
    return logp - grad, residual
