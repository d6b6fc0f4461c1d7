"""Fixtures of the sampler tests: random-weight params of the SMALL config."""

import jax
import jax.numpy as jnp
import pytest
from sampler_toy import SMALL, perturbed

from jaxdos.sampler.model import init_params
from jaxdos.sampler.regressor import init_regressor
from jaxdos.sampler.sampling import SamplerParams


@pytest.fixture(scope="module")
def small_params():
    """Random-weight `SamplerParams` for the SMALL config."""
    key = jax.random.key(42)
    diff = perturbed(init_params(key, SMALL), jax.random.fold_in(key, 1))
    reg = perturbed(init_regressor(key, SMALL), jax.random.fold_in(key, 2), 0.05)
    return SamplerParams(diff, reg, jnp.array([1.0, 0.5, 3.0]), jnp.array([1.0, 0.5, 1.5]))
