"""Training of the score network (λ-DCE) and the property regressor, with exact resume.

Both stages share one shape: a `TrainState(step, params, opt_state, ema)` NamedTuple and a jitted
`step(state, batch, key) -> (state, metrics)` (the regressor step also takes the frozen score
network params). The key of step s is `fold_in(PRNGKey(seed), s)`, so nothing random lives in the
state. A checkpoint (orbax `CheckpointManager`) holds the state, the data iterator's state (grain
`get_state()`, a JSON dict) and the config, so `--resume` continues bit-identically.

Optimiser: AdamW with linear warmup then constant lr, global-norm clipping; EMA of the params with
the usual warm-started decay min(decay, (1 + s) / (10 + s)) so short runs are not dominated by init.
"""

import dataclasses
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp

from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.loss import dce_loss
from jaxdos.sampler.model import init_params
from jaxdos.sampler.regressor import init_regressor, regressor_loss

__all__ = [
    "TrainConfig",
    "TrainState",
    "make_optimizer",
    "init_train_state",
    "make_train_step",
    "make_regressor_step",
    "Checkpointer",
]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimiser and loop settings shared by the score network and the regressor.

    Fields:
        steps: optimiser steps.
        batch_size: B examples per step.
        lr: peak AdamW learning rate (after warmup).
        warmup: linear-warmup steps.
        weight_decay: AdamW decoupled weight decay.
        clip: global gradient-norm clip.
        ema_decay: EMA decay (warm-started, see module doc).
        seed: seed of the step keys and of the data order.
        eval_every: validation period in steps (0: never).
        ckpt_every: checkpoint period in steps (0: only at the end).
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    eval_every: int = 100
    ckpt_every: int = 200

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "ckpt_every", "seed", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if not self.lr > 0 or not self.clip > 0:
            raise ValueError(f"lr/clip: expected > 0, got {self.lr}, {self.clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TrainState(NamedTuple):
    """step: int32 scalar; params, ema: flax variables; opt_state: optax state."""

    step: jax.Array
    params: dict
    opt_state: optax.OptState
    ema: dict


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Clip -> AdamW with linear warmup to `lr` (then constant)."""
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup, 1)), optax.constant_schedule(cfg.lr)],
        [max(cfg.warmup, 1)],
    )
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip),
        optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay),
    )


def init_train_state(key, model_config: ModelConfig, cfg: TrainConfig, *, regressor=False):
    """Fresh state of the score network (or of the regressor when `regressor=True`)."""
    params = (init_regressor if regressor else init_params)(key, model_config)
    opt_state = make_optimizer(cfg).init(params)
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, params)


def _apply(state: TrainState, grads, optimizer, ema_decay: float) -> TrainState:
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    s = state.step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + s) / (10.0 + s))
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, params)
    return TrainState(state.step + 1, params, opt_state, ema)


@lru_cache(maxsize=8)  # configs are hashable: a resumed run in-process reuses the compiled step
def make_train_step(model_config: ModelConfig, cfg: TrainConfig):
    """Jitted `step(state, batch, key) -> (state, metrics)` of the λ-DCE loss.

    `batch` has `tokens [B, L]`, `scale [B]` and `valid [B]` (a `jaxdos.data.pipelines.DosBatch`).
    metrics: loss, masked_nll, grad_norm.
    """
    optimizer = make_optimizer(cfg)

    def step(state: TrainState, batch, key):
        loss_fn = partial(dce_loss, config=model_config)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch.tokens, batch.scale, key, batch.valid
        )
        metrics = {**metrics, "grad_norm": optax.global_norm(grads)}
        return _apply(state, grads, optimizer, cfg.ema_decay), metrics

    return jax.jit(step, donate_argnums=(0,) if jax.default_backend() != "cpu" else ())


@lru_cache(maxsize=8)
def make_regressor_step(model_config: ModelConfig, cfg: TrainConfig):
    """Jitted `step(state, batch, key, diffusion_params, prop_mean, prop_std)` of r_φ's loss."""
    optimizer = make_optimizer(cfg)

    def step(state: TrainState, batch, key, diffusion_params, prop_mean, prop_std):
        loss_fn = partial(regressor_loss, config=model_config)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params,
            diffusion_params,
            batch.tokens,
            batch.scale,
            prop_mean,
            prop_std,
            key,
            batch.valid,
        )
        return _apply(state, grads, optimizer, cfg.ema_decay), metrics

    return jax.jit(step)


class Checkpointer:
    """orbax checkpoints of `{state, data (iterator state), config}` under one directory."""

    def __init__(self, directory, *, max_to_keep: int = 2):
        self.directory = Path(directory).resolve()
        self._mngr = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep)
        )

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, state: TrainState, data_state: dict, config: dict) -> None:
        step = int(state.step)
        self._mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                config=ocp.args.JsonSave(config),
            ),
            force=True,
        )
        self._mngr.wait_until_finished()

    def restore(self, template: TrainState, step: int | None = None):
        """(state, data_state, config) of `step` (default latest), shaped like `template`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"resume: no checkpoint under {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        return TrainState(*out["state"]), out["data"], out["config"]

    def close(self) -> None:
        self._mngr.close()
