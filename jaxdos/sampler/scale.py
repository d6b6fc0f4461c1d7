"""The empirical distribution of the scale K the sampler is conditioned on (Section 4.1).

A DOS is generated as tokens (DOS / K on 1025 levels) given K, so K itself is drawn first: from the
training set's K values, optionally only from training records whose band gap is near a band-gap
target (a 2 eV insulator has a different typical K than a metal). Draws are per example, keyed by
`fold_in(key, example_index)` like the sampler, so they do not depend on how a batch is split.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ScaleDistribution", "draw_scale"]


class ScaleDistribution(NamedTuple):
    """Training-set K values with the band gap of the same record.

    Fields:
        scale: `[M]` float32 K > 0.
        band_gap: `[M]` float32 E_BG in eV (Algorithm 1), aligned with `scale`.
    """

    scale: np.ndarray
    band_gap: np.ndarray

    @classmethod
    def from_arrays(cls, scale, band_gap, *, max_size: int = 8192, seed: int = 0):
        """Validated, optionally subsampled (to keep checkpoints small) distribution."""
        scale = np.asarray(scale, np.float32).reshape(-1)
        band_gap = np.asarray(band_gap, np.float32).reshape(-1)
        if scale.size == 0 or scale.shape != band_gap.shape:
            raise ValueError(
                f"scale/band_gap: expected equal non-empty [M], got {scale.shape}, {band_gap.shape}"
            )
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("scale: expected finite K > 0")
        if not np.all(np.isfinite(band_gap)):
            raise ValueError("band_gap: expected finite values")
        if scale.size > max_size:
            idx = np.sort(np.random.default_rng(seed).choice(scale.size, max_size, replace=False))
            scale, band_gap = scale[idx], band_gap[idx]
        return cls(scale, band_gap)


def _weights(dist: ScaleDistribution, band_gap_target, min_matches: int):
    """Uniform weights over records within ±10 % of the gap target (±0.1 eV for a zero target);
    the `min_matches` nearest records if fewer match."""
    bg = np.asarray(dist.band_gap)
    if band_gap_target is None:
        return np.full(bg.shape, 1.0 / bg.size)
    target = float(band_gap_target)
    if not math.isfinite(target) or target < 0:
        raise ValueError(f"band_gap_target: expected a finite value >= 0 eV, got {band_gap_target}")
    tol = 0.1 * target if target > 0 else 0.1
    dist_to = np.abs(bg - target)
    hit = dist_to <= tol
    if hit.sum() < min_matches:
        hit = np.zeros_like(hit)
        hit[np.argsort(dist_to, kind="stable")[:min_matches]] = True
    return hit / hit.sum()


def draw_scale(
    dist: ScaleDistribution, key, example_index, *, band_gap_target=None, min_matches: int = 16
):
    """K `[B]` for examples `example_index` `[B]`, each drawn with `fold_in(key, index)`.

    Args:
        dist: the training-set distribution.
        key: PRNG key (use a different one from the sampler's, e.g. `fold_in(seed_key, 1)`).
        example_index: `[B]` int global example indices.
        band_gap_target: optional E_BG target in eV; K is then drawn from records near it.
        min_matches: fallback pool size when fewer records lie within the tolerance.

    Returns:
        `[B]` float32 K values (each one a training-set value).
    """
    w = jnp.asarray(_weights(dist, band_gap_target, min_matches), jnp.float32)
    values = jnp.asarray(dist.scale, jnp.float32)
    logits = jnp.log(w)
    idx = jnp.asarray(example_index, jnp.int32)
    pick = jax.vmap(lambda i: jax.random.categorical(jax.random.fold_in(key, i), logits))(idx)
    return values[pick]
