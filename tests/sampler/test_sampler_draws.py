"""Issue 17's cheaper random choices keep Algorithm 2's laws: the default draw (one uniform per bin,
inverse CDF) follows softmax(ℓ') at the real vocabulary, the corrector re-masks exactly ⌊α·n⌋
eligible bins uniformly, `top_subset` equals a stable full ranking, seeds reproduce, and the
guided sampler with corrector gives the same tokens on 1 and 8 fake devices."""

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from fake_devices import run_on_fake_devices
from sampler_toy import SMALL
from test_sampling_options import CFG, GUIDE, PRIOR

from jaxdos import sharding
from jaxdos.kernels.tokenizer import BG_ID, MASK_ID, N_OUTPUT
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.sampling import (
    draw,
    guided_step_logits,
    initial_tokens,
    remask_subset,
    sample,
    sample_from,
    top_subset,
)

HERE = Path(__file__).resolve().parent


def _keys(n, seed=0):
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))


def _grouped_chi2_p(draws, probs, min_expected=40.0) -> float:
    """Chi-square p-value of `draws` `[N]` against `probs` `[V]`, consecutive classes pooled into
    cells of expected count >= `min_expected` (a partition, so the test stays exact)."""
    counts = np.bincount(draws, minlength=probs.size).astype(np.float64)
    expected = probs * draws.size
    cells_o, cells_e, o, e = [], [], 0.0, 0.0
    for c, x in zip(counts, expected, strict=True):
        o, e = o + c, e + x
        if e >= min_expected:
            cells_o.append(o), cells_e.append(e)
            o = e = 0.0
    cells_o[-1] += o
    cells_e[-1] += e
    assert len(cells_o) >= 10  # enough cells that the test has power
    return scipy.stats.chisquare(cells_o, np.asarray(cells_e) * sum(cells_o) / sum(cells_e)).pvalue


def test_default_draw_follows_the_softmax_of_guided_network_logits(small_params):
    """4000 examples (own keys) draw three bins of one guided state: chi-square per bin against
    softmax(ℓ') in float64, over all 1026 classes. The random-weight net is sharp (1-6 effective
    classes), so ℓ' is flattened (x 0.1) to spread the mass over hundreds of levels, and its [BG]
    (~1e-17 here) raised to 1/4 of the mass so the CDF's first slice (DOS order) is tested too."""
    tokens = initial_tokens(1, PRIOR).at[:, :60].set(300)
    logits, _ = guided_step_logits(
        small_params, tokens, jnp.zeros(1), jnp.full(1, 0.5), model_config=SMALL, guidance=GUIDE
    )
    bins = [60, 130, 250]  # masked, outside the prior
    logits = 0.1 * logits
    levels = jax.nn.logsumexp(logits[..., :BG_ID], axis=-1)
    logits = logits.at[..., BG_ID].set(levels - np.log(3.0))
    row = np.asarray(logits[0, bins], np.float64)
    n = 4000
    got = np.asarray(draw(_keys(n), jnp.broadcast_to(logits[:, bins], (n, 3, N_OUTPUT)), CFG))
    for j in range(3):
        p = np.exp(row[j] - row[j].max())
        p /= p.sum()
        np.testing.assert_allclose(p[BG_ID], 0.25, rtol=1e-4)
        assert _grouped_chi2_p(got[:, j], p) > 1e-3


def test_default_draw_never_takes_a_class_of_probability_zero():
    """-inf classes (a nucleus, a forbidden [BG]) are never drawn; [BG] alone is always drawn."""
    base = jnp.full(N_OUTPUT, -jnp.inf).at[jnp.array([0, 1024, 7])].set(jnp.array([0.0, 0.0, 3.0]))
    got = np.asarray(draw(_keys(200), jnp.broadcast_to(base, (200, 16, N_OUTPUT)), CFG))
    assert set(np.unique(got)) == {0, 7, 1024}
    only_bg = jnp.full((2, 8, N_OUTPUT), -jnp.inf).at[..., BG_ID].set(0.0)
    np.testing.assert_array_equal(np.asarray(draw(_keys(2), only_bg, CFG)), BG_ID)


def _eligible_patterns(rng, b):
    """`[b, 256]` bool: the prior never, a random share masked, plus the all/none edge cases."""
    masked = rng.random((b, 256)) < rng.uniform(0.0, 0.9, (b, 1))
    eligible = ~masked & ~PRIOR[None]
    eligible[0] = ~PRIOR
    eligible[1] = False
    eligible[2] = True  # no prior: every bin (floor(alpha * 256))
    return eligible


def test_remask_subset_has_exact_size_and_stays_eligible(rng):
    eligible = _eligible_patterns(rng, 64)
    for alpha in (0.1, 0.3, 0.55, 0.9):
        got = np.asarray(remask_subset(_keys(64), jnp.asarray(eligible), alpha))
        np.testing.assert_array_equal(got.sum(-1), np.floor(alpha * eligible.sum(-1)))
        assert not np.any(got & ~eligible)


def test_remask_subset_picks_every_eligible_bin_with_equal_probability():
    """3000 keys, one pattern of n eligible bins, k = ⌊α n⌋ of them each time. A uniform k-subset
    has Cov(I) = p(1-p) n/(n-1) (Id - 11ᵀ/n), p = k/n, so Σ (O-E)² (n-1) / (n N p(1-p)) is
    chi-square with n-1 degrees of freedom."""
    eligible = np.ones(256, bool)
    eligible[PRIOR] = False
    eligible[::3] = False
    n_draws, n = 3000, eligible.sum()
    got = np.asarray(
        remask_subset(
            _keys(n_draws, 5), jnp.broadcast_to(jnp.asarray(eligible), (n_draws, 256)), 0.3
        )
    )
    k = int(np.floor(0.3 * n))
    assert np.all(got.sum(-1) == k) and not np.any(got[:, ~eligible])
    p = k / n
    obs = got[:, eligible].sum(0)
    stat = np.sum((obs - n_draws * p) ** 2) * (n - 1) / (n * n_draws * p * (1 - p))
    assert scipy.stats.chi2.sf(stat, n - 1) > 1e-3
    # Pairs too: bins 1 and 2 (adjacent, both eligible) are chosen together at rate p (k-1)/(n-1).
    both = np.mean(got[:, 1] & got[:, 2])
    want = p * (k - 1) / (n - 1)
    assert abs(both - want) < 4 * np.sqrt(want * (1 - want) / n_draws)


def test_top_subset_equals_a_stable_full_ranking(rng):
    """Against the double `argsort` it replaces: small integer scores force ties (lower index
    first), k from 0 to L, and k_max = L as `confident_unmask` uses it."""
    score = rng.integers(0, 12, (200, 40)).astype(np.float32)
    k = rng.integers(0, 41, 200)
    rank = np.argsort(np.argsort(-score, axis=-1, kind="stable"), axis=-1, kind="stable")
    want = rank < k[:, None]
    got = np.asarray(top_subset(jnp.asarray(score), jnp.asarray(k), 40))
    np.testing.assert_array_equal(got, want)
    small = np.minimum(k, 7)
    got = np.asarray(top_subset(jnp.asarray(score), jnp.asarray(small), 7))
    np.testing.assert_array_equal(got, rank < small[:, None])


def test_draws_and_subsets_reproduce_by_seed(rng):
    eligible = jnp.asarray(_eligible_patterns(rng, 16))
    logits = jnp.zeros((16, 32, N_OUTPUT))
    a, b, c = (remask_subset(_keys(16, s), eligible, 0.3) for s in (1, 1, 2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.any(np.asarray(a) != np.asarray(c))
    d, e, f = (draw(_keys(16, s), logits, DOSSamplingConfig()) for s in (1, 1, 2))
    np.testing.assert_array_equal(np.asarray(d), np.asarray(e))
    assert np.mean(np.asarray(d) != np.asarray(f)) > 0.9


def trajectory(params, n_devices: int) -> np.ndarray:
    """Guided, corrector, prior: 8 examples batch-sharded over the first `n_devices` devices."""
    mesh = sharding.make_mesh(n_devices)
    fn = jax.jit(
        partial(sample_from, model_config=SMALL, sampling_config=CFG, guidance=GUIDE),
        out_shardings=sharding.batch_sharding(mesh),
    )
    tokens, log_scale, index = sharding.shard_batch(
        (
            np.asarray(initial_tokens(8, PRIOR)),
            np.log(np.linspace(0.5, 3.0, 8)).astype(np.float32),
            np.arange(8, dtype=np.int32),
        ),
        mesh,
    )
    out = fn(sharding.replicate(params, mesh), jax.random.key(11), tokens, log_scale, index)
    return np.asarray(out)


_EIGHT = """
import sys
import jax
import numpy as np
from conftest import small_params
from test_sampler_draws import trajectory
assert jax.device_count() == 8
np.save(sys.argv[1], trajectory(small_params.__wrapped__(), 8))
"""


@pytest.mark.slow  # compiles the guided sampler with corrector twice, once on 8 fake devices
def test_one_and_eight_fake_devices_give_the_same_dos(small_params, tmp_path):
    out = tmp_path / "eight.npy"
    run_on_fake_devices(_EIGHT, HERE, args=[out], timeout=600)
    one = trajectory(small_params, 1)
    direct = sample(
        small_params,
        jax.random.key(11),
        jnp.linspace(0.5, 3.0, 8),
        model_config=SMALL,
        sampling_config=CFG,
        guidance=GUIDE,
        prior_mask=PRIOR,
    )
    np.testing.assert_array_equal(one, np.asarray(direct))
    assert not np.any(one == MASK_ID) and np.all(one[:, PRIOR] == BG_ID)
    np.testing.assert_array_equal(np.load(out), one)
