"""Properties (Algorithm 1, DOS(E_F), N(E_F)) vs loop-based numpy references and analytic cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.kernels import grid, properties

DE = grid.BIN_WIDTH


def ref_band_gap(d, k=10.0):
    """Algorithm 1, written as an explicit loop per side."""
    d = np.maximum(np.asarray(d, np.float64), 0.0)
    total = 0.0
    for side in (d[:128][::-1], d[128:]):
        c = 0.0
        for v in side:
            c += v
            total += max(1.0 - k * c, 0.0)
    return total * DE


def ref_dos_fermi(d):
    # Linear interpolation between bin centres at E = 0.
    c = grid.bin_centres()
    return np.interp(0.0, c[126:130], np.asarray(d, np.float64)[126:130])


def ref_integrated(d):
    c = grid.bin_centres()
    return float(sum(v * DE for v, e in zip(d, c, strict=True) if e < 0))


def _random_spectra(rng, b=16):
    d = rng.gamma(0.5, 1.0, (b, 256)).astype(np.float32)
    for i in range(b):  # give most rows a gap somewhere around E_F
        lo, hi = sorted(rng.integers(90, 170, 2))
        d[i, lo:hi] = rng.uniform(0, 0.02) * (i % 2)
    return d


def test_against_numpy_reference(rng):
    d = _random_spectra(rng)
    out = properties.measure(d)
    np.testing.assert_allclose(out["band_gap"], [ref_band_gap(r) for r in d], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["dos_at_fermi"], [ref_dos_fermi(r) for r in d], rtol=1e-6)
    np.testing.assert_allclose(out["integrated_dos"], [ref_integrated(r) for r in d], rtol=1e-5)


@pytest.mark.parametrize("below, above", [(0, 0), (10, 30), (40, 3), (128, 128)])
def test_box_gap_width(below, above):
    d = np.ones(256, np.float32)
    d[128 - below : 128 + above] = 0.0
    assert float(properties.band_gap(jnp.asarray(d))) == pytest.approx((below + above) * DE)


def test_soft_edge_counts_half_a_bin():
    # First occupied bin 0.05 < 1/k: its cumsum 0.05 gives mask 0.5, the next one reaches 0.1.
    d = np.zeros(256, np.float32)
    d[:100] = 0.05
    d[150:] = 0.05
    expected = (28 + 22 + 0.5 + 0.5) * DE
    assert float(properties.band_gap(jnp.asarray(d))) == pytest.approx(expected, rel=1e-5)


def test_metal_dos_at_fermi_and_constant_n():
    e = grid.bin_centres()
    metal = 0.8 + 0.3 * e + 0.05 * np.abs(e) ** 0  # linear through E_F: DOS(E_F) = 0.85
    out = properties.measure(metal)
    assert out["dos_at_fermi"] == pytest.approx(0.85, rel=1e-6)
    assert out["band_gap"] == pytest.approx(0.0)
    assert properties.measure(np.full(256, 0.3))["integrated_dos"] == pytest.approx(3.0, rel=1e-6)


def test_jit_eager_vmap_loop(rng):
    d = jnp.asarray(_random_spectra(rng, 8))
    eager = properties.all_properties(d)
    jitted = jax.jit(properties.all_properties)(d)
    vmapped = jax.jit(jax.vmap(properties.all_properties))(d)
    one = jax.jit(properties.all_properties)
    rows = [one(r) for r in d]
    for name in properties.PROPERTY_NAMES:
        loop = np.array([r[name] for r in rows])
        np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(vmapped[name], loop, rtol=1e-6, atol=1e-6)


def test_float32_matches_float64(rng):
    d = _random_spectra(rng, 8)
    f32 = {k: np.asarray(v) for k, v in properties.all_properties(jnp.asarray(d)).items()}
    with jax.enable_x64(True):  # jax 0.10 moved the context manager out of jax.experimental
        x = jnp.asarray(d.astype(np.float64))
        assert x.dtype == jnp.float64
        f64 = {k: np.asarray(v) for k, v in properties.all_properties(x).items()}
    for name in properties.PROPERTY_NAMES:
        assert f64[name].dtype == np.float64
        np.testing.assert_allclose(f32[name], f64[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "dos, kw, name",
    [
        (np.ones(200), {}, "dos"),
        (np.full((2, 256), np.nan), {}, "dos"),
        (np.ones(256), {"k": -1.0}, "k"),
        (np.ones(256), {"k": np.inf}, "k"),
    ],
)
def test_measure_bad_input(dos, kw, name):
    with pytest.raises(ValueError, match=name):
        properties.measure(dos, **kw)


def test_tolerance_rule_is_ten_percent_or_absolute_at_zero():
    from jaxdos.kernels.properties import tolerance, within_tolerance

    assert tolerance(2.0) == pytest.approx(0.2) and tolerance(0.0) == 0.1
    assert tolerance(3.0, rel_tol=0.05, abs_tol=1.0) == pytest.approx(0.15)
    np.testing.assert_array_equal(
        within_tolerance(np.array([1.79, 1.81, 2.19, 2.21]), 2.0), [False, True, True, False]
    )
    np.testing.assert_array_equal(within_tolerance(np.array([0.0, 0.09, 0.11]), 0.0), [1, 1, 0])
