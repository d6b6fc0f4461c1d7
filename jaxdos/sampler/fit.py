"""DOSSampler training: the score network (λ-DCE), then the property regressor, then the export.

The loop, optimiser, EMA, checkpoints and exact resume are the shared core (`jaxdos.training`);
this module supplies the stage's two losses, its batches and its export. Both networks train on the
grain pipeline `jaxdos.data.pipelines.dos_batches` (endless, seeded), each under
`workdir/{diffusion,regressor}` with its own checkpoints and `metrics.jsonl`; the regressor (r_φ)
reads the frozen EMA of the score network as a batch field, so it passes through the jitted step
as an argument, not as a compile-time constant. `resume=True` picks up each network from its
latest checkpoint, data iterator included. The export, `workdir/sampler`, holds both EMAs, the
property statistics and the training K distribution (`checkpoint.save_sampler`).

Keys: network n (0 score, 1 regressor) derives `base = fold_in(key(seed), n)`, initialises from
`fold_in(base, 0)`, trains on the run key `fold_in(base, 1)` (step s: `fold_in(run key, s)`) and
validates with `fold_in(base, 2)`.

Devices: both networks train data-parallel over `devices` (default every device of every process,
`sharding.training_mesh`; the batch size must be a multiple of the count): the spectra of a batch
are split over the `data` axis, the parameters (and the regressor's frozen score-network EMA)
replicated (`training.fit`). The same run on 1 or 8 devices, or on 2 processes, gives the same
losses to float tolerance and resumes across counts. In a multi-process run every process reads
the whole global batch from its own copy of the pipeline, all of them write the checkpoints
(orbax coordinates them), and process 0 alone writes the logs and the export.
"""

import dataclasses
import time
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos import modeldir, sharding
from jaxdos.data.pipelines import DosBatch, dos_batches
from jaxdos.data.records import Records
from jaxdos.data.world import records_source, train_val_records
from jaxdos.sampler.checkpoint import DOSSamplerModel, save_sampler
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.loss import dce_loss
from jaxdos.sampler.model import init_params
from jaxdos.sampler.regressor import init_regressor, property_stats, regressor_loss
from jaxdos.sampler.sampling import SamplerParams
from jaxdos.sampler.scale import ScaleDistribution
from jaxdos.training import (
    TrainConfig,
    TrainState,
    evaluate,
    fit,
    init_train_state,
    main_log,
    make_optimizer,
    make_train_step,
    on_main,
    split_over,
)

__all__ = [
    "SamplerFitConfig",
    "RegressorBatch",
    "sampler_train_config",
    "dce_objective",
    "regressor_objective",
    "init_state",
    "init_score_network",
    "run_stage",
    "fit_sampler",
    "run",
]

STAGES = ("diffusion", "regressor")


def sampler_train_config(**changes) -> TrainConfig:
    """The DOSSampler's optimiser defaults with `changes`: AdamW, 100 warmup steps then constant,
    global-norm clip 1, EMA 0.999, evaluation every 100 and checkpoints every 200 steps."""
    base = dict(warmup=100, clip_norm=1.0, ema_decay=0.999, eval_every=100, ckpt_every=200)
    return TrainConfig(**{**base, **changes})


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplerFitConfig:
    """A DOSSampler training job.

    Attributes:
        model: the network sizes (`ModelConfig.tiny()` or `.paper()`).
        diffusion: the score network's optimiser and loop settings.
        regressor: the regressor's (trained on the frozen score-network EMA).
        batch_size: B spectra per step (both networks; also the validation batch).
        records: a `Records` .npz to train on (10 % held out), or None for the world splits.
        max_records: cap on the training records (0: all).
        export: copy the finished sampler directory here too (None: no copy).
        init: a sampler directory whose score-network EMA starts the score network (a fresh
            optimiser; its `ModelConfig` must equal `model`), or None for a random start. The
            regressor always trains afresh, on the new score network.
    """

    model: ModelConfig = ModelConfig.tiny()
    diffusion: TrainConfig = sampler_train_config()
    regressor: TrainConfig = sampler_train_config(steps=300)
    batch_size: int = 16
    records: str | None = None
    max_records: int = 0
    export: str | None = None
    init: str | None = None

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.max_records < 0:
            raise ValueError(f"max_records: expected >= 0, got {self.max_records}")
        if self.diffusion.ema_decay is None or self.regressor.ema_decay is None:
            raise ValueError("ema_decay: the DOSSampler exports EMA params; expected a decay")


class RegressorBatch(NamedTuple):
    """A DOS batch with what r_φ's loss reads but does not train.

    Fields:
        dos: the `DosBatch`.
        diffusion: the frozen score-network params (EMA).
        prop_mean, prop_std: `[P]` property statistics of the training set.
    """

    dos: DosBatch
    diffusion: dict
    prop_mean: jax.Array
    prop_std: jax.Array


@lru_cache(maxsize=8)  # one loss object per config: the core caches its jitted step on it
def dce_objective(model_config: ModelConfig):
    """`loss_fn(params, DosBatch, key) -> (loss, metrics)`: λ-DCE (metrics: loss, masked_nll)."""

    def loss_fn(params, batch, key):
        return dce_loss(params, batch.tokens, batch.scale, key, batch.valid, config=model_config)

    return loss_fn


@lru_cache(maxsize=8)
def regressor_objective(model_config: ModelConfig):
    """`loss_fn(params, RegressorBatch, key) -> (loss, metrics)`: r_φ's standardised MSE."""

    def loss_fn(params, batch, key):
        d = batch.dos
        return regressor_loss(
            params,
            batch.diffusion,
            d.tokens,
            d.scale,
            batch.prop_mean,
            batch.prop_std,
            key,
            d.valid,
            config=model_config,
        )

    return loss_fn


@lru_cache(maxsize=8)
def _metrics_jit(loss_fn):
    return jax.jit(lambda params, batch, key: loss_fn(params, batch, key)[1])


def init_state(key, model_config: ModelConfig, cfg: TrainConfig, *, regressor=False) -> TrainState:
    """Fresh state of the score network (or of the regressor when `regressor=True`)."""
    params = (init_regressor if regressor else init_params)(key, model_config)
    return init_train_state(params, make_optimizer(cfg), cfg)


def init_score_network(directory, model_config: ModelConfig) -> dict:
    """The score-network EMA of the sampler directory `directory`, the start of a warm run.

    Raises:
        FileNotFoundError, ValueError: "init: ..." naming the directory, or a `ModelConfig` that
            differs from `model_config`.
    """
    try:
        model = DOSSamplerModel.load(directory)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(f"init: {err}") from None
    if model.config != model_config:
        raise ValueError(
            f"init: {directory} holds a {model.config}, not the {model_config} being trained"
        )
    return model.params.diffusion


def run_stage(
    stage: str,
    config: SamplerFitConfig,
    train: Records,
    val: Records | None,
    workdir,
    *,
    resume: bool,
    frozen: tuple = (),
    log=print,
    stop_after: int | None = None,
    export=None,
    devices=None,
) -> TrainState:
    """Train one network ('diffusion' or 'regressor') to its `steps`; returns its `TrainState`.

    `frozen` is `(diffusion EMA, prop_mean, prop_std)` for the regressor. `stop_after` ends the
    loop early (after a checkpoint at that step), as a kill would. `export(state, history)` runs
    when the network is done. `devices`: None (every device of every process), or an int n or a
    list of local devices (single-process runs only).
    """
    if stage not in STAGES:
        raise ValueError(f"stage: expected 'diffusion' or 'regressor', got {stage!r}")
    regressor = stage == "regressor"
    cfg = config.regressor if regressor else config.diffusion
    mesh = sharding.training_mesh(devices)
    if config.batch_size % mesh.devices.size:
        raise ValueError(
            f"batch_size: {config.batch_size} is not a multiple of the {mesh.devices.size} "
            "devices; change it or pass devices="
        )
    base = jax.random.fold_in(jax.random.key(cfg.seed), int(regressor))
    warm = config.init is not None and not regressor  # the regressor always starts afresh
    if warm:
        params = init_score_network(config.init, config.model)
        state = init_train_state(params, make_optimizer(cfg), cfg)
    else:
        state = init_state(jax.random.fold_in(base, 0), config.model, cfg, regressor=regressor)
    data = iter(dos_batches(train, batch_size=config.batch_size, seed=cfg.seed, num_epochs=None))
    loss_fn = (regressor_objective if regressor else dce_objective)(config.model)
    prepare = (lambda b: RegressorBatch(b, *frozen)) if regressor else (lambda b: b)
    evaluate_fn = None
    if val is not None:
        k_val, metrics = jax.random.fold_in(base, 2), _metrics_jit(loss_fn)

        def evaluate_fn(state: TrainState) -> dict:
            batches = dos_batches(
                val, batch_size=config.batch_size, seed=0, num_epochs=1, shuffle=False
            )
            first = (prepare(b) for _, b in zip(range(8), batches, strict=False))
            return evaluate(
                lambda i, b: metrics(state.ema, b, jax.random.fold_in(k_val, i)),
                first,
                lambda b: np.sum((b.dos if regressor else b).valid),
            )

    identity = {"model": config.model.to_dict(), "stage": stage, "batch_size": config.batch_size}
    if warm:
        identity["init"] = str(config.init)
    result = fit(
        make_train_step(loss_fn, cfg),
        state,
        data,
        cfg,
        Path(workdir) / stage,
        key=jax.random.fold_in(base, 1),
        prepare=prepare,
        identity=identity,
        evaluate_fn=evaluate_fn,
        export=export,
        resume=resume,
        stop_after=stop_after,
        log=log,
        name=stage,
        mesh=mesh,
        split_batch=_split_regressor_batch if regressor else split_over,
    )
    return result.state


def _split_regressor_batch(batch: RegressorBatch, mesh) -> RegressorBatch:
    """The spectra split over the devices, the frozen EMA and statistics on every device."""
    frozen = sharding.place((batch.diffusion, batch.prop_mean, batch.prop_std), mesh, split=False)
    return RegressorBatch(split_over(batch.dos, mesh), *frozen)


def fit_sampler(
    config: SamplerFitConfig,
    train: Records,
    val: Records | None,
    workdir,
    *,
    resume: bool = False,
    log=print,
    meta: dict | None = None,
    devices=None,
) -> Path:
    """Both networks, then `save_sampler(workdir / 'sampler', ...)`; returns that directory.

    `devices`: None (every device of every process), an int n or a list of local devices."""
    workdir = Path(workdir)
    diff = run_stage(
        "diffusion", config, train, val, workdir, resume=resume, log=log, devices=devices
    )
    everything = next(iter(dos_batches(train, batch_size=len(train), seed=0, shuffle=False)))
    mean, std = property_stats(jnp.asarray(everything.tokens), jnp.asarray(everything.scale))
    info = {
        "train_records": len(train),
        "diffusion": config.diffusion.to_dict(),
        "regressor": config.regressor.to_dict(),
        "batch_size": config.batch_size,
        "init": config.init,
        # The init's own record, so that a chain of warm starts keeps its whole history.
        "init_meta": None if config.init is None else DOSSamplerModel.load(config.init).meta,
        **(meta or {}),
    }

    def export(state: TrainState, history) -> Path:
        # The one place the DOSSampler is saved.
        params = SamplerParams(diff.ema, state.ema, mean, std)
        dist = ScaleDistribution.from_arrays(train.scale, train.band_gap)
        return save_sampler(workdir / "sampler", params, config.model, dist, meta=info)

    frozen = (diff.ema, mean, std)
    kw = dict(resume=resume, frozen=frozen, log=log, export=export, devices=devices)
    run_stage("regressor", config, train, val, workdir, **kw)
    return workdir / "sampler"


def run(config: SamplerFitConfig, out, *, resume: bool = False, log=print) -> Path:
    """The training job: load the records, train both networks under `out`, export.

    Returns:
        The sampler directory (`out/sampler`; also copied to `config.export` when set).
    """
    log = main_log(log)
    train, val = train_val_records(config.records, config.diffusion.seed)
    if config.max_records:
        train = train.take(np.arange(min(config.max_records, len(train))))
    if log is not None:
        log(f"train {len(train)} records, val {len(val)}; model {config.model}")
    t0 = time.time()
    meta = {"source": config.records or "world", "data": records_source(config.records)}
    sampler = fit_sampler(config, train, val, out, resume=resume, log=log, meta=meta)
    if log is not None:
        log(f"sampler written to {sampler} in {time.time() - t0:.0f} s")
    if config.export:
        copy = on_main(lambda: modeldir.export(sampler, config.export), "sampler-copy")
        if log is not None:
            log(f"exported to {copy}")
    return sampler
