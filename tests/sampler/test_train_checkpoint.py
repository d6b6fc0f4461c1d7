"""Exact resume of training (state + data iterator), sampler checkpoints, config validation."""

import jax
import numpy as np
import pytest
from sampler_toy import SMALL, toy_records

from jaxdos.sampler.checkpoint import load_sampler, save_sampler
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.fit import run_stage
from jaxdos.sampler.scale import ScaleDistribution
from jaxdos.sampler.train import TrainConfig


def _leaves_equal(a, b):
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# Shared with test_model_loss: one compiled train step for the whole directory.
CFG = TrainConfig(steps=4, batch_size=5, lr=3e-3, warmup=2, eval_every=0, ckpt_every=2)


def test_resume_is_bit_identical(tmp_path):
    recs = toy_records(12)
    cfg = CFG
    full = run_stage("diffusion", SMALL, cfg, recs, None, tmp_path / "a", resume=False, log=None)
    # "Killed" after step 2: a run configured identically but stopped at its step-2 checkpoint.
    run_stage(
        "diffusion", SMALL, cfg, recs, None, tmp_path / "b", resume=False, log=None, stop_after=2
    )
    resumed = run_stage("diffusion", SMALL, cfg, recs, None, tmp_path / "b", resume=True, log=None)
    assert int(full.step) == int(resumed.step) == 4
    assert _leaves_equal(full, resumed)


def test_resume_with_another_config_raises(tmp_path):
    recs = toy_records(8)
    run_stage("diffusion", SMALL, CFG, recs, None, tmp_path, resume=False, log=None, stop_after=1)
    other = TrainConfig(**{**CFG.to_dict(), "lr": 5e-4})
    with pytest.raises(ValueError, match="resume"):
        run_stage("diffusion", SMALL, other, recs, None, tmp_path, resume=True, log=None)


def test_sampler_checkpoint_round_trip(tmp_path, small_params, key):
    dist = ScaleDistribution.from_arrays([0.5, 1.0, 2.0, 4.0], [0.0, 0.0, 2.1, 1.9])
    save_sampler(tmp_path / "s", small_params, SMALL, dist, meta={"note": "test"})
    params, config, dist2 = load_sampler(tmp_path / "s")
    assert config == SMALL
    assert _leaves_equal(params, small_params)
    np.testing.assert_array_equal(dist2.scale, dist.scale)
    np.testing.assert_array_equal(dist2.band_gap, dist.band_gap)
    with pytest.raises(ValueError, match="sampler.json"):
        load_sampler(tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [dict(width=30, num_heads=4), dict(num_layers=0), dict(cond_dim=-1)],
)
def test_bad_model_config_raises(kwargs):
    with pytest.raises(ValueError):
        ModelConfig(**kwargs)


def test_config_round_trip_and_presets():
    for cfg in (ModelConfig.tiny(), ModelConfig.paper(), SMALL):
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
