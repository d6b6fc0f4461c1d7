"""The training core on a toy quadratic: one step, schedule, frozen labels, overflow, resume."""

import json

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdos import training
from jaxdos.training import (
    TrainConfig,
    evaluate,
    fit,
    init_train_state,
    latest_checkpoint,
    make_optimizer,
    make_train_step,
)

TARGETS = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)


def quadratic(params, batch, key):
    """Mean squared distance of `w` to the batch's targets, plus key-dependent noise so that a
    wrong step key changes the result."""
    noise = 0.01 * jax.random.normal(key, (3,))
    loss = jnp.mean(jnp.sum((params["w"] + noise - batch) ** 2, -1))
    return loss, {"loss": loss, "overflow": jnp.asarray(False)}


def data(seed=0):
    """An endless, seeded grain iterator of `[4, 3]` target batches."""
    ds = grain.MapDataset.source(TARGETS).shuffle(seed=seed).repeat(None).batch(4)
    return iter(ds.to_iter_dataset())


CFG = TrainConfig(
    steps=6,
    learning_rate=0.05,
    warmup=2,
    decay_steps=4,
    clip_norm=1.0,
    ema_decay=0.9,
    ckpt_every=3,
    log_every=1,
    eval_every=2,
)
PARAMS = {"w": jnp.zeros(3), "b": jnp.ones(2)}


def _run(tmp, cfg=CFG, **kw):
    step = make_train_step(quadratic, cfg)
    state = init_train_state(PARAMS, make_optimizer(cfg), cfg)
    val = lambda s: evaluate(
        lambda i, b: quadratic(s.ema, b, jax.random.key(i))[1], [TARGETS[:4]], lambda b: len(b)
    )
    return fit(step, state, data(), cfg, tmp, evaluate_fn=val, log=None, **kw)


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_one_step_matches_optax_by_hand():
    cfg = TrainConfig(steps=1, learning_rate=0.1, clip_value=0.5, ema_decay=0.5)
    opt = make_optimizer(cfg)
    state = init_train_state(PARAMS, opt, cfg)
    key = jax.random.key(3)
    new, metrics = make_train_step(quadratic, cfg)(state, jnp.asarray(TARGETS[:4]), key)
    grads = jax.grad(lambda p: quadratic(p, TARGETS[:4], jax.random.fold_in(key, 0))[0])(PARAMS)
    updates, _ = opt.update(grads, opt.init(PARAMS), PARAMS)
    want = optax.apply_updates(PARAMS, updates)
    np.testing.assert_allclose(new.params["w"], want["w"], rtol=1e-6)
    assert int(new.step) == 1 and float(metrics["grad_norm"]) > 0
    # Warm-started EMA: decay min(0.5, 1 / 10) = 0.1 at step 0, from ema = 0.
    np.testing.assert_allclose(new.ema["w"], 0.9 * new.params["w"], rtol=1e-6)


def test_schedule_warmup_then_cosine():
    lr = [float(training.lr_schedule(CFG)(s)) for s in range(7)]
    cos = [0.05 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * k / 4))) for k in range(5)]
    np.testing.assert_allclose(lr, [0.0, 0.025, *cos], rtol=1e-5, atol=1e-8)
    # No warmup and no decay: a plain float (optax keeps no schedule counter).
    assert training.lr_schedule(TrainConfig(learning_rate=0.01)) == 0.01


def with_bias(params, batch, key):
    """`quadratic` plus a term that gives `b` a gradient."""
    loss, metrics = quadratic(params, batch, key)
    return loss + jnp.sum(params["b"] ** 2), metrics


def test_frozen_labels_get_no_update():
    cfg = TrainConfig(steps=1, learning_rate=0.1)
    labels = lambda p: {"w": "train", "b": "frozen"}
    step = make_train_step(with_bias, cfg, labels)
    state = init_train_state(PARAMS, make_optimizer(cfg, labels), cfg)
    new, _ = step(state, jnp.asarray(TARGETS[:4]), jax.random.key(0))
    np.testing.assert_array_equal(new.params["b"], PARAMS["b"])
    assert np.any(np.asarray(new.params["w"]) != 0)


def overflowing(params, batch, key):
    """`quadratic` with a budget overflow on every call."""
    loss, m = quadratic(params, batch, key)
    return loss, {**m, "overflow": jnp.asarray(True)}


def test_overflow_discards_the_update():
    cfg = TrainConfig(steps=1, learning_rate=0.1, ema_decay=0.9)
    state = init_train_state(PARAMS, make_optimizer(cfg), cfg)
    new, metrics = make_train_step(overflowing, cfg)(
        state, jnp.asarray(TARGETS[:4]), jax.random.key(0)
    )
    assert bool(metrics["overflow"])
    _same(new, state)


def test_a_step_that_never_advances_raises(tmp_path):
    cfg = TrainConfig(steps=2, learning_rate=0.1)
    state = init_train_state(PARAMS, make_optimizer(cfg), cfg)
    with pytest.raises(RuntimeError, match="did not advance"):
        fit(make_train_step(overflowing, cfg), state, data(), cfg, tmp_path, log=None)


def test_resume_is_bit_identical(tmp_path):
    straight = _run(tmp_path / "a", export=lambda s, h: len(h))
    assert int(straight.state.step) == 6 and straight.export == 6
    # Killed after its step-3 checkpoint (rows 4.. of a longer-lived run would be dropped).
    half = _run(tmp_path / "b", stop_after=3, export=lambda s, h: 1 / 0)
    assert half.export is None and latest_checkpoint(tmp_path / "b") == 3
    resumed = _run(tmp_path / "b", resume=True, export=lambda s, h: len(h))
    _same(straight.state, resumed.state)
    assert resumed.export == 6
    log = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert log(tmp_path / "a") == log(tmp_path / "b") == straight.history
    assert [r["step"] for r in straight.history] == [1, 2, 3, 4, 5, 6]
    assert "val_loss" in straight.history[1] and "val_loss" not in straight.history[0]
    assert straight.history[0]["loss"] > straight.history[-1]["loss"]


def test_resume_with_another_trajectory_raises(tmp_path):
    _run(tmp_path, stop_after=3)
    with pytest.raises(ValueError, match="resume"):
        _run(tmp_path, TrainConfig(**{**CFG.to_dict(), "learning_rate": 0.01}), resume=True)
    # Cadence is not identity: a resumed run may be extended.
    longer = _run(tmp_path, TrainConfig(**{**CFG.to_dict(), "steps": 7}), resume=True)
    assert int(longer.state.step) == 7


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(steps=0), "steps"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(clip_norm=0.0), "clip_norm"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(decay_steps=0), "decay_steps"),
        (dict(warmup=-1), "warmup"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)
