"""The empirical distribution of the scale K the sampler is conditioned on (Section 4.1).

A DOS is generated as tokens (DOS / K on 1025 levels) given K, so K itself is drawn first: from the
training set's K values, optionally only from training records whose band gap is near a band-gap
target (a 2 eV insulator has a different typical K than a metal). This module holds only the
distribution; the one place K is drawn is the rejection loop (`rejection.run_rejection`), per
example and keyed by the example index, with the band-gap restriction as log-weights from
`proposal.conditioned_scale_logits` (tolerance band: `kernels.properties.tolerance`).
"""

from typing import NamedTuple

import numpy as np

__all__ = ["ScaleDistribution"]


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
