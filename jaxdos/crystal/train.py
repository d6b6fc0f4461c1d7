"""CDOSGen's training loss: unconditional pre-training and DOS-conditional fine-tuning (paper
C.2-C.3).

The optimiser, the jitted step, the loop and its checkpoints are the shared core
(`jaxdos.training`); this module supplies the stage's loss. `make_loss(score_fn, config)` is
`loss_fn(params, batch, key) -> (loss, metrics)`: symmetrise the lattices (polar decomposition,
MatterGen's `symmetrize_lattice`), draw the CFG mask (p_uncond = 0.2; rows with a non-finite DOS
are always unconditional, MatterGen's `SetEmbeddingType`), corrupt, score, MatterGen's weighted
loss. Adapters-only fine-tuning freezes every non-adapter parameter through the core optimiser's
labels (`adapters_only_labels`). A network-budget overflow sets `metrics["overflow"]`: the core
step then keeps the state and `jaxdos.crystal.fit` grows the budgets and redoes the step.

Data parallelism: a step's batch is K sub-batches stacked on a leading axis (`stack_batches`), each
a whole pipeline batch with its own static budgets; `make_stacked_loss` runs the loss on each, each
device its own sub-batches one after the other (`sharding.map_rows`). Sub-batch k draws from
`fold_in(key, k)`, or from `key` itself when K = 1 (the plain loss); each is weighted by its real
crystals, so the loss is the mean over every crystal of the step. The layout fixes the result: the
K sub-batches give the same losses on any device count dividing K.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos import sharding
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
    "LossConfig",
    "TrainBatch",
    "ADAPTER_NAME_PARTS",
    "adapters_only_labels",
    "check_adapters",
    "make_loss",
    "make_stacked_loss",
    "stack_batches",
    "cfg_mask",
    "symmetrized",
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
class LossConfig:
    """What CDOSGen's loss needs (the optimiser lives in `jaxdos.training.TrainConfig`).

    Attributes:
        mode: `Pretrain()`, `FinetuneFull()` or `FinetuneAdapters()`.
        diffusion: corruption processes.
        weights: per-field loss weights.
    """

    mode: Mode = Pretrain()
    diffusion: DiffusionConfig = DiffusionConfig()
    weights: LossWeights = LossWeights()

    def __post_init__(self):
        if not isinstance(self.mode, Mode):
            raise ValueError(
                f"mode: expected Pretrain/FinetuneFull/FinetuneAdapters, got {self.mode!r}"
            )


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


def _is_adapter(path) -> bool:
    name = jax.tree_util.keystr(path)
    return any(p in name for p in ADAPTER_NAME_PARTS)


def adapters_only_labels(params: PyTree) -> PyTree:
    """The core optimiser's labels of adapters-only fine-tuning: "train" for adapter and
    DOS-embedding leaves, "frozen" for the base weights."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "train" if _is_adapter(path) else "frozen", params
    )


def check_adapters(mode: Mode, params: PyTree) -> None:
    """ValueError unless `params` has adapters to train when `mode` is `FinetuneAdapters`."""
    if isinstance(mode, FinetuneAdapters):
        paths = jax.tree_util.tree_flatten_with_path(params)[0]
        if not any(_is_adapter(path) for path, _ in paths):
            raise ValueError("mode: FinetuneAdapters needs a conditional model with adapters")


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


@functools.lru_cache(maxsize=32)  # one loss object per (network, config): the core caches its step
def make_loss(score_fn: ScoreFn, config: LossConfig):
    """`loss_fn(params, TrainBatch, key) -> (loss, metrics)` of one training step.

    metrics: `diffusion_loss`'s (loss, loss_pos, loss_cell, loss_types, ..., overflow, stats).
    """

    def loss_fn(params: PyTree, batch: TrainBatch, key: PRNGKey):
        k_cfg, k_loss = jax.random.split(key)
        crystal = symmetrized(batch.crystal)
        cond = None
        if not isinstance(config.mode, Pretrain):
            use = cfg_mask(k_cfg, batch.dos, crystal.graph_mask, config.mode.p_uncond)
            dos = jnp.where(jnp.isfinite(batch.dos), batch.dos, 0.0)
            cond = DosCondition(dos=jnp.maximum(dos, 0.0), use_cond=use)
        return diffusion_loss(
            score_fn, params, crystal, cond, k_loss, config.diffusion, config.weights
        )

    return loss_fn


def stack_batches(batches) -> TrainBatch:
    """K `TrainBatch`es with equal budgets -> one with `[K, ...]` leaves."""
    batches = list(batches)
    if not batches:
        raise ValueError("batches: expected at least one")
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *batches)


@functools.lru_cache(maxsize=32)
def make_stacked_loss(score_fn: ScoreFn, config: LossConfig):
    """`loss_fn(params, TrainBatch [K, ...], key)`: `make_loss` over K sub-batches (module doc).

    metrics: the crystal-weighted means of the sub-batches' metrics, `overflow` if any sub-batch
    overflowed, `stats` the elementwise max.
    """
    inner = make_loss(score_fn, config)

    def loss_fn(params: PyTree, batch: TrainBatch, key: PRNGKey):
        k = batch.dos.shape[0]
        if k == 1:
            keys = key[None]
        else:
            keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(k))
        m = sharding.map_rows(lambda p, row: inner(p, *row)[1], params, (batch, keys))
        w = jnp.sum(batch.crystal.graph_mask, axis=1).astype(jnp.float32)
        total = jnp.maximum(jnp.sum(w), 1.0)
        out = {
            name: jnp.sum(v * w) / total
            for name, v in m.items()
            if name not in ("overflow", "stats")
        }
        out["overflow"] = jnp.any(m["overflow"])
        if "stats" in m:
            out["stats"] = jax.tree.map(lambda x: jnp.max(x, axis=0), m["stats"])
        return out["loss"], out

    return loss_fn


def eval_loss(
    score_fn: ScoreFn, params: PyTree, batch: TrainBatch, key: PRNGKey, config: LossConfig
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
