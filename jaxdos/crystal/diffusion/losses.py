"""MatterGen's training loss (spec section 4.4, paper eqs. 9-11).

total = mean over real crystals of (0.1 L_pos + 1.0 L_cell + 1.0 L_types), with L_pos and L_types
summed over the crystal's atoms (reduce="sum") and L_cell the mean over the 9 lattice entries.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdos.crystal.batch import CrystalBatch, DosCondition, ScoreOutput
from jaxdos.crystal.diffusion import corruption, d3pm, lattice, wrapped_normal
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = [
    "LossWeights",
    "ScoreFn",
    "ScoreWithDiagnostics",
    "split_diagnostics",
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
    k_t, k_corrupt, k_net = jax.random.split(key, 3)
    g = batch.num_graphs
    t = corruption.sample_time(k_t, g, config)
    c = corruption.corrupt(k_corrupt, batch, t, config)
    out, overflow, stats = split_diagnostics(score_fn(params, c.batch, t, cond, k_net))

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
        return jax.ops.segment_sum(v * node_w, seg, num_segments=g)

    l_pos, l_types, ce = per_graph(pos_atom), per_graph(types_atom), per_graph(ce_atom)
    total = weights.pos * l_pos + weights.cell * cell_graph + weights.types * l_types
    n_real = jnp.maximum(jnp.sum(graph_w), 1.0)

    def mean(v):
        return jnp.sum(v * graph_w) / n_real

    metrics = {
        "loss": mean(total),
        "loss_pos": mean(l_pos),
        "loss_cell": mean(cell_graph),
        "loss_types": mean(l_types),
        "ce_types": mean(ce),
        "overflow": overflow,
    }
    if stats is not None:
        metrics["stats"] = stats
    return metrics["loss"], metrics
