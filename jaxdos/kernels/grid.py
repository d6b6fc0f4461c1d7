"""The paper's energy grid: 256 bins on [E_F - 10, E_F + 10] eV (Section 3).

Bin i covers [E_F - 10 + i*dE, E_F - 10 + (i+1)*dE) with dE = 20/256 = 0.078125 eV (the paper's
"dE ~ 0.078 eV", Algorithm 1), and its value is the mean DOS over that interval, in
states / eV / atom. The Fermi level sits exactly on the boundary between bins 127 and 128, so
bins [0, 128) are below E_F and [128, 256) above it; bin centres are symmetric about E_F.
"""

import numpy as np

__all__ = [
    "N_BINS",
    "E_WINDOW",
    "BIN_WIDTH",
    "FERMI_INDEX",
    "bin_centres",
    "bin_edges",
    "resample_dos",
    "check_grid",
    "check_dos",
]

N_BINS = 256
E_WINDOW = 10.0  # eV either side of E_F
BIN_WIDTH = 2 * E_WINDOW / N_BINS  # 0.078125 eV
FERMI_INDEX = N_BINS // 2  # first bin above E_F


def bin_edges() -> np.ndarray:
    """Bin edges relative to E_F, `[L + 1]` eV."""
    return np.linspace(-E_WINDOW, E_WINDOW, N_BINS + 1)


def bin_centres() -> np.ndarray:
    """Bin centres relative to E_F, `[L]` eV."""
    e = bin_edges()
    return 0.5 * (e[1:] + e[:-1])


def check_grid(x, name: str = "dos", *, lead: str = "..."):
    """Raise unless `x` is on the grid: shape `[..., L]` (or exactly `[lead..., L]`); returns `x`.

    Reads only the shape, which is static under `jit`, so every kernel calls this on entry at no
    run-time cost; a traced `x` works the same as a numpy one. Without it, a wrong last axis
    silently gives nonsense (`band_gap` of a `[1, 100]` array is 0: 100 bins all "below E_F").

    Args:
        x: array (or tracer) whose last axis should be the 256 DOS bins.
        name: the argument's name, used in the message.
        lead: the expected leading axes, e.g. `"B"` or `"R"` for exactly one batch axis;
            `"..."` (default) accepts any number of leading axes.

    Raises:
        ValueError: naming `name` and the expected shape.
    """
    shape = tuple(np.shape(x))
    ok = len(shape) >= 1 and shape[-1] == N_BINS
    if lead != "...":
        ok = ok and len(shape) == len(lead.split(",")) + 1
    if not ok:
        raise ValueError(f"{name}: expected shape [{lead}, {N_BINS}], got {shape}")
    return x


def check_dos(dos, name: str = "dos") -> np.ndarray:
    """Host-side validation of a batch of gridded spectra; returns a float array `[..., L]`.

    Raises:
        ValueError: naming `name`, if the last axis is not 256 long or any value is NaN/inf.
    """
    arr = np.asarray(check_grid(np.asarray(dos), name))
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return arr


def resample_dos(energies, densities, efermi: float, n_atoms: int) -> np.ndarray:
    """Resample a raw DOS onto the grid and normalise per atom (host-side numpy).

    The raw DOS is treated as piecewise linear between its samples; each bin gets the exact mean
    of that interpolant over the bin (integral via the cumulative trapezoid), so total states are
    conserved whatever the raw spacing. Outside the raw energy range the DOS is taken as zero.

    Args:
        energies: `[X]` absolute energies in eV, strictly increasing.
        densities: `[X]` or `[2, X]` (spin channels, summed) states / eV per cell.
        efermi: Fermi level in eV (absolute, same reference as `energies`).
        n_atoms: atoms in the cell (>= 1).

    Returns:
        `[L]` float64 DOS in states / eV / atom on [E_F - 10, E_F + 10].

    Raises:
        ValueError: naming the argument at fault.
    """
    e = np.asarray(energies, dtype=np.float64)
    d = np.asarray(densities, dtype=np.float64)
    if d.ndim == 2:
        d = d.sum(axis=0)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"energies: expected a 1-D array of >= 2 values, got shape {e.shape}")
    if d.shape != e.shape:
        raise ValueError(f"densities: expected shape {e.shape} to match energies, got {d.shape}")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(d))):
        raise ValueError("energies/densities: expected finite values, found NaN or inf")
    if not np.all(np.diff(e) > 0):
        raise ValueError("energies: expected strictly increasing values")
    if efermi is None or not np.isfinite(efermi):
        raise ValueError(f"efermi: expected a finite float, got {efermi}")
    if int(n_atoms) < 1:
        raise ValueError(f"n_atoms: expected >= 1, got {n_atoms}")
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(e))])

    def integral(x):
        # Cumulative integral of the linear interpolant at x, with exact quadratic inside segments.
        x = np.clip(x, e[0], e[-1])
        j = np.clip(np.searchsorted(e, x, side="right") - 1, 0, e.size - 2)
        h = x - e[j]
        slope = (d[j + 1] - d[j]) / (e[j + 1] - e[j])
        return cum[j] + d[j] * h + 0.5 * slope * h * h

    edges = bin_edges() + efermi
    per_bin = np.diff(integral(edges)) / BIN_WIDTH
    return np.maximum(per_bin, 0.0) / int(n_atoms)
