"""Guided predictor-corrector sampling, Algorithm 2, as one jitted `lax.scan`.

Contract for callers that shard the batch (`jaxdos.sharding`, `jaxdos.pipeline`):

* Randomness is per example. Example b uses the key `fold_in(key, example_index[b])`, and step i
  uses `fold_in(that, i)`; nothing random is drawn for the batch as a whole. So the same `key` and
  the same `example_index` give the same sample for that example whatever the batch size, the
  batch order or the number of devices the batch is split over. Pass global indices (e.g.
  `chunk * batch + arange(batch)`) when streaming; the default is `arange(B)`.
* Examples never interact: the network is batch-native with no cross-example op. (Equality across
  splits is exact as long as XLA computes a row of a matmul the same way at any batch size, which
  holds on CPU and GPU in our tests; a float difference could only flip a draw at a near-tie.)
* `sample_from` is the pure, unjitted trajectory; wrap it in your own `jax.jit` with shardings
  (batch axis on `P('data')`, params replicated). `sample` is the host-validated, jitted entry
  point for a single device.

Per step i (t_i > t_{i+1} on a uniform grid from 1 to `t_min`):
  1. ℓ = q_θ(x, K, t_i) (carry-over: committed bins stay one-hot); ℓ' = guided logits, eq. (1).
  2. each masked bin unmasks with probability r_i = (t_i - t_{i+1}) / t_i (every masked bin at the
     last step) and takes a value drawn from softmax(ℓ') (arg-max at the last step if configured).
  3. unless it is the last step, `corrector_steps` corrector iterations: re-mask ⌊α·n⌋ of the n
     committed non-prior bins chosen uniformly, recompute ℓ' at t_i and redraw them.
How the random choices are made (issue 17; the laws are Algorithm 2's, the stream is not the
categorical-Gumbel one of earlier versions): a bin's value is an inverse-CDF draw at one uniform per
bin (`ordinal_draw`), not Gumbel-max over all V' classes, so a step draws [B, L] uniforms rather
than [B, L, V']; the corrector's uniform subset of exact size is the top ⌊α·n⌋ of iid random
scores (`top_subset`, one `lax.top_k`), not a double `argsort`. Keys stay threefry: `rbg` /
`unsafe_rbg` draw through XLA's RngBitGenerator with the platform's default algorithm, so their
values are not promised equal across backends or shardings (the per-example contract above),
and with one uniform per bin the threefry work left is small next to the network.

Prior bins (`prior_mask`, fixed to [BG] at initialisation) are committed from the start, so the
predictor never touches them and the corrector never re-masks them.

Options beside Algorithm 2 (`DOSSamplingConfig`; the defaults are Algorithm 2 bit for bit): step 2
may commit the round(r_i·n) most confident masked bins instead of a random subset
(`unmask_order="confidence"`), and every draw (predictor and corrector) may use softmax(ℓ'/T)
(`temperature`; 0 = arg-max) restricted to a top-p nucleus (`top_p`), and every draw may be an
inverse-CDF draw at a uniform taken from one smooth noise field per example (`noise_length` > 0,
its correlation length in bins, shared by all steps): each bin's draw still follows its own
softmax, but neighbouring bins take neighbouring quantiles, so spectra come out smooth where the
network's per-bin distributions are broad. Guidance, the corrector and the prior are unchanged.
"""

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.kernels.grid import N_BINS
from jaxdos.kernels.tokenizer import BG_ID, MASK_ID
from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig
from jaxdos.sampler.guidance import ClassifierGuidance, Guidance, NoGuidance, guided_logits
from jaxdos.sampler.loss import time_grid, unmask_prob
from jaxdos.sampler.model import init_params, log_probs
from jaxdos.sampler.regressor import init_regressor, predict_properties

__all__ = [
    "init_sampler_params",
    "SamplerParams",
    "SamplerState",
    "initial_tokens",
    "guided_step_logits",
    "nucleus",
    "noise_field",
    "ordinal_draw",
    "draw",
    "top_subset",
    "remask_subset",
    "confident_unmask",
    "sampler_step",
    "sample_from",
    "sample",
]


# fold_in tag of an example's noise field (`noise_field`): no step index reaches it.
_FIELD_TAG = 2**31 - 1


class SamplerParams(NamedTuple):
    """Everything the sampler reads: score network, regressor and property statistics `[P]`."""

    diffusion: dict
    regressor: dict
    prop_mean: jax.Array
    prop_std: jax.Array


def init_sampler_params(key, model_config: ModelConfig) -> SamplerParams:
    """Freshly initialised network and regressor with identity property statistics (0 mean, 1 std):
    the untrained sampler that benchmarks and tests run."""
    k_net, k_reg = jax.random.split(key)
    return SamplerParams(
        diffusion=init_params(k_net, model_config),
        regressor=init_regressor(k_reg, model_config),
        prop_mean=jnp.zeros(3),
        prop_std=jnp.ones(3),
    )


class SamplerState(NamedTuple):
    """Loop state of the scan: tokens `[B, L]` int32 (MASK where not yet decided)."""

    tokens: jax.Array


def initial_tokens(batch: int, prior_mask=None):
    """`[B, L]` int32: [BG] where `prior_mask` (`[L]` or `[B, L]` bool) is set, [MASK] elsewhere."""
    if prior_mask is None:
        return jnp.full((batch, N_BINS), MASK_ID, jnp.int32)
    prior = jnp.broadcast_to(jnp.asarray(prior_mask, bool), (batch, N_BINS))
    return jnp.where(prior, BG_ID, MASK_ID).astype(jnp.int32)


def guided_step_logits(params: SamplerParams, tokens, log_scale, t, *, model_config, guidance):
    """ℓ' `[B, L, V']` at time t `[B]` (Algorithm 2 lines 3-4 / 13-14) and residuals `[B, P_t]`."""
    logp = log_probs(params.diffusion, tokens, log_scale, t, config=model_config)

    def predict_fn(probs, ls):
        return predict_properties(
            params.regressor, params.diffusion, probs, ls, config=model_config
        )

    return guided_logits(logp, guidance, predict_fn, log_scale, params.prop_mean, params.prop_std)


def nucleus(logits, top_p: float):
    """Logits `[..., V]` with everything outside the top-p nucleus set to -inf: the smallest set
    of the most likely classes whose probability reaches `top_p` (ties at its edge are kept)."""
    desc = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)
    p = jax.nn.softmax(desc, axis=-1)
    # Class k (in descending order) is kept if the mass before it is below top_p: >= 1 kept.
    n_keep = jnp.sum(jnp.cumsum(p, axis=-1) - p < top_p, axis=-1, keepdims=True)
    cutoff = jnp.take_along_axis(desc, n_keep - 1, axis=-1)
    return jnp.where(logits >= cutoff, logits, -jnp.inf)


def noise_field(ex_keys, n_bins: int, length: float):
    """`[B, L]` uniforms, U(0, 1) at every bin, from one smooth Gaussian field per example.

    White noise convolved with a Gaussian of width `length` bins (scaled to unit variance, so
    Φ of it is exactly uniform), on a window padded by 3·length so the edges are not correlated
    with each other. The key is the example's own, tagged apart from every step's.
    """
    half = math.ceil(3 * length)
    x = jnp.arange(-half, half + 1, dtype=jnp.float32)
    kernel = jnp.exp(-0.5 * (x / length) ** 2)
    kernel = kernel / jnp.sqrt(jnp.sum(kernel**2))

    def one(k):
        eps = jax.random.normal(jax.random.fold_in(k, _FIELD_TAG), (n_bins + 2 * half,))
        return jnp.convolve(eps, kernel, mode="valid")

    return jax.scipy.stats.norm.cdf(jax.vmap(one)(ex_keys))


def ordinal_draw(u, logits):
    """Inverse-CDF draw `[B, L]` of softmax(ℓ) `[B, L, V']` at uniforms u `[B, L]`, the classes in
    DOS order: [BG] (decodes to 0) first, then levels 0..1024. With u iid this is a categorical
    draw; with u from `noise_field`, neighbouring bins take neighbouring quantiles."""
    # One pass over [B, L, V']: unnormalised exp(ℓ - max) and its cumsum, with u scaled by the
    # cumsum's own total instead of dividing every class (the draw only compares against u).
    # DOS order without a rolled copy: [BG] (the last class) takes the CDF's first slice. The
    # class is the number of CDF values <= u, so a class of probability 0 is never drawn.
    bg = logits.shape[-1] - 1  # BG_ID for the sampler's V' = N_OUTPUT classes
    e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    levels = jnp.cumsum(e[..., :bg], axis=-1)  # [B, L, V' - 1]
    p_bg = e[..., bg]
    x = u * (p_bg + levels[..., -1]) - p_bg  # u's position in the levels' CDF; < 0 is [BG]
    idx = jnp.sum(levels <= x[..., None], axis=-1)
    idx = jnp.minimum(idx, bg - 1)  # u * total rounded up to the total
    return jnp.where(x < 0, bg, idx).astype(jnp.int32)


def draw(keys, logits, sampling_config: DOSSamplingConfig, u=None):
    """One draw per bin, per-example keys `[B]`, logits `[B, L, V']` -> `[B, L]` int32.

    Categorical from softmax(ℓ') (Algorithm 2), or, as configured, from softmax(ℓ' / temperature)
    restricted to its top-p nucleus; always by inverse CDF (`ordinal_draw`), at `u` `[B, L]` when
    given (`noise_field`), else at one iid uniform per bin from the example's key.
    Temperature 0 is the arg-max (`keys` and `u` unused).
    """
    cfg = sampling_config
    if cfg.temperature == 0:
        return jnp.argmax(logits, -1).astype(jnp.int32)
    if cfg.temperature != 1:
        logits = logits / cfg.temperature
    if cfg.top_p < 1:
        logits = nucleus(logits, cfg.top_p)
    if u is None:
        # One uniform per bin and the inverse CDF: the same categorical law as Gumbel-max
        # (`jax.random.categorical`), which spends a threefry draw on every class of every bin.
        u = jax.vmap(lambda k: jax.random.uniform(k, logits.shape[1:2]))(keys)
    return ordinal_draw(u, logits)


def top_subset(score, k, k_max: int):
    """`[B, L]` bool: the k[b] highest-scoring bins of `score` `[B, L]`, exactly k[b] of them.

    `k` `[B]` int, at most the static `k_max`; ties go to the lower bin index (as a stable sort).
    One `lax.top_k` of size `k_max` and a scatter: no full ranking (a double `argsort`) of L bins.
    """
    b, n_bins = score.shape
    k_max = min(int(k_max), n_bins)
    _, idx = jax.lax.top_k(score, k_max)  # [B, k_max], best first
    take = jnp.arange(k_max)[None, :] < k[:, None]
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], idx.shape)
    return jnp.zeros((b, n_bins), bool).at[rows, idx].set(take)


def confident_unmask(logits, masked, r, last):
    """`[B, L]` bool: the round(r * n) masked bins (all at the last step) of highest confidence.

    Confidence is the maximum probability of a bin's guided distribution softmax(ℓ') `[B, L, V']`;
    `masked` `[B, L]` bool, `r` the step's unmask probability (scalar), `last` a scalar bool.
    MaskGIT's ordering with Algorithm 2's expected count per step.
    """
    # log max softmax = max - logsumexp, without a [B, L, V'] log-softmax buffer.
    top = jnp.max(logits, axis=-1)
    log_conf = top - jax.nn.logsumexp(logits, axis=-1)
    conf = jnp.where(masked, log_conf, -jnp.inf)
    n = masked.sum(-1)
    k = jnp.where(last, n, jnp.round(r * n).astype(n.dtype))  # [B]
    return masked & top_subset(conf, k, masked.shape[1])


def remask_subset(keys, eligible, alpha: float):
    """`[B, L]` bool: ⌊α·n⌋ of the n `eligible` `[B, L]` bins of each example, uniformly at random
    (keys `[B]`, one per example): Algorithm 2's corrector re-mask set (line 11).

    The top ⌊α·n⌋ of iid scores of 31 random bits (ties ~1e-5 per draw, then the lower index);
    ineligible bins score -1, below every eligible one, and ⌊α·n⌋ <= n.
    """
    n_bins = eligible.shape[1]
    n_remask = jnp.floor(alpha * eligible.sum(-1)).astype(jnp.int32)  # [B]
    bits = jax.vmap(lambda k: jax.random.bits(k, (n_bins,), jnp.uint32))(keys)
    score = jnp.where(eligible, (bits >> 1).astype(jnp.int32), -1)
    # floor(alpha n) <= floor(alpha L); +1 covers float32 vs float64 rounding of the product.
    return top_subset(score, n_remask, math.floor(alpha * n_bins) + 1)


def _corrector(
    params, tokens, ex_keys, log_scale, t, prior, field, *, model_config, sampling_config, guidance
):
    """`corrector_steps` re-mask/re-draw iterations at time t (Algorithm 2 lines 10-16).

    `field` is used as in `draw`'s u.
    """

    def body(k, tokens):
        keys = jax.vmap(lambda kk: jax.random.split(jax.random.fold_in(kk, k)))(ex_keys)
        eligible = (tokens != MASK_ID) & ~prior
        remask = remask_subset(keys[:, 0], eligible, sampling_config.remask_fraction)
        tokens = jnp.where(remask, MASK_ID, tokens)
        logits, _ = guided_step_logits(
            params, tokens, log_scale, t, model_config=model_config, guidance=guidance
        )
        return jnp.where(remask, draw(keys[:, 1], logits, sampling_config, field), tokens)

    return jax.lax.fori_loop(0, sampling_config.corrector_steps, body, tokens)


def sampler_step(
    params,
    state: SamplerState,
    i,
    ex_keys,
    log_scale,
    prior,
    *,
    model_config,
    sampling_config,
    guidance,
) -> SamplerState:
    """One predictor step (and its correctors) of Algorithm 2; `i` is the step index (traced)."""
    cfg = sampling_config
    grid = time_grid(cfg.steps, cfg.t_min)
    t, s = grid[i], grid[i + 1]
    last = i == cfg.steps - 1
    b, n_bins = state.tokens.shape
    keys = jax.vmap(lambda kk: jax.random.split(jax.random.fold_in(kk, i), 3))(ex_keys)
    t_b = jnp.full((b,), t)
    logits, _ = guided_step_logits(
        params, state.tokens, log_scale, t_b, model_config=model_config, guidance=guidance
    )
    masked = state.tokens == MASK_ID
    if cfg.unmask_order == "confidence":
        unmask = confident_unmask(logits, masked, unmask_prob(t, s), last)
    else:
        u = jax.vmap(lambda kk: jax.random.uniform(kk, (n_bins,)))(keys[:, 0])
        unmask = masked & ((u < unmask_prob(t, s)) | last)
    field = noise_field(ex_keys, n_bins, cfg.noise_length) if cfg.noise_length else None
    draws = draw(keys[:, 1], logits, cfg, field)
    if cfg.final_argmax:
        draws = jnp.where(last, jnp.argmax(logits, -1).astype(jnp.int32), draws)
    tokens = jnp.where(unmask, draws, state.tokens)
    if cfg.corrector_steps:
        correct = partial(
            _corrector,
            params,
            ex_keys=keys[:, 2],
            log_scale=log_scale,
            t=t_b,
            prior=prior,
            field=field,
            model_config=model_config,
            sampling_config=cfg,
            guidance=guidance,
        )
        # A scalar predicate, so this is a real branch: no corrector work at the last step.
        tokens = jax.lax.cond(last, lambda x: x, lambda x: correct(x), tokens)
    return SamplerState(tokens)


def sample_from(
    params: SamplerParams,
    key,
    tokens,
    log_scale,
    example_index,
    *,
    model_config: ModelConfig,
    sampling_config: DOSSamplingConfig,
    guidance: Guidance,
):
    """The whole trajectory (pure, unjitted): initial tokens `[B, L]` -> final tokens `[B, L]`.

    Args:
        params: `SamplerParams`.
        key: one PRNG key for the whole call.
        tokens: `[B, L]` int32 initial tokens, from `initial_tokens` ([BG] prior, [MASK] elsewhere).
        log_scale: `[B]` float32 log K.
        example_index: `[B]` int32 global example indices (see the module docstring).
        model_config, sampling_config, guidance: static.

    Returns:
        `[B, L]` int32 tokens with no [MASK] left.
    """
    prior = tokens == BG_ID
    ex_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_index)
    step = partial(
        sampler_step,
        params,
        ex_keys=ex_keys,
        log_scale=log_scale,
        prior=prior,
        model_config=model_config,
        sampling_config=sampling_config,
        guidance=guidance,
    )
    state, _ = jax.lax.scan(
        lambda st, i: (step(st, i), None), SamplerState(tokens), jnp.arange(sampling_config.steps)
    )
    return state.tokens


_NO_GUIDANCE = NoGuidance()
_STATIC = ("model_config", "sampling_config", "guidance")
_sample_jit = jax.jit(sample_from, static_argnames=_STATIC)
# Donating the token buffer saves a [B, L] copy on accelerators; CPU cannot donate and would warn.
_sample_jit_donated = jax.jit(sample_from, static_argnames=_STATIC, donate_argnames=("tokens",))


def sample(
    params: SamplerParams,
    key,
    scale,
    *,
    model_config: ModelConfig,
    sampling_config: DOSSamplingConfig,
    guidance: Guidance = _NO_GUIDANCE,
    prior_mask=None,
    example_index=None,
):
    """Draw B token sequences with Algorithm 2 (host-validated, jitted once per config/shape).

    Args:
        params: `SamplerParams` (see `checkpoint.load_default`).
        key: PRNG key.
        scale: `[B]` K > 0 for each sample (draw it from the training set's `ScaleDistribution`).
        model_config, sampling_config: configs (static).
        guidance: `NoGuidance()` or `ClassifierGuidance(...)`.
        prior_mask: optional `[L]` or `[B, L]` bool, bins fixed to [BG] at initialisation.
        example_index: optional `[B]` int global indices for per-example keys (default arange(B)).

    Returns:
        `[B, L]` int32 tokens (values 0..1024 and [BG]).

    Raises:
        ValueError: on bad shapes, non-positive or non-finite `scale` (when concrete), bad types.
    """
    if not isinstance(guidance, NoGuidance | ClassifierGuidance):
        raise ValueError(f"guidance: expected NoGuidance or ClassifierGuidance, got {guidance!r}")
    if not isinstance(model_config, ModelConfig) or not isinstance(
        sampling_config, DOSSamplingConfig
    ):
        raise ValueError("model_config/sampling_config: expected ModelConfig and DOSSamplingConfig")
    scale = jnp.asarray(scale, jnp.float32)
    if scale.ndim != 1 or scale.shape[0] < 1:
        raise ValueError(f"scale: expected shape [B] with B >= 1, got {scale.shape}")
    b = scale.shape[0]
    if not isinstance(scale, jax.core.Tracer):
        s = np.asarray(scale)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("scale: expected finite K > 0 for every example")
    if prior_mask is not None:
        pm = jnp.asarray(prior_mask)
        if pm.dtype != jnp.bool_ or pm.shape not in ((N_BINS,), (b, N_BINS)):
            raise ValueError(
                f"prior_mask: expected bool of shape [{N_BINS}] or [{b}, {N_BINS}], "
                f"got {pm.dtype} {pm.shape}"
            )
    if example_index is None:
        example_index = jnp.arange(b, dtype=jnp.int32)
    example_index = jnp.asarray(example_index, jnp.int32)
    if example_index.shape != (b,):
        raise ValueError(f"example_index: expected shape [{b}], got {example_index.shape}")
    fn = _sample_jit if jax.default_backend() == "cpu" else _sample_jit_donated
    return fn(
        params,
        key,
        initial_tokens(b, prior_mask),
        jnp.log(scale),
        example_index,
        model_config=model_config,
        sampling_config=sampling_config,
        guidance=guidance,
    )
