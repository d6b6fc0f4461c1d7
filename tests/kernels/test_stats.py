"""Intervals of jaxdos.kernels.stats against scipy and analytic cases, coverage by simulation."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats.contingency import relative_risk

from jaxdos.kernels import stats


@pytest.mark.parametrize("k, n", [(0, 1), (0, 16), (1, 16), (3, 32), (16, 16), (50, 100), (7, 9)])
def test_wilson_matches_scipy(k, n):
    ref = sps.binomtest(k, n).proportion_ci(method="wilson")
    np.testing.assert_allclose(stats.wilson(k, n), (ref.low, ref.high), rtol=1e-10, atol=1e-12)


def test_wilson_analytic_ends():
    z2 = stats.Z95**2
    lo, hi = stats.wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2))  # k = 0: upper end n_eff closed form
    lo, hi = stats.wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2))


def test_wilson_covers_a_known_rate():
    rng = np.random.default_rng(0)
    p, n = 0.1, 60
    ks = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in map(lambda k: stats.wilson(k, n), ks)])
    assert 0.93 <= covered <= 0.975


def test_bootstrap_mean_agrees_with_scipy_and_is_seeded():
    x = np.random.default_rng(1).normal(2.0, 1.0, size=200)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=20000, method="percentile", random_state=np.random.default_rng(2)
    ).confidence_interval
    lo, hi = stats.bootstrap_mean(x)
    # Different resamples: the ends agree to Monte-Carlo error (~0.01 standard errors here 0.07).
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.02)
    assert lo < x.mean() < hi
    assert stats.bootstrap_mean(x) == (lo, hi)  # same seed, same interval
    assert stats.bootstrap_mean(x, seed=1) != (lo, hi)


def test_bootstrap_mean_degenerate_cases():
    assert stats.bootstrap_mean([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert stats.bootstrap_mean([0.5]) == (0.5, 0.5)
    assert stats.bootstrap_mean([1.0, np.nan, 1.0]) == (1.0, 1.0)  # NaN dropped, as nanmean
    assert all(math.isnan(v) for v in stats.bootstrap_mean([]))


def test_bootstrap_mean_covers_a_known_mean():
    rng = np.random.default_rng(3)
    hits = [
        lo <= 0.5 <= hi
        for lo, hi in (
            stats.bootstrap_mean(rng.random(40), resamples=400, seed=i) for i in range(400)
        )
    ]
    assert 0.90 <= np.mean(hits) <= 0.98  # percentile bootstrap runs a little short at n = 40


@pytest.mark.parametrize("k1, n1, k0, n0", [(3, 16, 1, 32), (16, 16, 3, 32), (40, 256, 20, 256)])
def test_ratio_of_rates_matches_scipy_katz(k1, n1, k0, n0):
    ref = relative_risk(k1, n1, k0, n0).confidence_interval(0.95)
    np.testing.assert_allclose(stats.ratio_of_rates(k1, n1, k0, n0), (ref.low, ref.high))
    est = stats.rate_ratio(k1, n1, k0, n0)
    assert est.value == pytest.approx((k1 / n1) / (k0 / n0)) and est.n == (n1, n0)


def test_ratio_of_rates_zero_counts():
    lo, hi = stats.ratio_of_rates(0, 16, 3, 32)
    assert lo == 0.0 and 0 < hi < math.inf
    lo, hi = stats.ratio_of_rates(3, 16, 0, 32)
    assert 0 < lo < (3 / 16) * 32 and hi == math.inf
    assert stats.rate_ratio(3, 16, 0, 32).value == math.inf
    for args in [(0, 16, 0, 32), (0, 0, 1, 4), (1, 4, 0, 0)]:
        assert all(math.isnan(v) for v in stats.rate_ratio(*args)[:3])


def test_ratio_of_rates_covers_a_known_ratio():
    rng = np.random.default_rng(4)
    (p1, n1), (p0, n0) = (0.2, 40), (0.08, 60)  # zero baselines happen (~0.7 % of draws)
    k1, k0 = rng.binomial(n1, p1, 3000), rng.binomial(n0, p0, 3000)
    bounds = [stats.ratio_of_rates(a, n1, b, n0) for a, b in zip(k1, k0, strict=True)]
    assert 0.93 <= np.mean([lo <= p1 / p0 <= hi for lo, hi in bounds]) <= 0.985


def test_fmt_renders_rates_means_ratios_and_empty_without_warnings():
    assert stats.fmt(stats.rate(3, 32), percent=True) == "9.4 % [3.2, 24.2] (n=32)"
    assert stats.fmt(stats.Estimate(0.1234, 0.08, 0.171, 32)) == "0.123 [0.080, 0.171] (n=32)"
    ratio = stats.rate_ratio(1, 16, 3, 32)
    assert stats.fmt(ratio, digits=2, unit="x") == "0.67x [0.08, 5.91] (n=16 vs 32)"
    assert stats.fmt(stats.rate_ratio(3, 16, 0, 32), unit="x").startswith("inf [")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.fmt(stats.rate(0, 0), percent=True) == "n/a (n=0)"
        assert stats.fmt(stats.mean([])) == "n/a (n=0)"
        ci = stats.rate(0, 0).ci()
        assert ci["n"] == 0 and math.isnan(ci["lo"]) and math.isnan(ci["hi"])
    assert stats.rate_ratio(1, 16, 3, 32).ci()["n"] == [16, 32]


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="k: expected"):
        stats.wilson(5, 4)


def test_quantile_order_statistic_interval():
    x = np.arange(100, dtype=float)
    est = stats.quantile(x, 0.5)
    assert est.value == 49.5 and est.n == 100 and est.lo < 49.5 < est.hi
    ref = sps.quantile_test(x, p=0.5).confidence_interval(0.95)
    assert (est.lo, est.hi) == (ref.low, ref.high)
    low = stats.quantile([0.0, 1.0, 2.0, 3.0, np.nan], 0.1)  # 4 points cannot bound a 10 % quantile
    assert low.n == 4 and low.lo == -math.inf and math.isfinite(low.hi)
    assert stats.fmt(low).startswith("0.300 [-inf, ")
    assert math.isnan(stats.quantile([], 0.5).value)
    with pytest.raises(ValueError, match="q: expected"):
        stats.quantile(x, 1.0)
