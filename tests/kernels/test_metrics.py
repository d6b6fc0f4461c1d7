"""Spectral metrics vs scipy/numpy formulas; pairwise and best-match forms vs explicit loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import pearsonr, wasserstein_distance

from jaxdos.kernels import grid, metrics


def _pair(rng, b=6):
    x = rng.gamma(0.7, 1.0, (b, 256))
    y = rng.gamma(0.7, 1.0, (b, 256))
    x[:, 100:140] = 0.0  # gaps make JS and W1 non-trivial (zero bins, shifted mass)
    return x.astype(np.float32), y.astype(np.float32)


def test_against_scipy(rng):
    x, y = _pair(rng)
    out = metrics.compare(x, y)
    c = grid.bin_centres()
    xs, ys = x.astype(np.float64), y.astype(np.float64)
    cos = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(xs, ys, strict=True)]
    tan = [a @ b / (a @ a + b @ b - a @ b) for a, b in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(out["cosine"], cos, rtol=1e-5)
    np.testing.assert_allclose(out["tanimoto"], tan, rtol=1e-5)
    np.testing.assert_allclose(
        out["pearson"],
        [pearsonr(a, b)[0] for a, b in zip(xs, ys, strict=True)],
        rtol=1e-4,
        atol=1e-6,
    )
    js = [jensenshannon(a, b, base=2) ** 2 for a, b in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(out["jensen_shannon"], js, rtol=1e-4, atol=1e-7)
    w1 = [wasserstein_distance(c, c, a, b) for a, b in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(out["wasserstein1"], w1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["mse"], ((xs - ys) ** 2).mean(-1), rtol=1e-5)


def test_identities_and_edge_cases():
    x = jnp.asarray(np.linspace(0.1, 2.0, 256, dtype=np.float32))
    assert float(metrics.cosine(x, x)) == pytest.approx(1.0)
    assert float(metrics.tanimoto(x, x)) == pytest.approx(1.0)
    assert float(metrics.tanimoto(x, 2 * x)) == pytest.approx(2 / 3, rel=1e-5)  # scale penalised
    assert float(metrics.cosine(x, 2 * x)) == pytest.approx(1.0)
    assert float(metrics.jensen_shannon(x, 3 * x)) == pytest.approx(0.0, abs=1e-6)
    assert float(metrics.wasserstein1(x, x)) == pytest.approx(0.0, abs=1e-7)
    zero = jnp.zeros(256)
    assert float(metrics.cosine(x, zero)) == 0.0 and float(metrics.tanimoto(zero, zero)) == 0.0
    # Disjoint supports: JS is 1 bit; W1 of two deltas is their distance in eV.
    a = jnp.zeros(256).at[10].set(1.0)
    b = jnp.zeros(256).at[50].set(2.0)
    assert float(metrics.jensen_shannon(a, b)) == pytest.approx(1.0)
    assert float(metrics.wasserstein1(a, b)) == pytest.approx(40 * grid.BIN_WIDTH)


def test_broadcasting_and_x64(rng):
    x, y = _pair(rng, 4)
    one = metrics.compare(x, y[0])
    np.testing.assert_allclose(
        one["cosine"], metrics.compare(x, np.broadcast_to(y[0], x.shape))["cosine"]
    )
    js = jax.jit(metrics.jensen_shannon)
    f32 = np.asarray(js(jnp.asarray(x), jnp.asarray(y)))
    with jax.enable_x64(True):
        f64 = np.asarray(js(jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)))
        assert f64.dtype == np.float64
    np.testing.assert_allclose(f32, f64, rtol=1e-4)


@pytest.mark.parametrize("metric", metrics.AUDIT_METRICS, ids=lambda m: m.name)
def test_pairwise_and_best_match(rng, metric):
    x = jnp.asarray(rng.gamma(0.7, 1.0, (11, 256)), jnp.float32)
    y = jnp.asarray(rng.gamma(0.7, 1.0, (7, 256)), jnp.float32)
    full = np.asarray(jax.jit(metric.pair)(x[:, None, :], y[None, :, :]))
    pw = np.asarray(
        jax.jit(metrics.pairwise, static_argnums=0, static_argnames="chunk")(metric, x, y, chunk=4)
    )
    np.testing.assert_allclose(pw, full, rtol=1e-5, atol=1e-6)
    exclude = jnp.asarray(np.arange(11) % 7)
    best = jax.jit(metrics.best_match, static_argnums=0, static_argnames="chunk")
    value, index = best(metric, x, y, exclude=exclude, chunk=3)
    masked = np.where(np.arange(7)[None] == np.asarray(exclude)[:, None], np.nan, full)
    pick = np.nanargmax(masked, 1) if metric.higher_is_better else np.nanargmin(masked, 1)
    np.testing.assert_array_equal(index, pick)
    np.testing.assert_allclose(value, full[np.arange(11), pick], rtol=1e-5, atol=1e-6)


def test_compare_bad_input():
    with pytest.raises(ValueError, match="y"):
        metrics.compare(np.ones((2, 256)), np.ones((2, 128)))
    with pytest.raises(ValueError, match="x"):
        metrics.compare(np.full(256, np.inf), np.ones(256))
    with pytest.raises(ValueError, match="broadcastable"):
        metrics.compare(np.ones((2, 256)), np.ones((3, 256)))
