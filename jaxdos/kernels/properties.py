"""DOS-derived properties of the paper (Appendix B), batched over leading axes `[..., L]`.

All functions are pure `jnp`, branch-free, jit- and vmap-able; inputs are per-atom spectra on the
grid of `jaxdos.kernels.grid` (states / eV / atom).
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.kernels.grid import BIN_WIDTH, FERMI_INDEX, check_dos, check_grid

__all__ = [
    "band_gap",
    "dos_at_fermi",
    "integrated_dos",
    "all_properties",
    "measure",
    "PROPERTY_NAMES",
    "REL_TOL",
    "ABS_TOL",
    "tolerance",
    "within_tolerance",
]

PROPERTY_NAMES = ("band_gap", "dos_at_fermi", "integrated_dos")

# The paper's hit rule for a property target y (Section 5.1, Table 12 note): a measured value
# counts when it lies within +-10 % of y, or within 0.1 (absolute) when y = 0, where a relative
# band would be empty. Written once here; targets, K conditioning and every table call it.
REL_TOL = 0.1
ABS_TOL = 0.1


def tolerance(target: float, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> float:
    """Half-width of the accepted band around `target`: rel_tol * |target|, abs_tol if it is 0."""
    return abs_tol if target == 0 else rel_tol * abs(target)


def within_tolerance(
    measured, target: float, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL
) -> np.ndarray:
    """Host-side hit test `[...] -> [...]` bool: |measured - target| <= `tolerance(target)`."""
    tol = tolerance(target, rel_tol=rel_tol, abs_tol=abs_tol)
    return np.abs(np.asarray(measured) - target) <= tol


def band_gap(dos, k: float = 10.0):
    """E_BG in eV by Algorithm 1: ReLU, split at E_F, outward cumsums, soft mask relu(1 - k*c).

    Args:
        dos: `[..., L]` spectra.
        k: sharpness; a side stops counting once its outward cumulative sum reaches 1/k.

    Returns:
        `[...]` band gap in eV (a soft count of near-empty bins times the bin width).
    """
    d = jnp.maximum(check_grid(dos), 0.0)
    below = jnp.flip(d[..., :FERMI_INDEX], axis=-1)
    above = d[..., FERMI_INDEX:]
    mask_below = jnp.maximum(1.0 - k * jnp.cumsum(below, axis=-1), 0.0)
    mask_above = jnp.maximum(1.0 - k * jnp.cumsum(above, axis=-1), 0.0)
    return (mask_below.sum(-1) + mask_above.sum(-1)) * BIN_WIDTH


def dos_at_fermi(dos):
    """DOS(E_F) in states / eV / atom: the mean of bins 127 and 128, which straddle E_F.

    With E_F on the shared edge of the two bins (see `grid`), linear interpolation between
    the two bin centres at E_F is exactly their mean.
    """
    check_grid(dos)
    return 0.5 * (dos[..., FERMI_INDEX - 1] + dos[..., FERMI_INDEX])


def integrated_dos(dos):
    """N(E_F) in states / atom: dE * sum(dos[:128]), the DOS integrated over [E_F - 10 eV, E_F].

    The paper's eq. 6 writes `sum(dos[:128])` with the bin width left implicit; this is that sum
    times dE = 0.078125 eV, so it is a count of states per atom in the 10 eV below E_F (the paper's
    number divided by 12.8 if its sum was unscaled).
    """
    check_grid(dos)
    return BIN_WIDTH * dos[..., :FERMI_INDEX].sum(-1)


def all_properties(dos, k: float = 10.0) -> dict:
    """The three properties as a dict keyed by `PROPERTY_NAMES`, each `[...]`."""
    return {
        "band_gap": band_gap(dos, k),
        "dos_at_fermi": dos_at_fermi(dos),
        "integrated_dos": integrated_dos(dos),
    }


_all_properties_jit = jax.jit(all_properties, static_argnames="k")


def measure(dos, k: float = 10.0) -> dict:
    """Host-side checked `all_properties`: `[..., L]` -> dict of numpy `[...]` float32 arrays.

    Raises:
        ValueError: naming `dos` (not `[..., 256]`, NaN/inf) or `k` (not a finite number > 0).
    """
    arr = check_dos(dos)
    if not (np.isscalar(k) and np.isfinite(k) and k > 0):
        raise ValueError(f"k: expected a finite sharpness > 0 (paper: 10), got {k!r}")
    out = _all_properties_jit(jnp.asarray(arr, jnp.float32), k=float(k))
    return {name: np.asarray(v) for name, v in out.items()}
