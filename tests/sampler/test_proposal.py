"""The guided proposer drives the real Algorithm 2 sampler with the prior, guidance and K."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.kernels.tokenizer import BG_ID
from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig
from jaxdos.sampler.proposal import conditioned_scale_logits, guided_proposer
from jaxdos.sampler.rejection import RejectionConfig, run_rejection
from jaxdos.sampler.sampling import init_sampler_params, sample
from jaxdos.sampler.scale import ScaleDistribution
from jaxdos.sampler.targets import Targets, guidance_for, prior_mask


def _tiny():
    mc = ModelConfig.tiny(num_layers=1, width=32, num_heads=2, cond_dim=16)
    params = init_sampler_params(jax.random.key(0), mc)
    rng = np.random.default_rng(0)
    dist = ScaleDistribution.from_arrays(rng.uniform(0.5, 3.0, 200), rng.uniform(0.0, 4.0, 200))
    return params, mc, dist


def test_scale_logits_condition_on_gap():
    _, _, dist = _tiny()
    logits = conditioned_scale_logits(dist, Targets.of(band_gap=2.0))
    inside = np.abs(dist.band_gap - 2.0) <= 0.2 + 1e-6
    np.testing.assert_array_equal(np.isfinite(logits), inside)
    assert np.all(np.isfinite(conditioned_scale_logits(dist, Targets())))
    few = conditioned_scale_logits(dist, Targets.of(band_gap=19.0), min_matches=5)
    assert np.isfinite(few).sum() == 5


@pytest.mark.slow  # two compiles of the real guided sampler: ~45 s of CPU on 2 cores
def test_rejection_loop_runs_the_real_sampler():
    params, mc, dist = _tiny()
    targets = Targets.of(band_gap=2.0, integrated_dos=2.0)
    sc = DOSSamplingConfig.fast(steps=3)
    proposer = guided_proposer(params, mc, dist, targets, sampling_config=sc, gamma=0.5)
    # Accept everything, so the run returns every proposal: compare with direct `sample` calls.
    cfg = RejectionConfig(accept=12, batch_size=8, seed=5)
    got = run_rejection(proposer, Targets(), cfg, progress=False)
    np.testing.assert_array_equal(got.index, np.arange(12))
    assert np.all(got.tokens[:, prior_mask(targets)] == BG_ID)  # prior never changed
    # K drawn only from records near the gap target.
    allowed = set(dist.scale[np.isfinite(proposer.scale_logits)].tolist())
    assert set(got.scale.tolist()) <= allowed
    key_scale, key_sample = jax.random.split(jax.random.key(5))
    direct = sample(
        params,
        key_sample,
        jnp.asarray(got.scale),
        model_config=mc,
        sampling_config=sc,
        guidance=guidance_for(targets, 0.5),
        prior_mask=prior_mask(targets),
        example_index=jnp.arange(12),
    )
    np.testing.assert_array_equal(got.tokens, np.asarray(direct))


_SHARDED = """
import sys
import numpy as np
from test_proposal import _run_real
r = _run_real()
np.savez(sys.argv[1], tokens=r.tokens, scale=r.scale, index=r.index)
"""


def _run_real():
    params, mc, dist = _tiny()
    targets = Targets.of(band_gap=1.0)
    proposer = guided_proposer(
        params, mc, dist, targets, sampling_config=DOSSamplingConfig.fast(steps=3)
    )
    cfg = RejectionConfig(accept=6, proposals=60, batch_size=12, seed=7)
    return run_rejection(proposer, targets, cfg, progress=False)


@pytest.mark.slow  # compiles the real sampler twice (1 and 8 devices)
def test_real_sampler_eight_devices_equal_one(tmp_path):
    from pathlib import Path

    from fake_devices import run_on_fake_devices

    out = tmp_path / "eight.npz"
    run_on_fake_devices(_SHARDED, Path(__file__).resolve().parent, args=[out], timeout=900)
    one = _run_real()
    with np.load(out) as eight:
        np.testing.assert_array_equal(one.index, eight["index"])
        np.testing.assert_array_equal(one.tokens, eight["tokens"])
        np.testing.assert_array_equal(one.scale, eight["scale"])
