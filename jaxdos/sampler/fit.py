"""The training loop: score network, then regressor, then export of a sampler directory.

`fit(model_config, train_config, regressor_config, train, val, workdir)` runs both stages from
`Records` through the grain pipeline `jaxdos.data.pipelines.dos_batches` (endless, seeded), with
periodic validation loss, periodic checkpoints under `workdir/{diffusion,regressor}` and exact
resume (`resume=True` picks up each stage from its latest checkpoint, data iterator included).
The data source is the `Records` argument: the world subset in production, a synthetic stand-in in
tests. The result, `workdir/sampler`, holds the EMA params, the regressor, the property statistics
and the training K distribution (`checkpoint.save_sampler`).
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxdos.data.pipelines import dos_batches
from jaxdos.data.records import Records
from jaxdos.sampler.checkpoint import save_sampler
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.loss import dce_loss
from jaxdos.sampler.regressor import property_stats, regressor_loss
from jaxdos.sampler.sampling import SamplerParams
from jaxdos.sampler.scale import ScaleDistribution
from jaxdos.sampler.train import (
    Checkpointer,
    TrainConfig,
    init_train_state,
    make_regressor_step,
    make_train_step,
)

__all__ = ["fit", "run_stage", "evaluate"]


def evaluate(loss_fn, records: Records, batch_size: int, key, *, max_batches: int = 8) -> dict:
    """Mean metrics of `loss_fn(batch, key) -> (loss, metrics)` over fixed validation batches."""
    it = iter(dos_batches(records, batch_size=batch_size, seed=0, num_epochs=1, shuffle=False))
    sums, n = {}, 0
    for i, batch in zip(range(max_batches), it, strict=False):
        _, metrics = loss_fn(batch, jax.random.fold_in(key, i))
        w = float(np.sum(batch.valid))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + w * float(v)
        n += w
    return {k: v / max(n, 1.0) for k, v in sums.items()}


def run_stage(
    stage: str,
    model_config: ModelConfig,
    cfg: TrainConfig,
    train: Records,
    val: Records | None,
    workdir,
    *,
    resume: bool,
    frozen=(),
    log=print,
    stop_after: int | None = None,
):
    """Train one stage ('diffusion' or 'regressor') to `cfg.steps`; returns its `TrainState`.

    `stop_after` ends the loop early (after a checkpoint at that step), as a kill would: a later
    `resume=True` call with the same config must then finish bit-identically.
    """
    if stage not in ("diffusion", "regressor"):
        raise ValueError(f"stage: expected 'diffusion' or 'regressor', got {stage!r}")
    regressor = stage == "regressor"
    base = jax.random.fold_in(jax.random.key(cfg.seed), int(regressor))
    state = init_train_state(jax.random.fold_in(base, 0), model_config, cfg, regressor=regressor)
    it = iter(dos_batches(train, batch_size=cfg.batch_size, seed=cfg.seed, num_epochs=None))
    ckpt = Checkpointer(Path(workdir) / stage)
    config = {"model": model_config.to_dict(), "train": cfg.to_dict(), "stage": stage}
    if resume and ckpt.latest_step() is not None:
        state, data_state, saved = ckpt.restore(state)
        if saved != config:
            raise ValueError(f"resume: {ckpt.directory} was written with config {saved}")
        it.set_state(data_state)
        if log is not None:
            log(f"[{stage}] resumed at step {int(state.step)}")
    if regressor:
        step_fn = make_regressor_step(model_config, cfg)
        diff_params, mean, std = frozen
        loss = jax.jit(
            lambda p, b, k: regressor_loss(
                p, diff_params, *_batch(b), mean, std, k, b.valid, config=model_config
            )[1]
        )
    else:
        step_fn = make_train_step(model_config, cfg)
        loss = jax.jit(lambda p, b, k: dce_loss(p, *_batch(b), k, b.valid, config=model_config))
    k_train, k_val = jax.random.fold_in(base, 1), jax.random.fold_in(base, 2)
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    bar = tqdm(range(int(state.step), end), desc=stage, disable=log is None, leave=False)
    for s in bar:
        args = (state, next(it), jax.random.fold_in(k_train, s)) + tuple(frozen)
        state, metrics = step_fn(*args)
        bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
        done = s + 1
        if val is not None and cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps):
            ema = state.ema
            if regressor:
                fn = lambda b, k, ema=ema: (None, loss(ema, b, k))
            else:
                fn = lambda b, k, ema=ema: loss(ema, b, k)
            vm = evaluate(fn, val, cfg.batch_size, k_val)
            if log is not None:
                log(
                    f"[{stage}] step {done} train {float(metrics['loss']):.4f} "
                    + " ".join(f"val_{k} {v:.4f}" for k, v in vm.items())
                )
        if (cfg.ckpt_every and done % cfg.ckpt_every == 0) or done in (cfg.steps, end):
            ckpt.save(state, it.get_state(), config)
    ckpt.close()
    return state


def _batch(b):
    return jnp.asarray(b.tokens), jnp.asarray(b.scale)


def fit(
    model_config: ModelConfig,
    train_config: TrainConfig,
    regressor_config: TrainConfig,
    train: Records,
    val: Records | None,
    workdir,
    *,
    resume: bool = False,
    log=print,
    meta: dict | None = None,
) -> Path:
    """Both stages, then `save_sampler(workdir / 'sampler', ...)`; returns that directory."""
    workdir = Path(workdir)
    diff = run_stage(
        "diffusion", model_config, train_config, train, val, workdir, resume=resume, log=log
    )
    tokens = next(iter(dos_batches(train, batch_size=len(train), seed=0, shuffle=False)))
    mean, std = property_stats(jnp.asarray(tokens.tokens), jnp.asarray(tokens.scale))
    reg = run_stage(
        "regressor",
        model_config,
        regressor_config,
        train,
        val,
        workdir,
        resume=resume,
        frozen=(diff.ema, mean, std),
        log=log,
    )
    params = SamplerParams(diff.ema, reg.ema, mean, std)
    dist = ScaleDistribution.from_arrays(train.scale, train.band_gap)
    info = {
        "train_records": len(train),
        "diffusion": train_config.to_dict(),
        "regressor": regressor_config.to_dict(),
        **(meta or {}),
    }
    return save_sampler(workdir / "sampler", params, model_config, dist, meta=info)
