"""Every public kernel that assumes the 256-bin grid rejects a wrong last axis, naming the argument.

The check reads only the static shape, so it fires the same way under `jit` (at trace time) and a
correct shape still compiles and runs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.kernels import audit, filters, grid, metrics, properties, tokenizer

L = grid.N_BINS
GOOD = np.abs(np.random.default_rng(0).normal(size=(3, L))).astype(np.float32)
BAD = np.ones((1, 100), np.float32)  # the example: band_gap of this used to return 0

# (name, call on (a, b), argument named in the error). `b` is a correct second operand.
ONE = [
    ("band_gap", lambda a, b: properties.band_gap(a), "dos"),
    ("dos_at_fermi", lambda a, b: properties.dos_at_fermi(a), "dos"),
    ("integrated_dos", lambda a, b: properties.integrated_dos(a), "dos"),
    ("all_properties", lambda a, b: properties.all_properties(a), "dos"),
    ("measure_bands", lambda a, b: filters.measure_bands(a), "dos"),
    ("tcm_filter", lambda a, b: filters.tcm_filter(a), "dos"),
    ("te_filter", lambda a, b: filters.te_filter(a, b), "dos"),
    ("te_filter_ref", lambda a, b: filters.te_filter(b, a), "reference"),
    ("scale_of", lambda a, b: tokenizer.scale_of(a), "dos"),
    ("encode", lambda a, b: tokenizer.encode(a), "dos"),
    (
        "decode",
        lambda a, b: tokenizer.decode(a.astype(jnp.int32), jnp.ones(a.shape[:-1])),
        "tokens",
    ),
    ("gap_bins", lambda a, b: tokenizer.gap_bins(a.astype(jnp.int32)), "levels"),
    ("edge_jump", lambda a, b: audit.edge_jump(a), "dos"),
    ("mean_pairwise_cosine", lambda a, b: audit.mean_pairwise_cosine(a), "x"),
    ("unique_nearest", lambda a, b: audit.unique_nearest(a, b), "samples"),
    ("unique_nearest_ref", lambda a, b: audit.unique_nearest(b, a), "reference"),
    ("loo_best", lambda a, b: audit.loo_best(a), "reference"),
    ("plausibility", lambda a, b: audit.plausibility(a, b), "samples"),
    ("plausibility_ref", lambda a, b: audit.plausibility(b, a), "reference"),
    (
        "unique_nearest_baseline",
        lambda a, b: audit.unique_nearest_baseline(a, 1, jax.random.key(0), trials=2),
        "reference",
    ),
]
PAIR = [metrics.cosine, metrics.pearson, metrics.jensen_shannon, metrics.tanimoto]
PAIR += [metrics.wasserstein1, metrics.mse]
ONE += [(f.__name__, lambda a, b, f=f: f(a, b), "x") for f in PAIR]
ONE += [(f.__name__ + "_y", lambda a, b, f=f: f(b, a), "y") for f in PAIR]
ONE += [
    ("pairwise", lambda a, b: metrics.pairwise(metrics.COSINE, a, b), "x"),
    ("pairwise_y", lambda a, b: metrics.pairwise(metrics.COSINE, b, a), "y"),
    ("best_match", lambda a, b: metrics.best_match(metrics.MSE, a, b), "x"),
    ("best_match_y", lambda a, b: metrics.best_match(metrics.MSE, b, a), "y"),
]


@pytest.mark.parametrize("fn, arg", [(f, a) for _, f, a in ONE], ids=[n for n, _, _ in ONE])
def test_wrong_last_axis_raises_naming_the_argument(fn, arg):
    with pytest.raises(ValueError, match=rf"^{arg}: expected shape \[.*256\], got \(1, 100\)"):
        fn(jnp.asarray(BAD), jnp.asarray(GOOD))
    # Under jit the shape is static: the same error at trace time, and a right shape still runs.
    with pytest.raises(ValueError, match=rf"^{arg}: "):
        jax.jit(fn)(jnp.asarray(BAD), jnp.asarray(GOOD))
    out = jax.jit(fn)(jnp.asarray(GOOD), jnp.asarray(GOOD))
    assert all(np.all(np.isfinite(np.asarray(v, np.float32))) for v in jax.tree.leaves(out))


def test_batch_kernels_need_exactly_one_batch_axis():
    with pytest.raises(ValueError, match=r"^x: expected shape \[B, 256\], got \(256,\)"):
        metrics.pairwise(metrics.COSINE, GOOD[0], GOOD)
    with pytest.raises(ValueError, match=r"^reference: expected shape \[R, 256\]"):
        audit.loo_best(GOOD[None])


def test_check_grid_passes_through_and_accepts_any_leading_axes():
    x = np.zeros((2, 3, L))
    assert grid.check_grid(x) is x
    with pytest.raises(ValueError, match=r"^dos: expected shape \[\.\.\., 256\], got \(\)"):
        grid.check_grid(np.float32(1.0))
    with pytest.raises(ValueError, match=r"^dos: expected shape \[\.\.\., 256\], got \(1, 100\)"):
        grid.check_dos(BAD)
