"""MatterGen's training loss (docs/spec/mattergen.md §4.4, paper eqs. 9-11).

total = mean over real crystals of (0.1 L_pos + 1.0 L_cell + 1.0 L_types), with L_pos and L_types
summed over the crystal's atoms (reduce="sum") and L_cell the mean over the 9 lattice entries.
`diffusion_loss` = `sample_corruption` (t and x_t from a key) + the network + the pure
`loss_given_corruption` (per-crystal terms; tests/parity/test_loss_parity.py feeds it MatterGen's
inputs).
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdos.crystal.batch import DosCondition, ScoreOutput
from jaxdos.crystal.diffusion import corruption, d3pm, lattice, wrapped_normal
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = [
    "LossWeights",
    "ScoreFn",
    "ScoreWithDiagnostics",
    "split_diagnostics",
    "FieldLosses",
    "sample_corruption",
    "loss_given_corruption",
    "diffusion_loss",
]


class ScoreWithDiagnostics(NamedTuple):
    """What a score function may return instead of a bare `ScoreOutput`.

    Fields:
        score: the network output.
        overflow: bool scalar, True if a static budget (e.g. the periodic graph's) was too small.
        stats: a pytree of int scalars saying what the call needed (max-accumulated by callers).
    """

    score: ScoreOutput
    overflow: Array
    stats: PyTree


# score_fn(params, batch, t [G], cond | None, key) -> ScoreOutput | ScoreWithDiagnostics
# (predictions in the "score x std" convention).
ScoreFn = Callable[
    [PyTree, CrystalBatch, Array, DosCondition | None, PRNGKey],
    ScoreOutput | ScoreWithDiagnostics,
]


def split_diagnostics(out) -> tuple[ScoreOutput, Array, PyTree]:
    """(score, overflow, stats) of a score function's output; a bare ScoreOutput never overflows."""
    if isinstance(out, ScoreWithDiagnostics):
        return out.score, out.overflow, out.stats
    return out, jnp.bool_(False), None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossWeights:
    """Per-field loss weights (MatterGen: pos 0.1, cell 1.0, atomic_numbers 1.0)."""

    pos: float = 0.1
    cell: float = 1.0
    types: float = 1.0

    def __post_init__(self):
        for name in ("pos", "cell", "types"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a weight >= 0, got {getattr(self, name)}")


class FieldLosses(NamedTuple):
    """Per-crystal loss terms, each `[G]` and exactly 0 on padding graphs.

    Fields:
        pos: sum over the crystal's atoms of the wrapped-normal score-matching loss.
        cell: mean over the 9 lattice entries of the VP denoising score-matching loss.
        types: sum over atoms of the D3PM hybrid loss (KL, or CE at k = 0, plus lambda CE).
        ce_types: sum over atoms of the lambda-free cross-entropy (a diagnostic).
        total: weights.pos * pos + weights.cell * cell + weights.types * types.
    """

    pos: Array
    cell: Array
    types: Array
    ce_types: Array
    total: Array


def sample_corruption(
    key: PRNGKey, batch: CrystalBatch, config: corruption.DiffusionConfig
) -> tuple[corruption.Corrupted, PRNGKey]:
    """The random half of `diffusion_loss`: t ~ U(t_min, 1) per crystal and x_t ~ q(x_t | x_0).

    Returns:
        (the corruption, the key `diffusion_loss` passes to the network).
    """
    k_t, k_corrupt, k_net = jax.random.split(key, 3)
    t = corruption.sample_time(k_t, batch.num_graphs, config)
    return corruption.corrupt(k_corrupt, batch, t, config), k_net


def loss_given_corruption(
    out: ScoreOutput,
    batch: CrystalBatch,
    c: corruption.Corrupted,
    config: corruption.DiffusionConfig,
    weights: LossWeights = LossWeights(),
) -> FieldLosses:
    """The deterministic half of `diffusion_loss`: per-crystal losses of a prediction.

    Args:
        out: the network's prediction on `c.batch` at times `c.t`.
        batch: the clean padded batch (`G` graphs, `N` atoms) that `c` corrupts.
        c: the corruption (noisy batch, t and the marginal parameters).
        config: corruption settings.
        weights: per-field weights.

    Returns:
        `FieldLosses`, each `[G]`.
    """
    g, n = batch.num_graphs, batch.num_nodes
    assert out.frac.shape == (n, 3), out.frac.shape
    assert out.lattice.shape == (g, 3, 3), out.lattice.shape
    assert out.type_logits.shape[0] == n, out.type_logits.shape
    node_w = batch.node_mask.astype(jnp.float32)
    graph_w = batch.graph_mask.astype(jnp.float32)
    seg = jnp.where(batch.node_mask, batch.batch, 0)

    pos_atom = wrapped_normal.score_matching_loss(
        out.frac, c.batch.frac_coords, batch.frac_coords, c.pos_sigma, config.pos
    )
    cell_graph = lattice.score_matching_loss(out.lattice, c.batch.lattice, c.cell_mean, c.cell_std)
    x0 = corruption.types_to_classes(batch.atomic_numbers)
    x_next = corruption.types_to_classes(c.batch.atomic_numbers)
    types_atom, ce_atom = d3pm.d3pm_loss(out.type_logits, x0, x_next, c.k, config.types)

    def per_graph(v):
        return jax.ops.segment_sum(v * node_w, seg, num_segments=g) * graph_w

    l_pos, l_types, ce = per_graph(pos_atom), per_graph(types_atom), per_graph(ce_atom)
    l_cell = cell_graph * graph_w
    total = weights.pos * l_pos + weights.cell * l_cell + weights.types * l_types
    return FieldLosses(pos=l_pos, cell=l_cell, types=l_types, ce_types=ce, total=total)


def diffusion_loss(
    score_fn: ScoreFn,
    params: PyTree,
    batch: CrystalBatch,
    cond: DosCondition | None,
    key: PRNGKey,
    config: corruption.DiffusionConfig,
    weights: LossWeights = LossWeights(),
) -> tuple[Array, dict[str, Array]]:
    """Sample t and x_t, run the network, and return (scalar loss, metrics).

    `sample_corruption` then `score_fn` then `loss_given_corruption`, averaged over real crystals.

    Args:
        score_fn: the network, `score_fn(params, batch, t, cond, key) -> ScoreOutput`.
        params: network parameters.
        batch: clean padded batch (`G` graphs, `N` atoms).
        cond: DOS condition (with the CFG mask already drawn) or None.
        key: PRNG key.
        config: corruption settings.
        weights: per-field weights.

    Returns:
        (loss, {"loss", "loss_pos", "loss_cell", "loss_types", "ce_types"} each a mean over
        real crystals, plus "overflow": True if the network's static budgets were too small, in
        which case the loss is invalid and the caller must grow the budgets and redo the step;
        "stats": the score function's diagnostics, if it returns any).
    """
    c, k_net = sample_corruption(key, batch, config)
    out, overflow, stats = split_diagnostics(score_fn(params, c.batch, c.t, cond, k_net))
    losses = loss_given_corruption(out, batch, c, config, weights)
    n_real = jnp.maximum(jnp.sum(batch.graph_mask.astype(jnp.float32)), 1.0)

    def mean(v):
        return jnp.sum(v) / n_real

    metrics = {
        "loss": mean(losses.total),
        "loss_pos": mean(losses.pos),
        "loss_cell": mean(losses.cell),
        "loss_types": mean(losses.types),
        "ce_types": mean(losses.ce_types),
        "overflow": overflow,
    }
    if stats is not None:
        metrics["stats"] = stats
    return metrics["loss"], metrics
