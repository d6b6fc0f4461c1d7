"""Appendix F audit statistics for a batch of generated spectra against a reference set.

- Edge jump (physical validity): for gapped samples (Algorithm 1 gap > 0.1 eV) the normalised
  jump DOS(e) / max(DOS), e the first bin at or above E_F (index >= 128) exceeding 1% of the row
  maximum; ~1 for a cliff edge, ~0.02 for DFT-smeared MP edges. Reported as a median.
- Per-bin non-negativity: fraction of samples with no negative bin.
- Within-batch pairwise cosine: mean cosine over distinct pairs i != j, computed in O(B L) as
  (|sum_i u_i|^2 - sum_i |u_i|^2) / (B (B - 1)) with u_i the unit-normalised spectra.
- Unique nearest reference: the number of distinct reference entries that are some sample's
  cosine-nearest neighbour (optionally excluding each sample's own index in the reference).
- 4-metric plausibility: for each metric in `AUDIT_METRICS` (cosine, Tanimoto, W1, MSE), a
  sample's best-match value against the reference is ranked within the reference's leave-one-out
  (LOO) best-match distribution: percentile = 100 * fraction of LOO values strictly worse.
  Plausible iff all four percentiles exceed 10. Agreement: the four decile buckets
  floor(percentile / 10) (clipped to 0..9) span at most two adjacent buckets (max - min <= 1).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdos.kernels.grid import FERMI_INDEX, check_dos, check_grid
from jaxdos.kernels.metrics import AUDIT_METRICS, COSINE, best_match
from jaxdos.kernels.properties import band_gap

__all__ = [
    "EdgeJump",
    "Plausibility",
    "edge_jump",
    "mean_pairwise_cosine",
    "unique_nearest",
    "loo_best",
    "plausibility",
    "unique_nearest_baseline",
    "audit",
]


class EdgeJump(NamedTuple):
    jump: jax.Array  # [B] DOS(e) / max(DOS); 0 where no bin above E_F exceeds the cut
    gapped: jax.Array  # [B] bool, Algorithm 1 gap > min_gap


class Plausibility(NamedTuple):
    percentiles: jax.Array  # [B, 4] in AUDIT_METRICS order, in [0, 100]
    plausible: jax.Array  # [B] bool, all four percentiles > threshold
    agree: jax.Array  # [B] bool, decile buckets span <= 2 adjacent buckets


@functools.partial(jax.jit, static_argnames=("min_gap", "rel_cut"))
def edge_jump(dos, min_gap: float = 0.1, rel_cut: float = 0.01) -> EdgeJump:
    """Normalised edge jump `[..., L] -> EdgeJump([...], [...])` (Appendix F)."""
    peak = jnp.max(check_grid(dos), axis=-1)
    above = dos[..., FERMI_INDEX:]
    hit = above > rel_cut * peak[..., None]
    first = jnp.argmax(hit, axis=-1)
    value = jnp.take_along_axis(above, first[..., None], axis=-1)[..., 0]
    jump = jnp.where(jnp.any(hit, axis=-1), value / jnp.maximum(peak, 1e-12), 0.0)
    return EdgeJump(jump=jump, gapped=band_gap(dos) > min_gap)


@jax.jit
def mean_pairwise_cosine(x):
    """Mean cosine over distinct pairs of a batch, `[B, L] -> []` (B >= 2)."""
    check_grid(x, "x", lead="B")
    n = jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
    u = x / n
    total = jnp.sum(jnp.square(jnp.sum(u, axis=0)))
    diag = jnp.sum(u * u)
    b = x.shape[0]
    return (total - diag) / (b * (b - 1))


@jax.jit
def unique_nearest(samples, reference, exclude=None):
    """Distinct cosine-nearest references, `[B, L] x [R, L] -> (count [], index [B])`."""
    check_grid(samples, "samples", lead="B")
    check_grid(reference, "reference", lead="R")
    _, idx = best_match(COSINE, samples, reference, exclude=exclude)
    hit = jnp.zeros(reference.shape[0], jnp.int32).at[idx].set(1)
    return jnp.sum(hit), idx


@jax.jit
def loo_best(reference):
    """LOO best-match values of each reference entry, `[R, L] -> [R, 4]` (AUDIT_METRICS order)."""
    check_grid(reference, "reference", lead="R")
    own = jnp.arange(reference.shape[0])
    return jnp.stack(
        [best_match(m, reference, reference, exclude=own)[0] for m in AUDIT_METRICS], axis=-1
    )


def _percentile(values, ref_values, higher_is_better):
    """Percent of `ref_values` [R] strictly worse than each of `values` [B] -> [B]."""
    sign = 1.0 if higher_is_better else -1.0
    v, r = sign * values, jnp.sort(sign * ref_values)
    return 100.0 * jnp.searchsorted(r, v, side="left") / r.shape[0]


@functools.partial(jax.jit, static_argnames="threshold")
def plausibility(samples, reference, ref_loo=None, threshold: float = 10.0) -> Plausibility:
    """4-metric LOO percentile plausibility of `[B, L]` samples against `[R, L]` references.

    Args:
        samples: `[B, L]` generated spectra.
        reference: `[R, L]` reference spectra (R >= 2).
        ref_loo: `[R, 4]` from `loo_best(reference)`; computed here when None (reuse it across
            settings that share a reference: it costs R^2 L per metric).
        threshold: percentile every metric must exceed (paper: 10).
    """
    check_grid(samples, "samples", lead="B")
    check_grid(reference, "reference", lead="R")
    ref_loo = loo_best(reference) if ref_loo is None else ref_loo
    cols = []
    for j, m in enumerate(AUDIT_METRICS):
        value, _ = best_match(m, samples, reference)
        cols.append(_percentile(value, ref_loo[:, j], m.higher_is_better))
    return _verdicts(jnp.stack(cols, axis=-1), threshold)


def _verdicts(pct, threshold) -> Plausibility:
    bucket = jnp.clip(jnp.floor(pct / 10.0), 0, 9)
    return Plausibility(
        percentiles=pct,
        plausible=jnp.all(pct > threshold, axis=-1),
        agree=(jnp.max(bucket, -1) - jnp.min(bucket, -1)) <= 1,
    )


@functools.partial(jax.jit, static_argnames=("n", "trials"))
def unique_nearest_baseline(reference, n: int, key, trials: int = 100):
    """Reference self-baseline of `unique_nearest`: `trials` random n-subsets, self excluded.

    Returns:
        `[trials]` int counts (the paper reports mean +- std, e.g. 911 +- 9).
    """
    check_grid(reference, "reference", lead="R")

    def one(t):
        idx = jax.random.choice(jax.random.fold_in(key, t), reference.shape[0], (n,), False)
        return unique_nearest(reference[idx], reference, exclude=idx)[0]

    return jax.lax.map(one, jnp.arange(trials))


def audit(samples, reference, *, min_gap: float = 0.1) -> dict:
    """Host-side checked Table 8 row for `[B, L]` samples vs `[R, L]` reference (B, R >= 2).

    Returns:
        dict of python floats: plausibility_rate and agreement_rate (%), edge_jump_median over
        gapped samples (NaN if none), n_gapped, nonneg_rate (%), pairwise_cosine,
        unique_nearest, and the same statistics for the reference itself under the `ref_` prefix
        (its plausibility by LOO).

    Raises:
        ValueError: naming `samples` or `reference` if not `[N, 256]`, N >= 2, finite.
    """
    s, r = check_dos(samples, "samples"), check_dos(reference, "reference")
    for name, a in (("samples", s), ("reference", r)):
        if a.ndim != 2 or a.shape[0] < 2:
            raise ValueError(f"{name}: expected shape [N >= 2, 256], got {a.shape}")
    s, r = jnp.asarray(s, jnp.float32), jnp.asarray(r, jnp.float32)
    ref_loo = loo_best(r)
    verdicts = (plausibility(s, r, ref_loo), _self_verdicts(ref_loo))
    out = {}
    for prefix, x, p, excl in (("", s, verdicts[0], None), ("ref_", r, verdicts[1], True)):
        exclude = jnp.arange(r.shape[0]) if excl else None
        stats = _batch_stats(x, r, p, exclude, min_gap=float(min_gap))
        stats = {k: v.item() for k, v in stats.items()}
        for k in ("plausibility_rate", "agreement_rate", "nonneg_rate"):
            stats[k] = 100.0 * stats[k] / x.shape[0]  # float64 on the host: 100 stays exact
        out.update({prefix + k: v for k, v in stats.items()})
    return out


@jax.jit
def _self_verdicts(ref_loo) -> Plausibility:
    """The reference against itself: its own LOO values ranked within the LOO set."""
    cols = [
        _percentile(ref_loo[:, j], ref_loo[:, j], m.higher_is_better)
        for j, m in enumerate(AUDIT_METRICS)
    ]
    return _verdicts(jnp.stack(cols, axis=-1), 10.0)


@functools.partial(jax.jit, static_argnames="min_gap")
def _batch_stats(x, r, p: Plausibility, exclude, *, min_gap: float) -> dict:
    ej = edge_jump(x, min_gap)
    return {
        "plausibility_rate": jnp.sum(p.plausible),  # counts: rates are taken on the host
        "agreement_rate": jnp.sum(p.agree),
        "edge_jump_median": jnp.nanmedian(jnp.where(ej.gapped, ej.jump, jnp.nan)),
        "n_gapped": jnp.sum(ej.gapped),
        "nonneg_rate": jnp.sum(jnp.all(x >= 0, axis=-1)),
        "pairwise_cosine": mean_pairwise_cosine(x),
        "unique_nearest": unique_nearest(x, r, exclude)[0],
    }
