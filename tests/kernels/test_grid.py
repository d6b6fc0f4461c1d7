"""Grid constants and host-side resampling: conservation of states, spin channels, bad input."""

import numpy as np
import pytest

from jaxdos.kernels import grid


def test_constants_and_centres():
    assert grid.N_BINS == 256 and grid.FERMI_INDEX == 128
    assert grid.BIN_WIDTH == pytest.approx(0.078125)
    c = grid.bin_centres()
    assert c.shape == (256,)
    np.testing.assert_allclose(c, -c[::-1], atol=1e-12)  # symmetric about E_F
    np.testing.assert_allclose(np.diff(c), grid.BIN_WIDTH)
    assert c[127] < 0 < c[128]


def _window_states(e, d, efermi):
    """Trapezoid integral of the piecewise-linear raw DOS over the window, on a fine grid."""
    x = np.linspace(efermi - 10, efermi + 10, 200_001)
    return np.trapezoid(np.interp(x, e, d, left=0.0, right=0.0), x)


@pytest.mark.parametrize("n_atoms", [1, 3])
def test_resample_conserves_states(rng, n_atoms):
    e = np.sort(rng.uniform(-30, 30, 700))
    d = rng.random(700) * 5
    efermi = 1.37
    out = grid.resample_dos(e, d, efermi, n_atoms)
    assert out.shape == (256,) and np.all(out >= 0)
    total = out.sum() * grid.BIN_WIDTH * n_atoms
    assert total == pytest.approx(_window_states(e, d, efermi), rel=1e-6)


def test_resample_constant_and_spin_channels():
    e = np.linspace(-40, 40, 333)
    up = np.full_like(e, 2.0)
    out = grid.resample_dos(e, np.stack([up, 3 * up]), efermi=0.5, n_atoms=4)
    np.testing.assert_allclose(out, (2.0 + 6.0) / 4, rtol=1e-10)
    np.testing.assert_allclose(out, grid.resample_dos(e, 4 * up, 0.5, 4))


def test_resample_shifts_with_fermi_level():
    # A narrow peak at E = 2 eV lands 2 eV above E_F = 0 and at E_F when E_F = 2.
    e = np.linspace(-20, 20, 4001)
    d = np.exp(-0.5 * ((e - 2.0) / 0.05) ** 2)
    c = grid.bin_centres()
    assert abs(c[np.argmax(grid.resample_dos(e, d, 0.0, 1))] - 2.0) < grid.BIN_WIDTH
    assert abs(c[np.argmax(grid.resample_dos(e, d, 2.0, 1))]) < grid.BIN_WIDTH


@pytest.mark.parametrize(
    "args, name",
    [
        ((np.arange(5.0), np.ones(4), 0.0, 1), "densities"),
        ((np.array([0.0, 1.0, np.nan]), np.ones(3), 0.0, 1), "energies"),
        ((np.array([0.0, 2.0, 1.0]), np.ones(3), 0.0, 1), "energies"),
        ((np.arange(3.0), np.ones(3), np.inf, 1), "efermi"),
        ((np.arange(3.0), np.ones(3), 0.0, 0), "n_atoms"),
    ],
)
def test_resample_bad_input(args, name):
    with pytest.raises(ValueError, match=name):
        grid.resample_dos(*args)


def test_check_dos():
    assert grid.check_dos(np.zeros((2, 256))).shape == (2, 256)
    with pytest.raises(ValueError, match="dos"):
        grid.check_dos(np.zeros(255))
    bad = np.zeros(256)
    bad[3] = np.inf
    with pytest.raises(ValueError, match="spec"):
        grid.check_dos(bad, "spec")
