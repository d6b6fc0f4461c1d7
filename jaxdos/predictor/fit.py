"""Predictor training on the one training core (`jaxdos.training`), as `sampler/fit.py` does.

The stage supplies only its loss (MSE of the per-atom DOS over the real crystals of a batch, the
Table 7 metric the model is judged on), its batches (`jaxdos.data.pipelines.crystal_batches`:
greedily packed `CrystalGraphBatch`es, endless, seeded, with grain's iterator state) and its
export (`DOSPredictorModel.save`). One stage-specific hook, as CDOSGen's: `RegrowingStep` redoes a
step whose neighbour list overflowed with grown budgets (`jaxdos.neighbors.retry_on_overflow`) and
checkpoints the budgets, so a resumed run uses the same ones and continues bit for bit.

Keys: `base = key(seed)`; parameters from `fold_in(base, 0)`, the run key `fold_in(base, 1)`.
"""

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos import modeldir
from jaxdos.data.budgets import CrystalBudgets
from jaxdos.data.pipelines import CrystalGraphBatch, crystal_batches
from jaxdos.data.records import Records
from jaxdos.data.world import train_val_records
from jaxdos.neighbors import GraphConfig, retry_on_overflow
from jaxdos.predictor.checkpoint import DOSPredictorModel
from jaxdos.predictor.config import CompositionConfig, EquivariantConfig, PredictorConfig
from jaxdos.predictor.model import forward, init_params
from jaxdos.training import (
    TrainConfig,
    TrainState,
    evaluate,
    fit,
    init_train_state,
    make_optimizer,
    make_train_step,
)

__all__ = [
    "PredictorFitConfig",
    "predictor_train_config",
    "predictor_objective",
    "RegrowingStep",
    "fit_predictor",
    "run",
]


def predictor_train_config(**changes) -> TrainConfig:
    """The predictor's optimiser defaults with `changes`: AdamW 2e-3, 100 warmup steps, cosine
    decay to 5 % over the run, global-norm clip 1, EMA 0.99, a checkpoint every 200 steps."""
    steps = changes.get("steps", TrainConfig.steps)
    base = dict(
        learning_rate=2e-3,
        warmup=min(100, steps // 10),
        decay_steps=max(1, steps - min(100, steps // 10)),
        final_lr_fraction=0.05,
        clip_norm=1.0,
        ema_decay=0.99,
        ckpt_every=200,
    )
    return TrainConfig(**{**base, **changes})


@dataclasses.dataclass(frozen=True, kw_only=True)
class PredictorFitConfig:
    """A predictor training job.

    Attributes:
        model: the network (`EquivariantConfig`) or the baseline (`CompositionConfig`).
        train: optimiser and loop settings.
        budgets: atoms N and graph slots G of a packed batch (G - 1 crystals at most).
        records: a `Records` .npz to train on (a seeded 10 % held out), or None for the world.
        max_records: cap on the training records (0: all).
        export: copy the finished model directory here too (None: no copy).
    """

    model: PredictorConfig = EquivariantConfig()
    train: TrainConfig = predictor_train_config()
    budgets: CrystalBudgets = CrystalBudgets(atoms=160, graphs=17)
    records: str | None = None
    max_records: int = 0
    export: str | None = None

    def __post_init__(self):
        if not isinstance(self.model, (EquivariantConfig, CompositionConfig)):
            raise ValueError(f"model: expected a predictor config, got {self.model!r}")
        if self.max_records < 0:
            raise ValueError(f"max_records: expected >= 0, got {self.max_records}")


@functools.lru_cache(maxsize=16)  # one loss object per config: the core caches its step on it
def predictor_objective(config: PredictorConfig):
    """`loss_fn(params, CrystalGraphBatch, key) -> (loss, metrics)`: mean per-crystal MSE of the
    DOS (metrics: loss, mae; plus overflow and stats for the equivariant network)."""

    def loss_fn(params, batch: CrystalGraphBatch, key):
        del key  # deterministic loss
        pred, overflow, stats = forward(config, params, batch.crystal)
        w = batch.crystal.graph_mask.astype(jnp.float32)
        n = jnp.maximum(w.sum(), 1.0)
        err = pred - batch.dos
        loss = jnp.sum(jnp.mean(err**2, -1) * w) / n
        metrics = {"loss": loss, "mae": jnp.sum(jnp.mean(jnp.abs(err), -1) * w) / n}
        if stats is not None:
            metrics.update(overflow=overflow, stats=stats)
        return loss, metrics

    return loss_fn


class RegrowingStep:
    """The core's jitted step, redone with grown neighbour-list budgets on an overflow.

    Attributes:
        config: the model config in use (its `graph` budgets grow; export this one).
    """

    def __init__(self, config: PredictorConfig, train: TrainConfig):
        self.config, self._train = config, train

    def _step(self, config):
        return make_train_step(predictor_objective(config), self._train)

    def __call__(self, state: TrainState, batch: CrystalGraphBatch, key):
        if not isinstance(self.config, EquivariantConfig):
            return self._step(self.config)(state, batch, key)
        current = [state]  # a redo takes the state the step returned (unchanged on overflow)

        def attempt(graph: GraphConfig):
            config = dataclasses.replace(self.config, graph=graph)
            new, metrics = self._step(config)(current[0], batch, key)
            current[0] = new
            return (
                (new, metrics, config),
                metrics["overflow"],
                metrics["stats"],
                batch.crystal.num_nodes,
            )

        (new, metrics, self.config), _ = retry_on_overflow(attempt, self.config.graph)
        return new, metrics

    def budgets(self) -> dict:
        graph = getattr(self.config, "graph", None)
        return {"graph": None if graph is None else dataclasses.asdict(graph)}

    def set_budgets(self, saved: dict) -> None:
        if saved.get("graph") is not None:
            graph = modeldir.config_from_json(GraphConfig, saved["graph"])
            self.config = dataclasses.replace(self.config, graph=graph)


@functools.lru_cache(maxsize=16)
def _metrics_jit(config: PredictorConfig):
    loss_fn = predictor_objective(config)
    return jax.jit(lambda params, batch: loss_fn(params, batch, None)[1])


def fit_predictor(
    config: PredictorFitConfig,
    train: Records,
    val: Records | None,
    workdir,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    log=print,
    meta: dict | None = None,
):
    """Train to `config.train.steps` under `workdir`; export `workdir/model` when done.

    Returns:
        `jaxdos.training.FitResult`; its `export` is the model directory (None if stopped early).
    """
    cfg = config.train
    base = jax.random.key(cfg.seed)
    params = init_params(jax.random.fold_in(base, 0), config.model)
    state = init_train_state(params, make_optimizer(cfg), cfg)
    data = iter(crystal_batches(train, config.budgets, seed=cfg.seed, num_epochs=None))
    step = RegrowingStep(config.model, cfg)
    evaluate_fn = None
    if val is not None:

        def evaluate_fn(state: TrainState) -> dict:
            batches = crystal_batches(val, config.budgets, seed=0, num_epochs=1, shuffle=False)
            first = [b for _, b in zip(range(8), batches, strict=False)]
            params = state.ema if state.ema is not None else state.params
            metrics = _metrics_jit(step.config)
            out = evaluate(
                lambda i, b: {k: v for k, v in metrics(params, b).items() if k in ("loss", "mae")},
                first,
                lambda b: np.sum(b.crystal.graph_mask),
            )
            return out

    identity = {
        "model": config.model.to_dict(),
        "budgets": dataclasses.asdict(config.budgets),
        "records": config.records or "world",
    }
    info = {
        "train_records": len(train),
        "source": config.records or "world",
        "train": cfg.to_dict(),
        **(meta or {}),
    }

    def export(state: TrainState, history) -> Path:
        # The one place a trained predictor is saved.
        params = state.ema if state.ema is not None else state.params
        final = {k: v for k, v in (history[-1] if history else {}).items() if k != "step"}
        model = DOSPredictorModel(params=params, config=step.config, meta={**info, "final": final})
        return model.save(Path(workdir) / "model")

    return fit(
        step,
        state,
        data,
        cfg,
        workdir,
        key=jax.random.fold_in(base, 1),
        identity=identity,
        save_extra=step.budgets,
        load_extra=step.set_budgets,
        evaluate_fn=evaluate_fn,
        export=export,
        resume=resume,
        stop_after=stop_after,
        log=log,
        name="predictor",
    )


def run(config: PredictorFitConfig, out, *, resume: bool = False, log=print) -> Path:
    """The training job: load the records, train under `out`, export `out/model`.

    Returns:
        The model directory (also copied to `config.export` when set).

    Raises:
        ValueError: naming `out` if it holds a training run and `resume` is False (nothing is
            overwritten), before any compute.
    """
    out = Path(out)
    if not resume and (out / "checkpoints").exists():
        raise ValueError(
            f"out: {out} already holds a training run; pass --resume to continue it or choose "
            "another --out"
        )
    train, val = train_val_records(config.records, config.train.seed)
    if config.max_records:
        train = train.take(np.arange(min(config.max_records, len(train))))
    log(f"train {len(train)} records, val {len(val)}; model {config.model}")
    t0 = time.time()
    result = fit_predictor(config, train, val, out, resume=resume, log=log)
    model = result.export
    log(f"predictor written to {model} in {time.time() - t0:.0f} s")
    if config.export:
        log(f"exported to {modeldir.export(model, config.export)}")
    return model
