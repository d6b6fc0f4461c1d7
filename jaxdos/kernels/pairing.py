"""Matched vs random pairing of conditioning DOS and the DOS of what was generated from them.

Section 5.3 / Table 3 of the paper: a generator that follows its condition gives spectra closer to
their own conditioning DOS (matched pairs) than to another one (a random pairing: one fixed
derangement of the same generated spectra). Host-side numpy over the `metrics` and `properties`
kernels; every value is a `stats.Estimate` (mean over pairs, bootstrap interval, n).
"""

import numpy as np

from jaxdos.kernels import stats
from jaxdos.kernels.metrics import compare
from jaxdos.kernels.properties import all_properties

__all__ = ["METRIC_ROWS", "derangement", "conditioning_estimates"]

METRIC_ROWS = ("cosine", "pearson", "jensen_shannon", "band_gap", "dos_at_fermi", "integrated_dos")


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (sigma(i) != i), n >= 2."""
    if n < 2:
        raise ValueError(f"n: a derangement needs n >= 2, got {n}")
    while True:
        perm = rng.permutation(n)
        if np.all(perm != np.arange(n)):
            return perm


def conditioning_estimates(cond: np.ndarray, gen: np.ndarray, seed: int = 0) -> dict:
    """Matched pairs (cond_i, gen_i) vs the random-pairing baseline, `[M, 256]` each.

    Returns {metric: (matched, random pairing)} `stats.Estimate`s: the mean over pairs with its
    bootstrap interval and n, for cosine, Pearson, JS divergence and the absolute error of E_BG,
    DOS(E_F), N(E_F) between conditioning DOS and generated crystals' DOS (a mean absolute error).
    The random pairing is one fixed derangement; its interval resamples pairs, not derangements.
    NaN estimates (n = M) when M < 2: no mismatched pair exists.
    """
    if len(cond) < 2:
        na = stats.Estimate(float("nan"), float("nan"), float("nan"), len(cond))
        return {k: (na, na) for k in METRIC_ROWS}
    perm = derangement(len(cond), np.random.default_rng(seed))
    out = {}
    for other in (gen, gen[perm]):  # matched pairs, then the random-pairing baseline
        m = compare(cond, other)
        pc = all_properties(cond)
        po = all_properties(other)
        for k in ("cosine", "pearson", "jensen_shannon"):
            out.setdefault(k, []).append(stats.mean(m[k], seed=seed))
        for k in ("band_gap", "dos_at_fermi", "integrated_dos"):
            err = np.abs(np.asarray(pc[k] - po[k]))
            out.setdefault(k, []).append(stats.mean(err, seed=seed))
    return {k: tuple(v) for k, v in out.items()}
