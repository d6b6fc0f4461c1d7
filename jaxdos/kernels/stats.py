"""95 % intervals, with their n, for every rate, mean, quantile and rate ratio the tables print.

Host-side numpy (never traced). Four intervals, one estimate type, one formatter:

- `wilson(k, n)`: Wilson score interval of a binomial rate k / n. Unlike the Wald interval it keeps
  its coverage at the small n and at the k = 0 or k = n the screens produce (0 of 16 TCM hits).
- `bootstrap_mean(x)`: percentile bootstrap of a mean (MAEs, mean cosine, ...), seeded so a rerun
  or a resumed run writes the same bytes.
- `ratio_of_rates(k1, n1, k0, n0)`: the log-ratio (Katz) interval of (k1 / n1) / (k0 / n0) for two
  independent binomials, e.g. the TCM-yield "lift" of conditioned over unconditional generation:
  exp(log r +- z s), s^2 = 1/k1 - 1/n1 + 1/k0 - 1/n0 (what scipy's `relative_risk` computes).
  Katz is undefined at a zero count; there the zero end is exact (lo = 0 if k1 = 0: the data allow
  any lift down to 0; hi = inf if k0 = 0: no finite lift is ruled out) and the other end uses 0.5
  in place of the zero count (the Haldane-Anscombe correction), so it stays finite and conservative.
- `quantile(x, q)`: a sample quantile with the distribution-free order-statistic interval (scipy's
  `quantile_test`); an end the data cannot bound at this n (too few points beyond the quantile) is
  -inf or inf.
- `rate`, `mean`, `rate_ratio` wrap the three into an `Estimate(value, lo, hi, n)`; `fmt` renders
  one as `9.4 % [3.2, 24.2] (n=32)` so all tables look alike, and `n/a (n=0)` when nothing was
  measured; `Estimate.ci()` is the `{"lo", "hi", "n"}` dict written beside a value in summary JSON.
"""

import math
from typing import NamedTuple

import numpy as np
import scipy.stats

__all__ = [
    "Z95",
    "Estimate",
    "wilson",
    "bootstrap_mean",
    "ratio_of_rates",
    "rate",
    "mean",
    "rate_ratio",
    "quantile",
    "fmt",
]

Z95 = 1.959963984540054  # standard normal quantile 0.975: two-sided 95 %
RESAMPLES = 1000
_NAN = float("nan")


class Estimate(NamedTuple):
    """A point value with its 95 % interval [lo, hi] and its sample size n.

    n is an int, or (n1, n0) for a ratio of two rates. value, lo, hi are NaN when n is 0.
    """

    value: float
    lo: float
    hi: float
    n: int | tuple[int, int]

    def ci(self) -> dict:
        """The interval and n as a JSON-ready dict (written beside the existing value key)."""
        n = list(self.n) if isinstance(self.n, tuple) else self.n
        return {"lo": self.lo, "hi": self.hi, "n": n}


def wilson(k, n, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the rate k / n; (nan, nan) for n = 0."""
    k, n = int(k), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"k: expected 0 <= k <= n = {n}, got {k}")
    if n == 0:
        return _NAN, _NAN
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At k = 0 (k = n) the lower (upper) end is exactly 0 (1); rounding would miss it.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def bootstrap_mean(
    x, *, resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `x` with NaN entries dropped (as `np.nanmean`
    does); (nan, nan) when nothing is left."""
    x = np.asarray(x, np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return _NAN, _NAN
    idx = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def ratio_of_rates(k1, n1, k0, n0, z: float = Z95) -> tuple[float, float]:
    """Log-ratio (Katz) interval of (k1 / n1) / (k0 / n0); zero counts as in the module docstring.

    (nan, nan) if either n is 0 or both k are 0 (nothing is known about the ratio).
    """
    k1, n1, k0, n0 = map(int, (k1, n1, k0, n0))
    for k, n, name in ((k1, n1, "k1"), (k0, n0, "k0")):
        if not 0 <= k <= n:
            raise ValueError(f"{name}: expected 0 <= {name} <= n = {n}, got {k}")
    if n1 == 0 or n0 == 0 or k1 == k0 == 0:
        return _NAN, _NAN
    a, c = max(k1, 0.5), max(k0, 0.5)
    log_r = math.log((a / n1) / (c / n0))
    s = math.sqrt(max(1 / a - 1 / n1 + 1 / c - 1 / n0, 0.0))
    lo = 0.0 if k1 == 0 else math.exp(log_r - z * s)
    hi = math.inf if k0 == 0 else math.exp(log_r + z * s)
    return lo, hi


def rate(k, n) -> Estimate:
    """k of n, with its Wilson interval."""
    return Estimate(int(k) / int(n) if int(n) else _NAN, *wilson(k, n), int(n))


def mean(x, *, seed: int = 0) -> Estimate:
    """`np.nanmean(x)` (in x's own dtype, as the tables always computed it) with its bootstrap
    interval; n counts the entries that are not NaN."""
    x = np.asarray(x).ravel()
    kept = x[~np.isnan(x)]
    value = float(np.nanmean(x)) if kept.size else _NAN
    return Estimate(value, *bootstrap_mean(kept, seed=seed), int(kept.size))


def rate_ratio(k1, n1, k0, n0) -> Estimate:
    """(k1 / n1) / (k0 / n0) with its log-ratio interval; inf when k0 = 0 < k1."""
    k1, n1, k0, n0 = map(int, (k1, n1, k0, n0))
    if n1 == 0 or n0 == 0 or k1 == k0 == 0:
        value = _NAN
    else:
        value = math.inf if k0 == 0 else (k1 / n1) / (k0 / n0)
    return Estimate(value, *ratio_of_rates(k1, n1, k0, n0), (n1, n0))


def quantile(x, q: float, *, level: float = 0.95) -> Estimate:
    """`np.quantile(x, q)` (NaN dropped) with its order-statistic interval; n counts the entries.

    The interval [x_(r), x_(s)] covers the population q-quantile with probability >= `level`
    whatever the distribution (binomial order statistics); an end that no order statistic reaches
    is -inf (lower) or inf (upper).
    """
    if not 0 < q < 1:
        raise ValueError(f"q: expected 0 < q < 1, got {q}")
    x = np.asarray(x, np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Estimate(_NAN, _NAN, _NAN, 0)
    ci = scipy.stats.quantile_test(x, q=float(np.quantile(x, q)), p=q).confidence_interval(level)
    lo = -math.inf if math.isnan(ci.low) else float(ci.low)
    hi = math.inf if math.isnan(ci.high) else float(ci.high)
    return Estimate(float(np.quantile(x, q)), lo, hi, int(x.size))


def fmt(est: Estimate, *, percent: bool = False, digits: int | None = None, unit: str = "") -> str:
    """`value [lo, hi] (n=...)`: `9.4 % [3.2, 24.2] (n=32)` for a rate (`percent=True`, 1 digit),
    `0.123 [0.080, 0.171] (n=32)` for a mean (3 digits), `0.67x [0.08, 5.91] (n=16 vs 32)` for a
    ratio (`unit="x"`, `digits=2`); `n/a (n=0)` when the value is undefined."""
    n = " vs ".join(map(str, est.n)) if isinstance(est.n, tuple) else str(est.n)
    if math.isnan(est.value):
        return f"n/a (n={n})"
    scale = 100.0 if percent else 1.0
    digits = (1 if percent else 3) if digits is None else digits
    unit = " %" if percent else unit

    def num(v: float) -> str:
        return f"{v}" if math.isinf(v) else f"{scale * v:.{digits}f}"

    value = num(est.value) + (unit if math.isfinite(est.value) else "")
    return f"{value} [{num(est.lo)}, {num(est.hi)}] (n={n})"
