"""CDOSGen training on the shared core: the budget-regrowing step, the loop and the training job.

The loop, optimiser, checkpoints (state, grain iterator position, the graph budgets in use) and
exact resume are `jaxdos.training`; this module supplies CDOSGen's loss (`train.make_loss`), its
batches and its export, plus one stage-specific hook: `RegrowingStep` redoes a step whose periodic
graph overflowed its static budgets with larger ones (`graph.retry_on_overflow`), and checkpoints
the budgets so that a resumed run uses the same ones.

Data parallelism: a step takes K consecutive pipeline batches (`sub_batches`, default the device
count), stacked (`train.stack_batches`) and split over the devices of `devices` (default every
device of every process, `sharding.training_mesh`; K a multiple of the count): each device trains
on whole crystals with the pipeline's own budgets, parameters replicated, gradients reduced by the
sharded jit (`training.fit`). K fixes the trajectory, the device count does not: K = 8 on 1 or 8
devices gives the same losses to float tolerance, and a checkpoint resumes on either. K = 1 is the
plain one-batch step. In a multi-process run every process reads all K batches from its own copy
of the pipeline (and grows the same budgets on the same replicated overflow flag); process 0
alone writes the logs and the export.

`run(config, out)` is the whole job behind `experiments/train_crystal.py`: records, parameter
init, the base-weight merge of a fine-tune, training, validation (with the DOS dropped too: the
issue-12 gate) and the export (`checkpoint.save_model`, called only here).
"""

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos import modeldir, sharding, training
from jaxdos.crystal.batch import DosCondition
from jaxdos.crystal.checkpoint import DEFAULT_DIR, CDOSGenModel, merge_base_params, save_model
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
from jaxdos.crystal.diffusion.corruption import DiffusionConfig, corrupt
from jaxdos.crystal.diffusion.losses import LossWeights, ScoreFn
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
from jaxdos.crystal.generate import denoiser_score_fn
from jaxdos.crystal.graph import GraphConfig, build_graph_checked, retry_on_overflow
from jaxdos.crystal.train import (
    FinetuneAdapters,
    FinetuneFull,
    LossConfig,
    Pretrain,
    TrainBatch,
    adapters_only_labels,
    check_adapters,
    eval_loss,
    make_stacked_loss,
    stack_batches,
    symmetrized,
)
from jaxdos.data.budgets import CrystalBudgets
from jaxdos.data.pipelines import crystal_batches
from jaxdos.data.records import Records
from jaxdos.data.world import records_source, train_val_records
from jaxdos.training import TrainConfig, TrainState, main_log, on_main
from jaxdos.typing import PyTree

__all__ = [
    "CrystalFitConfig",
    "crystal_train_config",
    "init_architecture",
    "initial_model",
    "RegrowingStep",
    "fit_crystal",
    "validate",
    "score_fn_of",
    "presize_graph",
    "run_stage",
    "run",
    "make_default",
]

_LOGGED = ("loss", "loss_pos", "loss_cell", "loss_types", "ce_types", "grad_norm")
STAGES = ("pretrain", "finetune")


def crystal_train_config(**changes) -> TrainConfig:
    """MatterGen's optimiser with `changes`: Adam at 1e-4 (constant), elementwise clip 0.5, no
    warmup, no EMA; a checkpoint every 100 steps, a progress line every 10."""
    base = dict(learning_rate=1e-4, clip_value=0.5, ckpt_every=100, log_every=10)
    return TrainConfig(**{**base, **changes})


def score_fn_of(model) -> ScoreFn:
    """The score function of a denoiser (with overflow diagnostics) or of any linen module whose
    `apply(params, batch, t, cond)` returns a `ScoreOutput` (toy models in tests)."""
    if isinstance(model, GemNetTDenoiser):
        return denoiser_score_fn(model)
    return _plain_score_fn(model)


@functools.lru_cache(maxsize=16)
def _plain_score_fn(model) -> ScoreFn:
    return lambda params, batch, t, cond, key: model.apply(params, batch, t, cond)


def _with_graph(model: GemNetTDenoiser, graph: GraphConfig) -> GemNetTDenoiser:
    if graph == model.config.graph:
        return model
    return model.clone(config=dataclasses.replace(model.config, graph=graph))


class RegrowingStep:
    """The core's jitted step for `model`, redone with grown graph budgets on an overflow.

    Attributes:
        model: the network in use (its budgets grow; reuse it after training).
    """

    def __init__(self, model, loss: LossConfig, train: TrainConfig, labels=None):
        self.model, self._loss, self._train, self._labels = model, loss, train, labels

    def _step(self, model):
        loss_fn = make_stacked_loss(score_fn_of(model), self._loss)
        return training.make_train_step(loss_fn, self._train, self._labels)

    def __call__(self, state: TrainState, batch: TrainBatch, key) -> tuple[TrainState, dict]:
        if np.ndim(batch.dos) == 2:  # one plain batch: K = 1
            batch = stack_batches([batch])
        if not isinstance(self.model, GemNetTDenoiser):  # no graph, no budgets
            return self._step(self.model)(state, batch, key)
        # The step donates its state on accelerators: a redo takes the state the step returned
        # (unchanged on overflow), never the donated one.
        current = [state]

        def run(graph: GraphConfig):
            model = _with_graph(self.model, graph)
            new, metrics = self._step(model)(current[0], batch, key)
            current[0] = new
            result = (new, metrics, model)
            # Budgets are per sub-batch: N is the atom slots of one.
            n = batch.crystal.atomic_numbers.shape[-1]
            return result, metrics["overflow"], metrics["stats"], n

        (new, metrics, self.model), _ = retry_on_overflow(run, self.model.config.graph)
        return new, metrics

    def budgets(self) -> dict:
        """The budgets in use, as JSON (saved with each checkpoint)."""
        graph = getattr(getattr(self.model, "config", None), "graph", None)
        return {"graph": None if graph is None else dataclasses.asdict(graph)}

    def set_budgets(self, saved: dict) -> None:
        """Take the budgets of a checkpoint (on resume; older budget fields are upgraded)."""
        if saved.get("graph") is not None:
            graph = modeldir.config_from_json(GraphConfig, saved["graph"])
            self.model = _with_graph(self.model, graph)


def presize_graph(
    model, batch: TrainBatch, config: LossConfig, seed: int = 0, times=(1.0, 0.9, 0.7, 0.5, 0.2)
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
    return _with_graph(model, graph)


def _identity(model, loss: LossConfig, sub_batches: int) -> dict:
    """What a resumed run must share with its checkpoint (the budgets may differ: they grow; the
    device count may differ: it does not change the trajectory)."""
    config = getattr(model, "config", None)
    fields = {} if config is None else dataclasses.asdict(config)
    fields.pop("graph", None)
    out = {"loss": repr(loss), "model": repr(fields)}
    if sub_batches != 1:  # K = 1 keeps the identity of runs from before data parallelism
        out["sub_batches"] = sub_batches
    return out


class _Grouped:
    """K consecutive batches of a grain iterator per `next`; its state is the inner iterator's."""

    def __init__(self, inner, k: int):
        self._inner, self._k = inner, k

    def __iter__(self):
        return self

    def __next__(self):
        return [next(self._inner) for _ in range(self._k)]

    def get_state(self):
        return self._inner.get_state()

    def set_state(self, state):
        self._inner.set_state(state)


def _stacked(group) -> TrainBatch:
    return stack_batches(TrainBatch.from_pipeline(b) for b in group)


def fit_crystal(
    model,
    params: PyTree,
    data: Callable[[], Iterator],
    loss: LossConfig,
    train: TrainConfig,
    workdir: Path,
    *,
    resume: bool = False,
    log=print,
    devices=None,
    sub_batches: int | None = None,
) -> tuple[TrainState, GemNetTDenoiser, list[dict]]:
    """Train `model` from `params` (or the latest checkpoint in `workdir` if `resume`).

    Args:
        model: the denoiser (conditional for fine-tune modes), or a toy linen score model.
        params: initial parameters (also the restore template).
        data: a factory of an endless iterator of `CrystalGraphBatch` with grain's
            `get_state()` / `set_state()` (e.g. `iter(crystal_batches(..., num_epochs=None))`).
        loss: the stage's loss settings.
        train: optimiser and loop settings (`crystal_train_config(...)`).
        workdir: where checkpoints and `metrics.jsonl` go.
        resume: continue from the latest checkpoint (ValueError if there is none).
        log: progress lines (None: silent).
        devices: None (every device of every process), or an int n or a list of local devices
            (single-process runs only).
        sub_batches: K pipeline batches per step (default: the global device count; a multiple
            of it).

    Returns:
        (final state, the model actually used (grown budgets), rows logged by this call).

    Raises:
        ValueError: naming `sub_batches` / `devices` if K is not a positive multiple of the count.
    """
    mesh = sharding.training_mesh(devices)
    d = mesh.devices.size
    k = d if sub_batches is None else int(sub_batches)
    if k < 1 or k % d:
        raise ValueError(f"sub_batches: expected a positive multiple of the {d} devices, got {k}")
    check_adapters(loss.mode, params)
    labels = adapters_only_labels if isinstance(loss.mode, FinetuneAdapters) else None
    state = training.init_train_state(params, training.make_optimizer(train, labels), train)
    if resume and training.latest_checkpoint(workdir) is None:
        raise ValueError(f"resume: no checkpoint under {workdir}")
    identity = _identity(model, loss, k)
    if not resume:
        model = presize_graph(model, TrainBatch.from_pipeline(next(data())), loss)
    step = RegrowingStep(model, loss, train, labels)
    result = training.fit(
        step,
        state,
        _Grouped(data(), k),
        train,
        workdir,
        prepare=_stacked,
        identity=identity,
        save_extra=step.budgets,
        load_extra=step.set_budgets,
        resume=resume,
        log=log,
        name="train_crystal",
        mesh=mesh,
    )
    return result.state, step.model, result.history


@functools.lru_cache(maxsize=16)
def _eval_jit(score_fn: ScoreFn, loss: LossConfig):
    return jax.jit(lambda p, b, k: eval_loss(score_fn, p, b, k, loss))


def validate(model, params, batches, loss: LossConfig, seed: int = 1234) -> dict[str, float]:
    """Mean validation metrics over `batches` (fixed keys, so comparable across checkpoints)."""
    fn = _eval_jit(score_fn_of(model), loss)

    def metrics(i, raw):
        m = fn(params, TrainBatch.from_pipeline(raw), jax.random.key(seed + i))
        return {k: v for k, v in m.items() if k in _LOGGED}

    return training.evaluate(metrics, batches, lambda raw: np.sum(raw.crystal.graph_mask))


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrystalFitConfig:
    """One CDOSGen training stage.

    Attributes:
        stage: "pretrain" (unconditional) or "finetune" (DOS-conditional, from `init` if set).
        model: the unconditional network (a fine-tune trains `model.conditional()`). None: the
            architecture of `init` (required then), or `GemNetConfig.tiny()` without one. Given
            with `init`, it must be the init's network (graph budgets and DOS fields aside).
        diffusion: corruption processes (the D3PM hybrid CE weight among them). None: the
            init's (or `DiffusionConfig()`); given with `init`, only the hybrid CE weight and
            t_min may differ from the init's.
        weights: per-field loss weights.
        train: optimiser and loop settings.
        adapters_only: fine-tune the adapters and the DOS embedding only (pretrain ignores it).
        p_uncond: classifier-free dropout of the condition in a fine-tune.
        init: an exported model directory to fine-tune from (its weights, graph budgets and time /
            output conditioning), or None.
        records: a `Records` .npz (10 % held out), or None for the world splits.
        atoms, graphs: batch budgets (atom slots; graph slots, one of them padding).
        sub_batches: K pipeline batches per step (None: the global device count; a multiple of
            it). K, not the device count, fixes the trajectory: keep it to resume on another.
    """

    stage: str = "pretrain"
    model: GemNetConfig | None = None
    diffusion: DiffusionConfig | None = None
    weights: LossWeights = LossWeights()
    train: TrainConfig = crystal_train_config(steps=300, learning_rate=1e-3)
    adapters_only: bool = False
    p_uncond: float = 0.2
    init: str | None = None
    records: str | None = None
    atoms: int = 96
    graphs: int = 17
    sub_batches: int | None = None

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage: expected 'pretrain' or 'finetune', got {self.stage!r}")
        if self.sub_batches is not None and self.sub_batches < 1:
            raise ValueError(f"sub_batches: expected None or >= 1, got {self.sub_batches}")
        CrystalBudgets(atoms=self.atoms, graphs=self.graphs)  # validates

    @property
    def loss(self) -> LossConfig:
        if self.stage == "pretrain":
            mode = Pretrain()
        elif self.adapters_only:
            mode = FinetuneAdapters(p_uncond=self.p_uncond)
        else:
            mode = FinetuneFull(p_uncond=self.p_uncond)
        diffusion = DiffusionConfig() if self.diffusion is None else self.diffusion
        return LossConfig(mode=mode, diffusion=diffusion, weights=self.weights)

    def resolved(self) -> "CrystalFitConfig":
        """This config with `model` and `diffusion` filled in (from `init` where it is set).

        Raises:
            ValueError: naming the field, if a given `model` / `diffusion` contradicts the init.
        """
        if self.init is None:
            model = GemNetConfig.tiny() if self.model is None else self.model
            diffusion = DiffusionConfig() if self.diffusion is None else self.diffusion
            return dataclasses.replace(self, model=model, diffusion=diffusion)
        base_net, base_diff = init_architecture(self.init)
        model = base_net if self.model is None else self.model
        diff = [f for f in _ARCH_FIELDS if getattr(model, f) != getattr(base_net, f)]
        if model.frac_head != base_net.frac_head and base_net.frac_head:
            diff.append("frac_head")  # a fine-tune may add the head, not change or drop it
        if diff:
            pairs = ", ".join(f"{f}={getattr(model, f)!r} (init: {getattr(base_net, f)!r})"
                              for f in diff)  # fmt: skip
            raise ValueError(f"model: differs from the architecture of init {self.init}: {pairs}")
        diffusion = base_diff if self.diffusion is None else self.diffusion
        # Loss and training-time settings may change in a fine-tune; the forward processes not.
        loss_only = dict(
            types=dataclasses.replace(diffusion.types, hybrid_coeff=0.0),
            t_min=0.0,
            mid_fraction=0.0,
            mid_range=DiffusionConfig().mid_range,
        )
        norm = lambda d: dataclasses.replace(d, **loss_only)
        if norm(diffusion) != norm(base_diff):
            raise ValueError(
                f"diffusion: differs from the forward processes of init {self.init} "
                f"({diffusion!r} vs {base_diff!r}); leave it None to take the init's"
            )
        return dataclasses.replace(self, model=model, diffusion=diffusion)


# GemNetConfig fields a model started from `init` may not change: everything its weights assume.
# The graph budgets only grow; the DOS embedding and a fractional head are what a fine-tune adds
# (both start at zero, so the model starts with the init's scores).
_ARCH_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(GemNetConfig)
    if f.name not in ("graph", "dos_dim", "dos_emb_size", "frac_head")
)


def init_architecture(init) -> tuple[GemNetConfig, DiffusionConfig]:
    """(network, forward processes) of the model directory `init`: what a model trained from it
    must keep (ValueError / FileNotFoundError naming the file if it is no "cdosgen" model)."""
    base = CDOSGenModel.load(init)
    return base.gemnet, base.diffusion


def _init_params(model, budgets, records, seed):
    batch = TrainBatch.from_pipeline(next(iter(crystal_batches(records, budgets, num_epochs=1))))
    g = batch.crystal.num_graphs
    cond = None
    if model.config.dos_dim is not None:
        cond = DosCondition(jnp.asarray(batch.dos), jnp.ones(g, bool))
    variables = jax.jit(model.init)(jax.random.key(seed), batch.crystal, jnp.full(g, 0.5), cond)
    return {"params": variables["params"]}


def _network(config: CrystalFitConfig, base: GemNetConfig | None) -> GemNetConfig:
    """The network a (resolved) stage trains: a fine-tune adds the DOS embedding and the adapters
    (paper eqs. 2-4) unless its init has them already, and the fractional head if the config
    asks for one; an init's graph budgets are kept."""
    gemnet = config.model if base is None else dataclasses.replace(config.model, graph=base.graph)
    if base is not None and base.dos_dim is not None:  # a conditional init trains on as it is
        return dataclasses.replace(base, frac_head=config.model.frac_head)
    return gemnet.conditional() if config.stage == "finetune" else gemnet


def initial_model(config: CrystalFitConfig, budgets, train: Records):
    """(model, params) of a stage (`CrystalFitConfig.resolved` fills `model`): fresh, or a
    conditional model merged with its init (MatterGen's fine-tune init: the base weights; with
    the zero-initialised mix-ins the conditional model starts equal to the base, paper eq. 4)."""
    if config.model is None or config.diffusion is None:
        config = config.resolved()
    base = None if config.init is None else CDOSGenModel.load(config.init)
    model = GemNetTDenoiser(_network(config, None if base is None else base.gemnet))
    params = _init_params(model, budgets, train, config.train.seed)
    if base is not None:
        params = merge_base_params(params, base.params)
    return model, params


def run_stage(
    config: CrystalFitConfig,
    out,
    train: Records,
    val: Records,
    *,
    resume: bool = False,
    extra_meta: dict | None = None,
    log=print,
    devices=None,
) -> tuple[Path, dict]:
    """Train one stage under `out` and export `out/model`; returns (that directory, its meta).

    `devices`: data-parallel over these devices (`fit_crystal`; default every device of every
    process). In a multi-process run every process calls this alike; process 0 exports and logs."""
    log = main_log(log)
    out = Path(out)
    config = config.resolved()
    budgets = CrystalBudgets(atoms=config.atoms, graphs=config.graphs)
    model, params = initial_model(config, budgets, train)
    loss, seed = config.loss, config.train.seed

    def data():
        return iter(crystal_batches(train, budgets, seed=seed, num_epochs=None))

    t0 = time.time()
    state, model, history = fit_crystal(
        model,
        params,
        data,
        loss,
        config.train,
        out,
        resume=resume,
        log=log,
        devices=devices,
        sub_batches=config.sub_batches,
    )
    train_s = time.time() - t0
    val_batches = list(crystal_batches(val, budgets, num_epochs=1, shuffle=False))
    val_metrics = validate(model, state.params, val_batches, loss)
    # The gate of issue 12: the same batches and keys with the DOS dropped. Equal losses would mean
    # the model ignores its condition, whatever the sampler does.
    val_uncond = None
    if config.stage == "finetune":
        dropped = dataclasses.replace(loss, mode=Pretrain())
        val_uncond = validate(model, state.params, val_batches, dropped)
    last = (
        {k: v for k, v in history[-1].items() if k == "step" or k in _LOGGED} if history else None
    )
    meta = {
        "stage": config.stage,
        "mode": type(loss.mode).__name__,
        "steps": int(state.step),
        "train_seconds": round(train_s, 1),
        "learning_rate": config.train.learning_rate,
        "cosine_decay": config.train.decay_steps is not None,
        "loss": {"pos_weight": config.weights.pos, "type_ce": config.diffusion.types.hybrid_coeff},
        "budgets": {"atoms": config.atoms, "graphs": config.graphs},
        "train_records": len(train),
        "val_records": len(val),
        "data": records_source(config.records),
        "init": None if config.init is None else str(Path(config.init).resolve()),
        "val_metrics": val_metrics,
        "val_metrics_dos_dropped": val_uncond,
        "last_train_metrics": last,
        **(extra_meta or {}),
    }
    dist = NumAtomsDistribution.from_counts(np.asarray(train.num_atoms))
    on_main(  # the one export of CDOSGen
        lambda: save_model(
            out / "model", state.params, model.config, dist, meta, diffusion=config.diffusion
        ),
        "crystal-export",
    )
    if log is not None:
        summary = {"stage": config.stage, "val": val_metrics, "val_dos_dropped": val_uncond}
        log(json.dumps({**summary, "train_seconds": meta["train_seconds"]}))
    return out / "model", meta


def run(config: CrystalFitConfig, out, *, resume: bool = False, log=print) -> Path:
    """One stage on `config.records` (or the world splits); returns the exported model dir."""
    train, val = train_val_records(config.records, config.train.seed)
    return run_stage(config, out, train, val, resume=resume, log=log)[0]


def make_default(
    pretrain: CrystalFitConfig,
    finetune: CrystalFitConfig,
    out,
    *,
    resume: bool = False,
    destination=DEFAULT_DIR,
    log=print,
) -> Path:
    """Pre-train under `out/pretrain`, fine-tune that under `out/finetune`, and copy the result
    (with the pre-training's steps, time and validation losses in its meta) to `destination`."""
    if pretrain.stage != "pretrain" or finetune.stage != "finetune":
        raise ValueError("stage: make_default takes a pretrain and a finetune config")
    log = main_log(log)
    out = Path(out)
    train, val = train_val_records(pretrain.records, pretrain.train.seed)
    pre, pre_meta = run_stage(pretrain, out / "pretrain", train, val, resume=resume, log=log)
    summary = {k: pre_meta[k] for k in ("steps", "train_seconds", "val_metrics")}
    finetune = dataclasses.replace(finetune, init=str(pre))
    extra = {"pretrain": summary}
    ft, _ = run_stage(
        finetune, out / "finetune", train, val, resume=resume, extra_meta=extra, log=log
    )
    # atomic, in the one model format
    on_main(lambda: CDOSGenModel.load(ft).save(destination), "crystal-default")
    if log is not None:
        log(f"default model -> {destination}")
    return Path(destination)
