"""Appendix F audit statistics vs explicit numpy references."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.kernels import audit, grid


def _spectra(rng, n):
    """Random gapped/metallic spectra: a few Gaussian bands on the grid."""
    e = np.arange(256)
    out = np.zeros((n, 256))
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            out[i] += rng.uniform(0.2, 2) * np.exp(
                -0.5 * ((e - rng.uniform(0, 256)) / rng.uniform(3, 30)) ** 2
            )
    return out.astype(np.float32)


def test_edge_jump():
    d = np.zeros((3, 256), np.float32)
    d[:, :100] = 1.0
    d[0, 150:] = 2.0  # cliff edge: jump = 2 / 2 = 1
    d[1, 150:] = np.linspace(0.0, 2.0, 106)  # ramp: first bin > 0.02 is 0.0381 -> jump ~0.019
    d[2, :] = 1.0  # metal: not gapped
    ej = audit.edge_jump(jnp.asarray(d))
    np.testing.assert_array_equal(ej.gapped, [True, True, False])
    assert float(ej.jump[0]) == pytest.approx(1.0)
    assert float(ej.jump[1]) == pytest.approx(2 * 2.0 / 105 / 2.0, rel=1e-5)


def test_pairwise_cosine_and_unique_nearest(rng):
    x, r = _spectra(rng, 9), _spectra(rng, 13)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = u @ u.T
    expected = (c.sum() - np.trace(c)) / (9 * 8)
    assert float(audit.mean_pairwise_cosine(jnp.asarray(x))) == pytest.approx(expected, rel=1e-5)
    nearest = audit.unique_nearest
    count, idx = nearest(jnp.asarray(x), jnp.asarray(r))
    ur = r / np.linalg.norm(r, axis=1, keepdims=True)
    np.testing.assert_array_equal(idx, np.argmax(u @ ur.T, 1))
    assert int(count) == len(set(np.argmax(u @ ur.T, 1)))
    # Self-excluded: the reference's own entries never map to themselves.
    _, own = nearest(jnp.asarray(r), jnp.asarray(r), jnp.arange(13))
    assert np.all(np.asarray(own) != np.arange(13))


def _np_scores(x, r):
    """The four audit metrics in plain numpy, `[B, L] x [R, L] -> [4, B, R]`, higher = better."""
    dot = x @ r.T
    nx, nr = (x * x).sum(1)[:, None], (r * r).sum(1)[None]
    cos = dot / np.sqrt(nx * nr)
    tan = dot / (nx + nr - dot)
    fx = np.cumsum(x / x.sum(1, keepdims=True), 1)
    fr = np.cumsum(r / r.sum(1, keepdims=True), 1)
    w1 = grid.BIN_WIDTH * np.abs(fx[:, None] - fr[None]).sum(-1)
    mse = ((x[:, None] - r[None]) ** 2).mean(-1)
    return np.stack([cos, tan, -w1, -mse])


def _ref_plausibility(x, r):
    """Loop-free numpy reference of the 4-metric LOO percentile criterion."""
    self_s = _np_scores(r, r)
    for j in range(4):
        np.fill_diagonal(self_s[j], -np.inf)
    loo = self_s.max(-1)  # [4, R]
    best = _np_scores(x, r).max(-1)  # [4, B]
    pct = 100 * (loo[:, None, :] < best[:, :, None]).mean(-1).T  # [B, 4]
    buckets = np.clip(np.floor(pct / 10), 0, 9)
    return pct, (pct > 10).all(1), (buckets.max(1) - buckets.min(1)) <= 1


def test_plausibility_matches_reference(rng):
    x, r = _spectra(rng, 6), _spectra(rng, 16)
    # The last three samples are reference entries: an exact match beats every LOO value.
    x = np.concatenate([x, r[:3]])
    pct, ok, agree = _ref_plausibility(x.astype(np.float64), r.astype(np.float64))
    jx, jr = jnp.asarray(x), jnp.asarray(r)
    loo = audit.loo_best(jr)
    got = audit.plausibility(jx, jr, loo)
    np.testing.assert_allclose(got.percentiles, pct, atol=1e-4)
    np.testing.assert_array_equal(got.plausible, ok)
    np.testing.assert_array_equal(got.agree, agree)
    assert np.all(np.asarray(got.percentiles)[-3:] >= 100 * 15 / 16 - 1e-4)


def test_audit_row_and_baseline(rng, key):
    # Same shapes as the plausibility test: the jitted LOO and plausibility are reused.
    x, r = _spectra(rng, 9), _spectra(rng, 16)
    row = audit.audit(x, r)
    for k in ("plausibility_rate", "agreement_rate", "nonneg_rate", "pairwise_cosine"):
        assert np.isfinite(row[k]) and np.isfinite(row["ref_" + k])
    assert 1 <= row["unique_nearest"] <= 9 and row["nonneg_rate"] == 100.0
    counts = audit.unique_nearest_baseline(jnp.asarray(r), 5, key, trials=4)
    assert counts.shape == (4,) and np.all((counts >= 1) & (counts <= 5))
    np.testing.assert_array_equal(counts, audit.unique_nearest_baseline(jnp.asarray(r), 5, key, 4))
    with pytest.raises(ValueError, match="samples"):
        audit.audit(x[:1], r)
    with pytest.raises(ValueError, match="reference"):
        audit.audit(x, r[:, :100])
