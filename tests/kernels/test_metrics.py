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
    # Six pairs in one (6, 256) batch, the shape test_against_scipy already compiled.
    x = np.linspace(0.1, 2.0, 256, dtype=np.float32)
    a = np.zeros(256, np.float32)
    a[10] = 1.0
    b = np.zeros(256, np.float32)
    b[50] = 2.0
    zero = np.zeros(256, np.float32)
    lhs = np.stack([x, x, x, x, a, zero])
    rhs = np.stack([x, 2 * x, 3 * x, zero, b, zero])
    out = metrics.compare(lhs, rhs)
    np.testing.assert_allclose(out["cosine"], [1, 1, 1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out["tanimoto"][:2], [1, 2 / 3], rtol=1e-5)  # scale penalised
    assert out["tanimoto"][5] == 0.0 and out["tanimoto"][3] == 0.0
    np.testing.assert_allclose(out["jensen_shannon"][[0, 2, 4]], [0, 0, 1], atol=1e-6)
    # Two deltas 40 bins apart: W1 is their distance in eV.
    np.testing.assert_allclose(
        out["wasserstein1"][[0, 2, 4]], [0, 0, 40 * grid.BIN_WIDTH], atol=1e-6
    )
    np.testing.assert_allclose(out["mse"][1], np.mean(x**2), rtol=1e-6)


def test_broadcasting_and_x64(rng):
    x, y = _pair(rng)
    full = metrics.compare(x, y)
    one = metrics.compare(x, y[0])
    np.testing.assert_allclose(
        one["cosine"], metrics.compare(x, np.broadcast_to(y[0], x.shape))["cosine"]
    )
    with jax.enable_x64(True):
        f64 = np.asarray(
            jax.jit(metrics.jensen_shannon)(
                jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
            )
        )
        assert f64.dtype == np.float64
    np.testing.assert_allclose(full["jensen_shannon"], f64, rtol=1e-4)


def _np_full(name, x, y):
    """Plain numpy `[B, R]` matrices of the four audit metrics."""
    dot = x @ y.T
    nx, ny = (x * x).sum(1)[:, None], (y * y).sum(1)[None]
    if name == "cosine":
        return dot / np.sqrt(nx * ny)
    if name == "tanimoto":
        return dot / (nx + ny - dot)
    if name == "mse":
        return ((x[:, None] - y[None]) ** 2).mean(-1)
    fx, fy = (np.cumsum(v / v.sum(1, keepdims=True), 1) for v in (x, y))
    return grid.BIN_WIDTH * np.abs(fx[:, None] - fy[None]).sum(-1)


@pytest.mark.parametrize("metric", metrics.AUDIT_METRICS, ids=lambda m: m.name)
def test_pairwise_and_best_match(rng, metric):
    x = jnp.asarray(rng.gamma(0.7, 1.0, (11, 256)), jnp.float32)
    y = jnp.asarray(rng.gamma(0.7, 1.0, (7, 256)), jnp.float32)
    full = _np_full(metric.name, np.asarray(x, np.float64), np.asarray(y, np.float64))
    pw = np.asarray(
        jax.jit(metrics.pairwise, static_argnums=0, static_argnames="chunk")(metric, x, y, chunk=4)
    )
    np.testing.assert_allclose(pw, full, rtol=1e-4, atol=1e-6)
    exclude = jnp.asarray(np.arange(11) % 7)
    best = jax.jit(metrics.best_match, static_argnums=0, static_argnames="chunk")
    value, index = best(metric, x, y, exclude=exclude, chunk=3)
    masked = np.where(np.arange(7)[None] == np.asarray(exclude)[:, None], np.nan, full)
    pick = np.nanargmax(masked, 1) if metric.higher_is_better else np.nanargmin(masked, 1)
    np.testing.assert_array_equal(index, pick)
    np.testing.assert_allclose(value, full[np.arange(11), pick], rtol=1e-4, atol=1e-6)


def test_compare_bad_input():
    with pytest.raises(ValueError, match="y"):
        metrics.compare(np.ones((2, 256)), np.ones((2, 128)))
    with pytest.raises(ValueError, match="x"):
        metrics.compare(np.full(256, np.inf), np.ones(256))
    with pytest.raises(ValueError, match="broadcastable"):
        metrics.compare(np.ones((2, 256)), np.ones((3, 256)))
