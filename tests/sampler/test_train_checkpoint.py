"""The DOSSampler stage on the training core: exact resume and export; sampler model directories;
config validation. (The core's own one-step and resume tests are tests/test_training.py.)"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_toy import SMALL, toy_records

from jaxdos.sampler.checkpoint import DOSSamplerModel, load_default, save_sampler
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.fit import (
    SamplerFitConfig,
    fit_sampler,
    init_score_network,
    run_stage,
    sampler_train_config,
)
from jaxdos.sampler.scale import ScaleDistribution


def _leaves_equal(a, b):
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# Shared with test_model_loss: one compiled train step for the whole directory.
CFG = sampler_train_config(steps=4, learning_rate=3e-3, warmup=2, eval_every=0, ckpt_every=2)
JOB = SamplerFitConfig(
    model=SMALL, diffusion=CFG, regressor=dataclasses.replace(CFG, eval_every=4), batch_size=5
)


def test_resume_is_bit_identical_and_exports(tmp_path):
    recs = toy_records(12)
    full = run_stage("diffusion", JOB, recs, None, tmp_path / "a", resume=False, log=None)
    # "Killed" after step 2: a run configured identically but stopped at its step-2 checkpoint.
    run_stage("diffusion", JOB, recs, None, tmp_path / "b", resume=False, log=None, stop_after=2)
    # The whole job resumed: the score network from step 2, then the regressor, then the export.
    out = fit_sampler(JOB, recs, recs.take(np.arange(5)), tmp_path / "b", resume=True, log=None)
    resumed = run_stage("diffusion", JOB, recs, None, tmp_path / "b", resume=True, log=None)
    assert int(full.step) == int(resumed.step) == 4
    assert _leaves_equal(full, resumed)
    m = DOSSamplerModel.load(out)
    assert m.config == SMALL and _leaves_equal(m.params.diffusion, full.ema)
    rows = (tmp_path / "b" / "regressor" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "val_loss" in rows[0]  # log_every 10: the last step, evaluated


def test_warm_start_continues_from_a_sampler_directory(tmp_path, small_params):
    dist = ScaleDistribution.from_arrays([0.5, 1.0], [0.0, 2.0])
    init = save_sampler(tmp_path / "init", small_params, SMALL, dist)
    warm = dataclasses.replace(JOB, init=str(init))
    state = run_stage(
        "diffusion", warm, toy_records(12), None, tmp_path / "w", resume=False, log=None,
        stop_after=0,
    )  # fmt: skip
    assert _leaves_equal(state.params, small_params.diffusion)  # step 0: the init, EMA too
    assert _leaves_equal(state.ema, small_params.diffusion)
    other = dataclasses.replace(SMALL, width=SMALL.width * 2)
    with pytest.raises(ValueError, match=r"^init: .* not the ModelConfig"):
        run_stage(
            "diffusion", dataclasses.replace(warm, model=other), toy_records(12), None,
            tmp_path / "x", resume=False, log=None,
        )  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"^init: "):
        init_score_network(tmp_path / "nowhere", SMALL)


def test_sampler_model_round_trip(tmp_path, small_params, key):
    dist = ScaleDistribution.from_arrays([0.5, 1.0, 2.0, 4.0], [0.0, 0.0, 2.1, 1.9])
    out = save_sampler(tmp_path / "s", small_params, SMALL, dist, meta={"note": "test"})
    m = DOSSamplerModel.load(out)
    assert m.config == SMALL and m.meta == {"note": "test"}
    assert isinstance(m.params.prop_mean, jax.Array) and m.params.prop_mean.dtype == jnp.float32
    assert _leaves_equal(m.params, small_params)
    np.testing.assert_array_equal(m.scale_distribution.scale, dist.scale)
    np.testing.assert_array_equal(m.scale_distribution.band_gap, dist.band_gap)
    # The object saves itself to the same files.
    again = DOSSamplerModel.load(m.save(tmp_path / "t"))
    assert again.config == SMALL and _leaves_equal(again.params, small_params)
    with pytest.raises(FileNotFoundError, match="model.json"):
        DOSSamplerModel.load(tmp_path)


def test_non_default_config_round_trips_exactly(tmp_path, small_params):
    # Every field away from its default, the nested RegressorConfig included.
    cfg = ModelConfig.paper(time_conditioning=False, mlp_ratio=3)
    dist = ScaleDistribution.from_arrays([0.5, 1.0], [0.0, 2.1])
    save_sampler(tmp_path, small_params, cfg, dist)
    assert DOSSamplerModel.load(tmp_path).config == cfg


def test_sampler_model_rejects_bad_parts(small_params):
    dist = ScaleDistribution.from_arrays([0.5, 1.0], [0.0, 2.1])
    with pytest.raises(ValueError, match="params"):
        DOSSamplerModel(params=small_params._asdict(), config=SMALL, scale_distribution=dist)
    with pytest.raises(ValueError, match="config"):
        DOSSamplerModel(params=small_params, config=SMALL.to_dict(), scale_distribution=dist)


def test_embedded_sampler_loads():
    m = load_default()
    assert m.config == ModelConfig.tiny()
    leaves = [np.asarray(x) for x in jax.tree.leaves(m.params)]
    assert all(x.dtype == np.float32 and np.all(np.isfinite(x)) for x in leaves)
    assert sum(x.size for x in leaves) > 1_000_000
    assert np.all(m.scale_distribution.scale > 0)
    assert m.scale_distribution.scale.shape == m.scale_distribution.band_gap.shape


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
        SamplerFitConfig(batch_size=0)
    with pytest.raises(ValueError, match="ema_decay"):
        SamplerFitConfig(regressor=sampler_train_config(ema_decay=None))
