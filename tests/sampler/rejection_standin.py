"""A tiny stand-in DOS sampler for the rejection tests (not a model: a seeded toy distribution).

Each example draws a gap width w in [0, 40] bins centred on E_F (level 0 there) and random value
levels elsewhere, so Algorithm 1's band gap is spread over 0..3 eV and a band-gap target accepts a
few per cent. It honours the sampler contract the rejection loop relies on: per-example randomness
from `fold_in(key, example_index)` and prior bins set to [BG].
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.kernels.grid import FERMI_INDEX, N_BINS
from jaxdos.kernels.tokenizer import BG_ID, N_LEVELS
from jaxdos.sampler.rejection import Proposer


def make_sample(prior_mask=None):
    prior = jnp.zeros(N_BINS, bool) if prior_mask is None else jnp.asarray(prior_mask)

    def one(params, key):
        # One draw of raw bits (cheap to compile) instead of several randint calls.
        bits = jax.random.bits(key, (N_BINS + 1,), jnp.uint32)
        w = (bits[0] % 41).astype(jnp.int32)
        idx = jnp.arange(N_BINS)
        lo = FERMI_INDEX - (w + 1) // 2
        gap = (idx >= lo) & (idx < lo + w)
        # Value levels: a per-bin offset (the "params") plus uniform noise, never level 0.
        noise = (bits[1:] % 512).astype(jnp.int32)
        levels = 1 + (params["offset"] + noise) % (N_LEVELS - 1)
        tokens = jnp.where(gap, 0, levels)
        return jnp.where(prior, BG_ID, tokens).astype(jnp.int32)

    def sample(params, key, scale, example_index):
        return jax.vmap(lambda g: one(params, jax.random.fold_in(key, g)))(example_index)

    return sample


@functools.lru_cache(maxsize=4)
def make_proposer(prior_mask=None, name="standin-v1"):
    """Cached: the same sample function object lets the rejection loop reuse its compiled step."""
    rng = np.random.default_rng(0)
    params = {"offset": jnp.asarray(rng.integers(0, 512, size=N_BINS), jnp.int32)}
    scales = np.asarray(rng.uniform(0.5, 3.0, size=64), np.float32)
    return Proposer(sample=make_sample(prior_mask), params=params, scales=scales, name=name)
