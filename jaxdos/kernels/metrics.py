"""Spectral similarity metrics of Section 5.3 and Appendix F, batched over leading axes `[..., L]`.

Every pair metric takes two spectra that broadcast against each other (`[..., L]`) and returns
`[...]`. Conventions (the paper's footnote 1 in Appendix F, made precise):

- cosine:   <x, y> / (|x| |y|); 0 when either spectrum is all zero.
- pearson:  cosine of the mean-centred spectra (Pearson's r over the L bins); 0 for a constant one.
- jensen_shannon: JS *divergence* (not scipy's distance, which is its square root) in bits
  (log base 2, so it lies in [0, 1]) between ReLU(x) and ReLU(y), each normalised to sum 1.
- tanimoto: <x, y> / (|x|^2 + |y|^2 - <x, y>); unlike cosine it penalises a scale mismatch.
- wasserstein1: dE * sum_i |F_x(i) - F_y(i)|, F the cumulative sum of ReLU(spectrum) normalised to
  sum 1, dE = 0.078125 eV; equals scipy.stats.wasserstein_distance on the bin centres in eV.
  It compares shapes only (both spectra are normalised), so it is blind to a global scale.
- mse:      mean over bins of (x - y)^2 (per-atom DOS units squared).

Pairwise versions `[B, L] x [R, L] -> [B, R]` and best matches `[B, L] x [R, L] -> [B]` run in row
chunks with `lax.map(..., batch_size=chunk)` so peak memory is `chunk * R * L` elements, not
`B * R * L` (1024 x 6000 x 256 fits easily). The four audit metrics are exposed as `Metric`
values (a type, not a string) carrying their orientation.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.kernels.grid import BIN_WIDTH, check_dos, check_grid

__all__ = [
    "cosine",
    "pearson",
    "jensen_shannon",
    "tanimoto",
    "wasserstein1",
    "mse",
    "Metric",
    "COSINE",
    "TANIMOTO",
    "WASSERSTEIN1",
    "MSE",
    "AUDIT_METRICS",
    "pairwise",
    "best_match",
    "compare",
]

_EPS = 1e-12  # guards divisions for all-zero spectra; far below any real DOS norm
_HI = jax.lax.Precision.HIGHEST  # TF32 on H100 would cost ~3 digits in pairwise dot products


def _dot(x, y):
    return jnp.sum(x * y, axis=-1)


def _check_pair(x, y):
    check_grid(x, "x")
    check_grid(y, "y")


def cosine(x, y):
    """Cosine similarity `[..., L] x [..., L] -> [...]`."""
    _check_pair(x, y)
    return _dot(x, y) / jnp.sqrt(jnp.maximum(_dot(x, x) * _dot(y, y), _EPS))


def pearson(x, y):
    """Pearson correlation over bins `[..., L] x [..., L] -> [...]`."""
    _check_pair(x, y)
    xc = x - jnp.mean(x, axis=-1, keepdims=True)
    yc = y - jnp.mean(y, axis=-1, keepdims=True)
    return cosine(xc, yc)


def _normalise(x):
    """ReLU then divide by the sum, `[..., L]`; an all-zero spectrum stays all zero."""
    p = jnp.maximum(x, 0.0)
    return p / jnp.maximum(jnp.sum(p, axis=-1, keepdims=True), _EPS)


def _kl_bits(p, m):
    safe = p > 0  # 0 * log 0 = 0; where p > 0, m >= p / 2 > 0
    ratio = jnp.where(safe, p, 1.0) / jnp.where(safe, m, 1.0)
    return jnp.sum(jnp.where(safe, p * jnp.log(ratio), 0.0), axis=-1) / jnp.log(2.0)


def jensen_shannon(x, y):
    """Jensen-Shannon divergence in bits, `[..., L] x [..., L] -> [...]`, in [0, 1]."""
    _check_pair(x, y)
    p, q = _normalise(x), _normalise(y)
    m = 0.5 * (p + q)
    return 0.5 * _kl_bits(p, m) + 0.5 * _kl_bits(q, m)


def tanimoto(x, y):
    """Tanimoto similarity `[..., L] x [..., L] -> [...]`; 1 iff x == y (non-zero)."""
    _check_pair(x, y)
    xy = _dot(x, y)
    return xy / jnp.maximum(_dot(x, x) + _dot(y, y) - xy, _EPS)


def _cdf(x):
    return jnp.cumsum(_normalise(x), axis=-1)


def wasserstein1(x, y, bin_width: float = BIN_WIDTH):
    """1-Wasserstein distance along energy in eV, `[..., L] x [..., L] -> [...]`."""
    _check_pair(x, y)
    return bin_width * jnp.sum(jnp.abs(_cdf(x) - _cdf(y)), axis=-1)


def mse(x, y):
    """Mean squared error over bins, `[..., L] x [..., L] -> [...]`."""
    _check_pair(x, y)
    return jnp.mean(jnp.square(x - y), axis=-1)


# --- pairwise forms: `prep` maps spectra to features once, `row` scores one row vs all refs -----


def _unit(x):
    return x / jnp.sqrt(jnp.maximum(_dot(x, x), _EPS))[..., None]


def _with_sq(x):
    return x, _dot(x, x)


def _row_cosine(u, refs):
    return jnp.matmul(refs, u, precision=_HI)


def _row_tanimoto(xs, refs):
    (x, sx), (y, sy) = xs, refs
    xy = jnp.matmul(y, x, precision=_HI)
    return xy / jnp.maximum(sx + sy - xy, _EPS)


def _row_w1(fx, fy):
    return BIN_WIDTH * jnp.sum(jnp.abs(fy - fx), axis=-1)


def _row_mse(x, y):
    return jnp.mean(jnp.square(y - x), axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Metric:
    """One audit metric: its pair function, its pairwise form and which direction is better.

    Attributes:
        name: short label used in reports.
        higher_is_better: True for similarities (cosine, Tanimoto), False for distances.
        pair: `[..., L] x [..., L] -> [...]`.
        prep: per-spectrum features computed once, `[N, L] -> pytree of [N, ...]`.
        row: one prepared row vs all prepared references -> `[R]`.
    """

    name: str
    higher_is_better: bool
    pair: Callable
    prep: Callable
    row: Callable


COSINE = Metric(name="cosine", higher_is_better=True, pair=cosine, prep=_unit, row=_row_cosine)
TANIMOTO = Metric(
    name="tanimoto", higher_is_better=True, pair=tanimoto, prep=_with_sq, row=_row_tanimoto
)
WASSERSTEIN1 = Metric(
    name="wasserstein1", higher_is_better=False, pair=wasserstein1, prep=_cdf, row=_row_w1
)
MSE = Metric(name="mse", higher_is_better=False, pair=mse, prep=lambda x: x, row=_row_mse)
AUDIT_METRICS = (COSINE, TANIMOTO, WASSERSTEIN1, MSE)  # Appendix F's 4-metric criterion


def _default_chunk(n_ref: int, n_bins: int) -> int:
    # Keep the per-chunk [chunk, R, L] intermediate near 2**24 elements (64 MiB in float32).
    return int(max(1, min(256, 2**24 // max(1, n_ref * n_bins))))


def pairwise(metric: Metric, x, y, *, chunk: int | None = None):
    """All-pairs scores `[B, L] x [R, L] -> [B, R]`, computed in chunks of `chunk` rows of x."""
    check_grid(x, "x", lead="B")
    check_grid(y, "y", lead="R")
    chunk = chunk or _default_chunk(y.shape[0], y.shape[-1])
    px, py = metric.prep(x), metric.prep(y)
    return _map_rows(lambda r: metric.row(r, py), px, chunk)


def best_match(metric: Metric, x, y, *, exclude=None, chunk: int | None = None):
    """Best reference per row under `metric`: `[B, L] x [R, L] -> (value [B], index [B])`.

    Best is the max for similarities and the min for distances; the `[B, R]` matrix is never
    materialised. `exclude` (`[B]` int, -1 for none) removes one reference per row, e.g. the row
    itself for leave-one-out (LOO) self-similarity.
    """
    check_grid(x, "x", lead="B")
    check_grid(y, "y", lead="R")
    chunk = chunk or _default_chunk(y.shape[0], y.shape[-1])
    b, r = x.shape[0], y.shape[0]
    exclude = jnp.full((b,), -1, jnp.int32) if exclude is None else jnp.asarray(exclude)
    sign = 1.0 if metric.higher_is_better else -1.0
    py = metric.prep(y)

    def row(args):
        feats, skip = args
        score = sign * metric.row(feats, py)
        score = jnp.where(jnp.arange(r) == skip, -jnp.inf, score)
        i = jnp.argmax(score)
        return sign * score[i], i

    return _map_rows(row, (metric.prep(x), exclude), chunk)


def _map_rows(fn, xs, chunk: int):
    """`lax.map` in chunks of `chunk` rows; a plain vmap when everything fits in one chunk."""
    if jax.tree.leaves(xs)[0].shape[0] <= chunk:  # static shapes: no scan, faster to compile
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=chunk)


def compare(x, y) -> dict:
    """Host-side checked evaluation of all six metrics; returns numpy arrays keyed by name.

    Raises:
        ValueError: naming `x` or `y` if either is not `[..., 256]` and finite, or if their leading
            shapes do not broadcast.
    """
    a, b = check_dos(x, "x"), check_dos(y, "y")
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        msg = f"x, y: expected broadcastable shapes, got {a.shape} and {b.shape}"
        raise ValueError(msg) from None
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    out = _all_pairs(a, b)
    return {k: np.asarray(v) for k, v in out.items()}


@jax.jit
def _all_pairs(x, y):
    return {
        "cosine": cosine(x, y),
        "pearson": pearson(x, y),
        "jensen_shannon": jensen_shannon(x, y),
        "tanimoto": tanimoto(x, y),
        "wasserstein1": wasserstein1(x, y),
        "mse": mse(x, y),
    }
