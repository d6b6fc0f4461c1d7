"""The one training core of both stages: optimiser, train state, jitted step, EMA and the fit loop.

A stage supplies only `loss_fn(params, batch, key) -> (loss, metrics)`, its batches and its export;
everything else lives here (ground floor: jax, optax, orbax, numpy, `jaxdos.typing` and the
atomic write of `jaxdos.chunkstore`).

- `TrainConfig`: one frozen config, one name per knob, for the DOSSampler's score network and
  regressor and for CDOSGen (the union of what the stages used).
- `make_optimizer`: global-norm and / or elementwise clipping, then AdamW with an optional linear
  warmup and an optional cosine decay; an optional label function freezes every leaf labelled
  "frozen" (`optax.set_to_zero`), which is how CDOSGen trains its adapters only.
- `make_train_step`: the jitted `step(state, batch, key) -> (state, metrics)`. The step key is
  `fold_in(key, state.step)` with `key` the run key, so nothing random lives in the state and a
  resumed run draws the same keys. A loss may report `metrics["overflow"]` (a static budget was
  too small, the loss is meaningless): the update is then discarded, the state is returned
  unchanged and the host may grow its budgets and redo the step.
- EMA of the parameters with the warm-started decay min(decay, (1 + s) / (10 + s)), so short runs
  are not dominated by the initialisation.
- Data parallelism: `fit(..., mesh=...)` replicates the state on a `data` mesh
  (`jaxdos.sharding`) and places each batch with `split_batch` (default: every leaf's leading axis
  split over the devices); the jitted step then computes each device's share and XLA all-reduces
  the gradients (no hand-written collectives). The random draws of a loss are the same arrays
  whatever their sharding (threefry is partitionable), so a run on D devices follows the one-device
  loss curve to float tolerance, and a checkpoint of one resumes on the other: the device count is
  not part of the run's identity.
- Multi-host: the mesh may span processes (`sharding.training_mesh()` after
  `jax.distributed.initialize`). Every process runs the same deterministic pipeline, so it holds
  the same global batch and places only its addressable slices (`sharding.place`); all of them
  take part in every step and in orbax's save / restore (orbax coordinates the writes), process 0
  alone writes `metrics.jsonl`, the progress lines and the export (`on_main`). The logged scalars
  are replicated outputs of the step, so every process reads the same values.
- `fit`: the loop. orbax `CheckpointManager` checkpoints hold the state, the grain iterator state
  (`get_state()`, a JSON dict) and a JSON identity of the run, so `resume=True` continues bit for
  bit (same batches, same keys, same parameters as an uninterrupted run); progress lines, a
  `metrics.jsonl` log, periodic evaluation and a final export through callbacks.
"""

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxdos import sharding
from jaxdos.chunkstore import atomic_write
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = [
    "TrainConfig",
    "TrainState",
    "FitResult",
    "LossFn",
    "make_optimizer",
    "lr_schedule",
    "init_train_state",
    "make_train_step",
    "Checkpointer",
    "evaluate",
    "fit",
    "latest_checkpoint",
    "split_over",
    "on_main",
    "main_log",
]

LossFn = Callable[[PyTree, Any, PRNGKey], tuple[Array, dict]]

# Fields that only set the loop's cadence: a resumed run may change them (e.g. more steps), the
# others determine the trajectory and must match the checkpoint.
_CADENCE = ("steps", "eval_every", "ckpt_every", "log_every", "max_to_keep")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimiser and loop settings of one training run.

    Attributes:
        steps: total optimiser steps (a resumed run stops at the same total).
        learning_rate: peak AdamW step size (after the warmup).
        warmup: linear-warmup steps from 0 (0: start at `learning_rate`).
        decay_steps: cosine decay of the step size, after the warmup, to `final_lr_fraction` of it
            over this many steps (None: constant).
        final_lr_fraction: where the cosine decay ends.
        clip_norm: global gradient-norm clip (None: none).
        clip_value: elementwise gradient clip (None: none; MatterGen clips by value 0.5).
        weight_decay: AdamW decoupled weight decay.
        ema_decay: EMA decay of the parameters (None: no EMA; `TrainState.ema` is None).
        seed: seed of the run key (step keys and, in the stages, the data order).
        eval_every: evaluation period in steps, plus one at the end (0: never).
        ckpt_every: checkpoint period in steps, plus one at the end (0: only at the end).
        log_every: period of progress lines and `metrics.jsonl` rows, plus the last step.
        max_to_keep: checkpoints kept on disk.
    """

    steps: int = 1000
    learning_rate: float = 1e-3
    warmup: int = 0
    decay_steps: int | None = None
    final_lr_fraction: float = 0.1
    clip_norm: float | None = None
    clip_value: float | None = None
    weight_decay: float = 0.0
    ema_decay: float | None = None
    seed: int = 0
    eval_every: int = 0
    ckpt_every: int = 100
    log_every: int = 10
    max_to_keep: int = 2

    def __post_init__(self):
        for name in ("steps", "log_every", "max_to_keep"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "ckpt_every", "seed", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate: expected in (0, 1), got {self.learning_rate}")
        if self.decay_steps is not None and self.decay_steps < 1:
            raise ValueError(f"decay_steps: expected None or >= 1, got {self.decay_steps}")
        if not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction: expected in [0, 1], got {self.final_lr_fraction}")
        for name in ("clip_norm", "clip_value"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name}: expected None or > 0, got {v}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected None or in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TrainState(NamedTuple):
    """step: int32 scalar (updates applied); params; opt_state: optax state; ema: params or None."""

    step: Array
    params: PyTree
    opt_state: PyTree
    ema: PyTree | None


class FitResult(NamedTuple):
    """state: the final `TrainState`; history: rows logged by this call; export: the callback's
    return value (None when the run stopped early or had no export)."""

    state: TrainState
    history: list[dict]
    export: Any


def lr_schedule(cfg: TrainConfig):
    """The step size by step: the warmup, then constant or cosine-decayed (a float when constant
    without warmup: optax then scales without a schedule counter)."""
    lr = cfg.learning_rate
    if cfg.decay_steps is None:
        after = optax.constant_schedule(lr)
    else:
        after = optax.cosine_decay_schedule(lr, cfg.decay_steps, alpha=cfg.final_lr_fraction)
    if cfg.warmup == 0:
        return lr if cfg.decay_steps is None else after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, cfg.warmup), after], [cfg.warmup])


def make_optimizer(
    cfg: TrainConfig, labels: Callable[[PyTree], PyTree] | None = None
) -> optax.GradientTransformation:
    """Clip (global norm, then by value, where set) -> AdamW on `lr_schedule(cfg)`.

    Args:
        cfg: the settings.
        labels: optional `labels(params) -> tree of "train" / "frozen"`; frozen leaves get zero
            updates (CDOSGen's adapters-only fine-tuning).
    """
    parts = []
    if cfg.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    if cfg.clip_value is not None:
        parts.append(optax.clip(cfg.clip_value))
    adam = optax.adamw(lr_schedule(cfg), b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay)
    opt = optax.chain(*parts, adam)
    if labels is None:
        return opt
    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


def init_train_state(params: PyTree, optimizer: optax.GradientTransformation, cfg: TrainConfig):
    """A fresh state on a copy of `params` (the step donates its state on accelerators; the
    caller's params stay valid); the EMA starts at the params."""
    params = jax.tree.map(jnp.array, params)
    ema = None if cfg.ema_decay is None else jax.tree.map(jnp.array, params)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), ema)


def make_train_step(
    loss_fn: LossFn, cfg: TrainConfig, labels: Callable[[PyTree], PyTree] | None = None
) -> Callable[[TrainState, Any, PRNGKey], tuple[TrainState, dict]]:
    """The jitted `step(state, batch, key) -> (state, metrics)` of `loss_fn`.

    `key` is the run key; the loss gets `fold_in(key, state.step)`. metrics: the loss's plus
    `grad_norm` (of the raw gradients). A truthy `metrics["overflow"]` discards the update.
    Cached on (loss_fn, the trajectory fields of cfg, labels): stages pass hashable loss
    functions, so a rebuilt or resumed step reuses its compilation.
    """
    cadence = {k: getattr(TrainConfig, k) for k in _CADENCE}
    return _train_step(loss_fn, dataclasses.replace(cfg, **cadence), labels)


@lru_cache(maxsize=32)
def _train_step(loss_fn: LossFn, cfg: TrainConfig, labels):
    optimizer = make_optimizer(cfg, labels)

    def step(state: TrainState, batch, key: PRNGKey):
        k = jax.random.fold_in(key, state.step)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, k)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema
        if cfg.ema_decay is not None:
            s = state.step.astype(jnp.float32)
            decay = jnp.minimum(cfg.ema_decay, (1.0 + s) / (10.0 + s))
            ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, params)
        new = TrainState(state.step + 1, params, opt_state, ema)
        if "overflow" in metrics:
            new = jax.tree.map(lambda a, b: jnp.where(metrics["overflow"], b, a), new, state)
        return new, {**metrics, "grad_norm": optax.global_norm(grads)}

    return jax.jit(step, donate_argnums=(0,) if jax.default_backend() != "cpu" else ())


class Checkpointer:
    """orbax checkpoints of `{state, data (iterator state), meta (JSON)}` under one directory."""

    def __init__(self, directory, *, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._mngr = ocp.CheckpointManager(self.directory, options=opts)

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, state: TrainState, data_state: dict, meta: dict) -> None:
        self._mngr.save(
            int(state.step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_as_dict(state)),
                data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        self._mngr.wait_until_finished()

    def restore(self, template: TrainState, step: int | None = None):
        """(state, data_state, meta) of `step` (default latest), shaped like `template`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"resume: no checkpoint under {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _as_dict(template))
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ),
        )
        s = out["state"]
        return (
            TrainState(s["step"], s["params"], s["opt_state"], s.get("ema")),
            out["data"],
            out["meta"],
        )

    def close(self) -> None:
        self._mngr.close()


def _as_dict(state: TrainState) -> dict:
    # orbax stores no None leaves: a state without EMA is saved without the field.
    d = state._asdict()
    return d if d["ema"] is not None else {k: v for k, v in d.items() if k != "ema"}


def evaluate(
    metrics_fn: Callable[[int, Any], dict], batches: Iterable, weight: Callable[[Any], float]
) -> dict[str, float]:
    """Weighted mean of `metrics_fn(i, batch)` over `batches` (`weight(batch)`: its real rows)."""
    sums, total = {}, 0.0
    for i, batch in enumerate(batches):
        m = jax.device_get(metrics_fn(i, batch))
        w = float(weight(batch))
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + w * float(v)
        total += w
    return {k: v / max(total, 1.0) for k, v in sums.items()}


def _scalars(metrics: dict) -> dict[str, float]:
    """The scalar entries of `metrics` as floats (diagnostic trees and arrays are skipped).

    Picked before the read: a scalar output of the step is replicated on every device, so any
    process can read it, while a sharded array spanning processes could not be fetched."""
    picked = {k: v for k, v in metrics.items() if _is_scalar(v)}
    return {k: float(v) for k, v in jax.device_get(picked).items()}


def _is_scalar(v) -> bool:
    return isinstance(v, jax.Array | np.ndarray | np.generic | float | int) and np.ndim(v) == 0


def main_log(log):
    """`log` on process 0, None on the others: one process prints for all of them."""
    return log if jax.process_index() == 0 else None


def on_main(write: Callable[[], Any], name: str):
    """`write()` on process 0 only (an export, a summary); in a multi-process run every process
    then waits at the barrier `name`, so that none reads what it wrote too early.

    Returns:
        `write()`'s value on process 0, None on the others.
    """
    out = write() if jax.process_index() == 0 else None
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"jaxdos-{name}")
    return out


def latest_checkpoint(workdir) -> int | None:
    """The step of the latest checkpoint that `fit` wrote under `workdir` (None: none)."""
    directory = Path(workdir).absolute() / "checkpoints"
    if not directory.is_dir():
        return None
    ckpt = Checkpointer(directory)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def _write_rows(path: Path, rows: list[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def split_over(batch, mesh):
    """Every leaf's leading axis split over the `data` axis of `mesh` (the default `split_batch`).

    Raises:
        ValueError: naming the batch size and the device count if they do not divide.
    """
    size = mesh.devices.size
    for leaf in jax.tree.leaves(batch):
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] % size:
            raise ValueError(
                f"batch_size: {np.shape(leaf)[:1]} rows do not split over {size} devices; use a "
                f"multiple of {size} or fewer devices (devices=)"
            )
    return sharding.place(batch, mesh, split=True)


def fit(
    step: Callable[[TrainState, Any, PRNGKey], tuple[TrainState, dict]],
    state: TrainState,
    data: Iterator,
    cfg: TrainConfig,
    workdir,
    *,
    key: PRNGKey | None = None,
    prepare: Callable[[Any], Any] = lambda b: b,
    identity: dict | None = None,
    save_extra: Callable[[], dict] | None = None,
    load_extra: Callable[[dict], None] | None = None,
    evaluate_fn: Callable[[TrainState], dict] | None = None,
    export: Callable[[TrainState, list[dict]], Any] | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    log: Callable[[str], None] | None = print,
    name: str = "train",
    mesh=None,
    split_batch: Callable[[Any, Any], Any] = split_over,
) -> FitResult:
    """Train from `state` (or the latest checkpoint under `workdir` if `resume`) to `cfg.steps`.

    Args:
        step: `step(state, batch, key) -> (state, metrics)`, usually `make_train_step(...)`; a
            stage may wrap it (CDOSGen regrows its graph budgets on overflow and redoes the step).
        state: the initial state (also the restore template).
        data: an endless batch iterator with grain's `get_state()` / `set_state()`.
        cfg: the loop settings (`steps`, `ckpt_every`, `log_every`, `eval_every`).
        workdir: `checkpoints/` and `metrics.jsonl` go here.
        key: the run key (default `key(cfg.seed)`); step s uses `fold_in(key, s)`.
        prepare: host-side map of a raw batch to the step's batch.
        identity: JSON description of the run (model config...), saved with every checkpoint; a
            resume with a different identity or trajectory-setting `cfg` field raises.
        save_extra / load_extra: a stage's own JSON state (e.g. grown budgets), saved with every
            checkpoint and handed back on resume before the first step.
        evaluate_fn: `evaluate_fn(state) -> metrics`, every `cfg.eval_every` steps and at the end;
            logged as `val_<metric>`.
        export: `export(state, history)`, called once when the run reaches `cfg.steps`.
        resume: continue from the latest checkpoint if there is one.
        stop_after: stop after the checkpoint at this step, as a kill would (tests).
        log: progress lines (None: silent).
        name: the prefix of progress lines.
        mesh: a `data` mesh to train data-parallel on (`sharding.training_mesh`; it may span
            processes: every process then calls `fit` alike); None: one device.
        split_batch: `split_batch(batch, mesh)` places a prepared batch on `mesh` (default
            `split_over`; a stage whose batch carries replicated fields passes its own).

    Returns:
        FitResult(state, rows logged by this call, export's return value).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(cfg.seed) if key is None else key
    main = jax.process_index() == 0  # the one writer of metrics.jsonl and the progress lines
    log = main_log(log)
    if mesh is not None:
        # Placed before a restore: orbax restores into the template's shardings.
        state = sharding.place(state, mesh, split=False)
        key = sharding.place(key, mesh, split=False)
        on_host = prepare

        def prepare(raw):
            return split_batch(on_host(raw), mesh)

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=cfg.max_to_keep)
    run_id = {
        "identity": identity or {},
        "train": {k: v for k, v in cfg.to_dict().items() if k not in _CADENCE},
    }
    log_path = workdir / "metrics.jsonl"
    rows_before: list[dict] = []
    if resume and ckpt.latest_step() is None and log is not None:
        log(f"[{name}] resume: no checkpoint under {ckpt.directory}, starting at step 0")
    if resume and ckpt.latest_step() is not None:
        state, data_state, meta = ckpt.restore(state)
        saved = {k: meta.get(k) for k in run_id}
        if json.loads(json.dumps(run_id)) != saved:
            raise ValueError(f"resume: {ckpt.directory} was written by another run: {saved}")
        data.set_state(data_state)
        if load_extra is not None:
            load_extra(meta.get("extra", {}))
        if log_path.exists():  # rows past the checkpoint are redone: drop them
            rows = [json.loads(line) for line in log_path.read_text().splitlines() if line]
            rows_before = [r for r in rows if r["step"] <= int(state.step)]
        if log is not None:
            log(f"[{name}] resumed at step {int(state.step)}")
    if main:
        _write_rows(log_path, rows_before)

    def save():
        meta = {**run_id, "extra": save_extra() if save_extra is not None else {}}
        ckpt.save(state, data.get_state(), meta)

    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    history: list[dict] = []
    t0, start = time.time(), int(state.step)
    # The context mesh lets a stage's loss run each device's sub-batches apart (`map_rows`).
    in_mesh = jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext()
    with open(log_path, "a") if main else contextlib.nullcontext() as out, in_mesh:
        while int(state.step) < end:
            before = int(state.step)
            state, metrics = step(state, prepare(next(data)), key)
            done = int(state.step)
            if done != before + 1:  # e.g. an overflow that the stage's step did not handle
                raise RuntimeError(f"[{name}] step {before}: the state did not advance ({metrics})")
            row = None
            if done % cfg.log_every == 0 or done == cfg.steps:
                row = {"step": done, **_scalars(metrics)}
            if evaluate_fn is not None and cfg.eval_every:
                if done % cfg.eval_every == 0 or done == cfg.steps:
                    val = {f"val_{k}": v for k, v in evaluate_fn(state).items()}
                    row = {"step": done, **_scalars(metrics), **val}
            if row is not None:
                history.append(row)
                if main:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                if log is not None:
                    rate = (done - start) / max(time.time() - t0, 1e-9)
                    text = " ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "step")
                    log(f"[{name}] step {done}/{cfg.steps} {text} ({rate:.2f} steps/s)")
            if (cfg.ckpt_every and done % cfg.ckpt_every == 0) or done in (cfg.steps, end):
                save()
    ckpt.close()
    exported = None
    if export is not None and int(state.step) >= cfg.steps:
        exported = on_main(lambda: export(state, rows_before + history), f"{name}-export")
    return FitResult(state, history, exported)
