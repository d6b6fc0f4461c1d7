"""CDOSGen training: unconditional pre-training and DOS-conditional fine-tuning (paper C.2-C.3).

`train_step(state, batch, key) -> (state, metrics)` is one jitted pure function: symmetrise the
lattices (polar decomposition, MatterGen's `symmetrize_lattice`), draw the CFG mask (p_uncond = 0.2;
rows with a non-finite DOS are always unconditional, MatterGen's `SetEmbeddingType`), corrupt,
score, MatterGen's weighted loss, clipped Adam. Adapters-only fine-tuning freezes every
non-adapter parameter with `optax.multi_transform` (`set_to_zero`). A network-budget overflow leaves
the state untouched and sets `metrics["overflow"]`: the loop grows the budgets and redoes the step.
Step keys are `fold_in(key, step)`, so a resumed run (params, opt state, step, data-iterator
position) reproduces the uninterrupted run bit for bit.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdos.crystal.batch import DosCondition
from jaxdos.crystal.diffusion.corruption import DiffusionConfig
from jaxdos.crystal.diffusion.lattice import polar_symmetrize
from jaxdos.crystal.diffusion.losses import LossWeights, ScoreFn, diffusion_loss
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = [
    "Pretrain",
    "FinetuneFull",
    "FinetuneAdapters",
    "Mode",
    "TrainConfig",
    "TrainState",
    "TrainBatch",
    "ADAPTER_NAME_PARTS",
    "param_labels",
    "make_optimizer",
    "init_train_state",
    "make_train_step",
    "cfg_mask",
    "eval_loss",
]

# Substrings of parameter paths that belong to the DOS/property adapters (jaxdos.crystal.denoiser).
ADAPTER_NAME_PARTS = ("cond_adapt_layers", "cond_mixin_layers", "property_embeddings_adapt")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pretrain:
    """Unconditional pre-training: the network is called with `cond=None`."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneFull:
    """DOS fine-tuning of every parameter (the paper's choice, C.3).

    Attributes:
        p_uncond: probability of dropping the condition per crystal (classifier-free training).
    """

    p_uncond: float = 0.2

    def __post_init__(self):
        if not 0 <= self.p_uncond <= 1:
            raise ValueError(f"p_uncond: expected in [0, 1], got {self.p_uncond}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneAdapters(FinetuneFull):
    """DOS fine-tuning of the adapters and the DOS embedding only (base weights frozen)."""


Mode = Pretrain | FinetuneFull | FinetuneAdapters


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimiser and loss settings (MatterGen: Adam, clip by value 0.5; lr 1e-4 base, 5e-6 paper
    fine-tune).

    Attributes:
        mode: `Pretrain()`, `FinetuneFull()` or `FinetuneAdapters()`.
        learning_rate: Adam step size (the peak, with a schedule).
        decay_steps: cosine decay of the step size to `final_lr_fraction` of it over this many
            steps (None = constant, as MatterGen's pre-training).
        final_lr_fraction: where the cosine decay ends.
        grad_clip_value: elementwise gradient clip.
        diffusion: corruption processes.
        weights: per-field loss weights.
    """

    mode: Mode = Pretrain()
    learning_rate: float = 1e-4
    decay_steps: int | None = None
    final_lr_fraction: float = 0.1
    grad_clip_value: float = 0.5
    diffusion: DiffusionConfig = DiffusionConfig()
    weights: LossWeights = LossWeights()

    def __post_init__(self):
        if not isinstance(self.mode, Mode):
            raise ValueError(
                f"mode: expected Pretrain/FinetuneFull/FinetuneAdapters, got {self.mode!r}"
            )
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate: expected in (0, 1), got {self.learning_rate}")
        if self.decay_steps is not None and self.decay_steps < 1:
            raise ValueError(f"decay_steps: expected None or >= 1, got {self.decay_steps}")
        if not 0 <= self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction: expected in [0, 1], got {self.final_lr_fraction}")
        if not self.grad_clip_value > 0:
            raise ValueError(f"grad_clip_value: expected > 0, got {self.grad_clip_value}")


class TrainState(NamedTuple):
    """Fields: params, opt_state, step (int32 scalar: optimizer updates applied)."""

    params: PyTree
    opt_state: PyTree
    step: Array


class TrainBatch(NamedTuple):
    """A padded crystal batch with its conditioning DOS.

    Fields:
        crystal: clean `CrystalBatch` (G graphs, N atoms).
        dos: `[G, 256]` per-atom DOS (any value on padding graphs; non-finite = no condition).
    """

    crystal: CrystalBatch
    dos: Array

    @classmethod
    def from_pipeline(cls, b) -> "TrainBatch":
        """From a `jaxdos.data.pipelines.CrystalGraphBatch` (or anything with those fields)."""
        return cls(CrystalBatch(*b.crystal), b.dos)


def param_labels(params: PyTree) -> PyTree:
    """ "adapter" for adapter / DOS-embedding leaves, "base" for the rest."""

    def label(path, _):
        name = jax.tree_util.keystr(path)
        return "adapter" if any(p in name for p in ADAPTER_NAME_PARTS) else "base"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(config: TrainConfig, params: PyTree) -> optax.GradientTransformation:
    """Clip-by-value + Adam; adapters-only mode zeroes the base parameters' updates."""
    lr = config.learning_rate
    if config.decay_steps is not None:
        lr = optax.cosine_decay_schedule(lr, config.decay_steps, alpha=config.final_lr_fraction)
    opt = optax.chain(optax.clip(config.grad_clip_value), optax.adam(lr))
    if isinstance(config.mode, FinetuneAdapters):
        labels = param_labels(params)
        if "adapter" not in jax.tree.leaves(labels):
            raise ValueError("mode: FinetuneAdapters needs a conditional model with adapters")
        return optax.multi_transform({"adapter": opt, "base": optax.set_to_zero()}, labels)
    return opt


def init_train_state(params: PyTree, optimizer: optax.GradientTransformation) -> TrainState:
    """A fresh state on a copy of `params` (train_step donates its state; the caller's params stay
    valid)."""
    params = jax.tree.map(jnp.array, params)
    return TrainState(params, optimizer.init(params), jnp.int32(0))


def cfg_mask(key: PRNGKey, dos: Array, graph_mask: Array, p_uncond: float) -> Array:
    """`[G]` bool use_cond: True with probability 1 - p_uncond where the DOS is fully finite."""
    present = jnp.all(jnp.isfinite(dos), axis=-1) & graph_mask
    return present & (jax.random.uniform(key, graph_mask.shape) >= p_uncond)


def symmetrized(crystal: CrystalBatch) -> CrystalBatch:
    """Real lattices replaced by their symmetric polar factor (fractional coordinates unchanged)."""
    sym = polar_symmetrize(crystal.lattice)
    return crystal._replace(
        lattice=jnp.where(crystal.graph_mask[:, None, None], sym, crystal.lattice)
    )


def make_train_step(
    score_fn: ScoreFn, optimizer: optax.GradientTransformation, config: TrainConfig
) -> Callable[[TrainState, TrainBatch, PRNGKey], tuple[TrainState, dict]]:
    """The jitted `train_step(state, batch, key) -> (state, metrics)`.

    `key` is the run's base key; the step's key is `fold_in(key, state.step)`.
    """

    def train_step(state: TrainState, batch: TrainBatch, key: PRNGKey):
        k_cfg, k_loss = jax.random.split(jax.random.fold_in(key, state.step))
        crystal = symmetrized(batch.crystal)
        cond = None
        if not isinstance(config.mode, Pretrain):
            use = cfg_mask(k_cfg, batch.dos, crystal.graph_mask, config.mode.p_uncond)
            dos = jnp.where(jnp.isfinite(batch.dos), batch.dos, 0.0)
            cond = DosCondition(dos=jnp.maximum(dos, 0.0), use_cond=use)

        def loss_fn(params):
            return diffusion_loss(
                score_fn, params, crystal, cond, k_loss, config.diffusion, config.weights
            )

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = TrainState(params, opt_state, state.step + 1)
        # On a budget overflow the loss is meaningless: keep the old state (redo after growing).
        new = jax.tree.map(lambda a, b: jnp.where(metrics["overflow"], b, a), new, state)
        metrics["grad_norm"] = optax.global_norm(grads)
        return new, metrics

    return jax.jit(train_step, donate_argnums=0)


def eval_loss(
    score_fn: ScoreFn, params: PyTree, batch: TrainBatch, key: PRNGKey, config: TrainConfig
) -> dict:
    """Validation metrics of one batch (conditional for fine-tune modes, every crystal with DOS)."""
    cond = None
    if not isinstance(config.mode, Pretrain):
        present = jnp.all(jnp.isfinite(batch.dos), -1) & batch.crystal.graph_mask
        cond = DosCondition(jnp.where(jnp.isfinite(batch.dos), batch.dos, 0.0), present)
    _, metrics = diffusion_loss(
        score_fn, params, symmetrized(batch.crystal), cond, key, config.diffusion, config.weights
    )
    return metrics
