"""The CDOSGen training loop: data iterator, jitted step, overflow regrowth, orbax checkpoints.

A checkpoint holds the `TrainState` (params, opt state, step) and a JSON item with the data
iterator's position, the graph budgets in use and the configs, so `resume=True` continues exactly
where the run stopped: same batches, same step keys (fold_in of the run key), same parameters bit
for bit as an uninterrupted run.
"""

import dataclasses
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxdos.crystal.denoiser import GemNetTDenoiser
from jaxdos.crystal.diffusion.corruption import corrupt
from jaxdos.crystal.diffusion.losses import ScoreFn
from jaxdos.crystal.graph import GraphConfig, build_graph_checked
from jaxdos.crystal.score import denoiser_score_fn, grow_model
from jaxdos.crystal.train import (
    TrainBatch,
    TrainConfig,
    TrainState,
    eval_loss,
    init_train_state,
    make_optimizer,
    make_train_step,
    symmetrized,
)
from jaxdos.typing import PyTree

__all__ = [
    "FitConfig",
    "fit",
    "restore",
    "evaluate",
    "score_fn_of",
    "train_step_checked",
    "presize_graph",
]

_LOGGED = ("loss", "loss_pos", "loss_cell", "loss_types", "ce_types", "grad_norm")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    """Loop settings.

    Attributes:
        num_steps: total optimizer steps of the run (a resumed run stops at the same total).
        seed: run seed (step keys are fold_in(key(seed), step)).
        checkpoint_every: steps between checkpoints (and one at the end).
        log_every: steps between progress-bar metric updates.
        max_to_keep: checkpoints kept on disk.
    """

    num_steps: int
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    max_to_keep: int = 2

    def __post_init__(self):
        if self.num_steps < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("num_steps, checkpoint_every, log_every: expected >= 1")


def _manager(workdir: Path, max_to_keep: int) -> ocp.CheckpointManager:
    opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints", options=opts)


def score_fn_of(model) -> ScoreFn:
    """The score function of a denoiser (with overflow diagnostics) or of any linen module whose
    `apply(params, batch, t, cond)` returns a `ScoreOutput` (toy models in tests)."""
    if isinstance(model, GemNetTDenoiser):
        return denoiser_score_fn(model)
    return _plain_score_fn(model)


@functools.lru_cache(maxsize=16)
def _plain_score_fn(model) -> ScoreFn:
    return lambda params, batch, t, cond, key: model.apply(params, batch, t, cond)


def _save(mgr, state: TrainState, data_state: dict, model, config: TrainConfig) -> None:
    graph = getattr(getattr(model, "config", None), "graph", None)
    meta = {
        "data_state": data_state,
        "graph": None if graph is None else dataclasses.asdict(graph),
        "model_config": repr(getattr(model, "config", None)),
        "train_config": repr(config),
    }
    step = int(state.step)
    mgr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state._asdict()), meta=ocp.args.JsonSave(meta)
        ),
    )
    mgr.wait_until_finished()


def restore(
    workdir: Path, template: TrainState, step: int | None = None
) -> tuple[TrainState, dict] | None:
    """The latest (or given) checkpoint as (TrainState, meta), or None if there is none."""
    mgr = _manager(workdir, 2)
    step = mgr.latest_step() if step is None else step
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template._asdict())
    out = mgr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        ),
    )
    return TrainState(**out["state"]), out["meta"]


def evaluate(model, params, batches, config: TrainConfig, seed: int = 1234) -> dict[str, float]:
    """Mean validation metrics over `batches` (fixed keys, so comparable across checkpoints)."""
    fn = jax.jit(lambda p, b, k: eval_loss(score_fn_of(model), p, b, k, config))
    sums, count = {}, 0
    for i, raw in enumerate(batches):
        m = jax.device_get(fn(params, TrainBatch.from_pipeline(raw), jax.random.key(seed + i)))
        w = float(np.sum(raw.graph_mask))
        for k, v in m.items():
            if k in _LOGGED:
                sums[k] = sums.get(k, 0.0) + float(v) * w
        count += w
    return {k: v / max(count, 1.0) for k, v in sums.items()}


_STEP_CACHE: dict = {}


def _cached_step(model, params, config: TrainConfig):
    """(optimizer, jitted step) reused across `fit` calls with the same model, config and tree."""
    key = (score_fn_of(model), config, jax.tree.structure(params))
    if key not in _STEP_CACHE:
        optimizer = make_optimizer(config, params)
        _STEP_CACHE[key] = (optimizer, make_train_step(score_fn_of(model), optimizer, config))
    return _STEP_CACHE[key]


def presize_graph(
    model, batch: TrainBatch, config: TrainConfig, seed: int = 0, times=(1.0, 0.9, 0.7, 0.5, 0.2)
):
    """Grow the denoiser's graph budgets to cover corrupted versions of `batch` (at several t)
    before the expensive train-step compilation, so a budget overflow rarely forces a recompile."""
    if not isinstance(model, GemNetTDenoiser):
        return model
    crystal = jax.tree.map(jnp.asarray, symmetrized(batch.crystal))
    graph = model.config.graph
    corrupt_jit = jax.jit(corrupt, static_argnums=3)
    for i, t in enumerate(times):
        c = corrupt_jit(
            jax.random.key(seed + i), crystal, jnp.full(crystal.num_graphs, t), config.diffusion
        )
        _, graph = build_graph_checked(c.batch, graph)
    return model.clone(config=dataclasses.replace(model.config, graph=graph))


def train_step_checked(step_fn, state, batch, key, model, optimizer, config, max_tries=4):
    """Run a train step; on a graph-budget overflow grow the budgets and redo it.

    Returns:
        (state, metrics, model, step_fn): the last two possibly rebuilt with larger budgets.
    """
    for _ in range(max_tries + 1):
        state, metrics = step_fn(state, batch, key)
        if not bool(metrics["overflow"]):
            return state, metrics, model, step_fn
        model = grow_model(model, jax.device_get(metrics["stats"]), batch.crystal.num_nodes)
        optimizer, step_fn = _cached_step(model, state.params, config)
    raise RuntimeError(f"graph budgets still overflow after {max_tries} increases")


def fit(
    model: GemNetTDenoiser,
    params: PyTree,
    data: Callable[[], Iterator],
    config: TrainConfig,
    fit_config: FitConfig,
    workdir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> tuple[TrainState, GemNetTDenoiser, list[dict]]:
    """Train `model` from `params` (or the latest checkpoint in `workdir` if `resume`).

    Args:
        model: the denoiser (conditional for fine-tune modes).
        params: initial parameters (also the restore template).
        data: a factory of an endless iterator of `CrystalGraphBatch` with grain-style
            `get_state()` / `set_state()` (e.g. `iter(jaxdos.data.pipelines.crystal_batches(
            ..., num_epochs=None))`).
        config: optimiser and loss settings.
        fit_config: loop settings.
        workdir: where checkpoints go.
        resume: continue from the latest checkpoint (error if none).
        progress: show a tqdm bar.

    Returns:
        (final state, the model actually used (grown budgets), logged metrics).
    """
    optimizer, _ = _cached_step(model, params, config)
    state = init_train_state(params, optimizer)
    it = data()
    mgr = _manager(workdir, fit_config.max_to_keep)
    if resume:
        got = restore(workdir, state)
        if got is None:
            raise ValueError(f"resume: no checkpoint under {workdir}")
        state, meta = got
        it.set_state(meta["data_state"])
        if meta["graph"] is not None:
            model = model.clone(
                config=dataclasses.replace(model.config, graph=GraphConfig(**meta["graph"]))
            )
    key = jax.random.key(fit_config.seed)
    if not resume:
        probe = data()
        model = presize_graph(model, TrainBatch.from_pipeline(next(probe)), config)
    optimizer, step_fn = _cached_step(model, params, config)
    history = []
    start = int(state.step)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=fit_config.num_steps, initial=start, desc="train_crystal")
    while int(state.step) < fit_config.num_steps:
        batch = TrainBatch.from_pipeline(next(it))
        state, metrics, model, step_fn = train_step_checked(
            step_fn, state, batch, key, model, optimizer, config
        )
        step = int(state.step)
        if step % fit_config.log_every == 0 or step == fit_config.num_steps:
            row = {k: float(v) for k, v in jax.device_get(metrics).items() if k in _LOGGED}
            history.append({"step": step, **row})
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3f}")
        if bar is not None:
            bar.update(1)
        if step % fit_config.checkpoint_every == 0 or step == fit_config.num_steps:
            _save(mgr, state, it.get_state(), model, config)
    if bar is not None:
        bar.close()
    return state, model, history
