"""The paper's Table 7 metrics of a predicted DOS against a reference (here the oracle's).

Per crystal (each a `[M]` array, so every mean gets its bootstrap 95 % interval from
`jaxdos.kernels.stats.mean`):
- mae: mean over the 256 bins of |pred - true| (states / eV / atom);
- mse: `kernels.metrics.mse`;
- r2: the spectrum's coefficient of determination
  1 - sum (pred - true)^2 / sum (true - mean(true))^2 over its bins (NaN for a constant
  reference spectrum, dropped from the mean); Table 7 does not say how it pools R^2, this is the
  per-spectrum reading;
- wasserstein: `kernels.metrics.wasserstein1` in eV (shape only, both spectra normalised);
- cosine: `kernels.metrics.cosine` (issue 16's goal: mean >= 0.9);
- band_gap, dos_at_fermi, integrated_dos: absolute errors of E_BG (Algorithm 1), DOS(E_F) and
  N(E_F) (`kernels.properties`).
"""

import numpy as np

from jaxdos.kernels import metrics, stats
from jaxdos.kernels.grid import check_dos
from jaxdos.kernels.properties import PROPERTY_NAMES, measure

__all__ = ["ROWS", "per_crystal", "table7"]

ROWS = ("mae", "mse", "r2", "wasserstein", "cosine", *(f"{p}_mae" for p in PROPERTY_NAMES))


def per_crystal(pred, true) -> dict[str, np.ndarray]:
    """Each of `ROWS` per crystal: `[M, 256] x [M, 256] -> {name: [M] float64}`.

    Raises:
        ValueError: naming `pred` or `true` if either is not `[M, 256]` or their M differ.
    """
    pred, true = check_dos(pred, "pred"), check_dos(true, "true")
    if pred.ndim != 2 or pred.shape != true.shape:
        raise ValueError(f"pred: expected the shape of true {true.shape}, got {pred.shape}")
    p, t = pred.astype(np.float64), true.astype(np.float64)
    err = p - t
    ss_tot = np.sum((t - t.mean(-1, keepdims=True)) ** 2, -1)
    out = {
        "mae": np.mean(np.abs(err), -1),
        "mse": np.asarray(metrics.mse(pred, true), np.float64),
        "r2": np.where(
            ss_tot > 0, 1 - np.sum(err**2, -1) / np.where(ss_tot > 0, ss_tot, 1), np.nan
        ),
        "wasserstein": np.asarray(metrics.wasserstein1(pred, true), np.float64),
        "cosine": np.asarray(metrics.cosine(pred, true), np.float64),
    }
    mp, mt = measure(pred), measure(true)
    for name in PROPERTY_NAMES:
        out[f"{name}_mae"] = np.abs(mp[name].astype(np.float64) - mt[name].astype(np.float64))
    return out


def table7(pred, true, *, seed: int = 0) -> dict[str, stats.Estimate]:
    """The mean of each of `ROWS` over the crystals, with its bootstrap 95 % interval."""
    return {k: stats.mean(v, seed=seed) for k, v in per_crystal(pred, true).items()}
