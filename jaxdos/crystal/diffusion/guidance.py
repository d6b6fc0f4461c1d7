"""Guidance variants for the crystal sampler, as types (docs/spec/mattergen.md §5.3).

`ClassifierFree(cfg_scale=w)` evaluates the unconditional and the conditional score in ONE network
call on a batch of 2G stacked crystals (MatterGen HEAD's batching) and returns lerp(uncond, cond, w)
= uncond + w (cond - uncond) on every field, the D3PM logits included (logits of
p(x)^(1-w) p(x|y)^w). w = 1 is conditional only; w = 0 is unconditional and, as in MatterGen, then
only the unconditional score is computed. (`cfg_scale`, not `gamma`: stage 1's `gamma` is the
classifier-guidance strength of the paper's eq. (1)/(8), a different knob.)
"""

import dataclasses

import jax.numpy as jnp

from jaxdos.crystal.batch import DosCondition, ScoreOutput
from jaxdos.crystal.diffusion.losses import ScoreFn, ScoreWithDiagnostics, split_diagnostics
from jaxdos.guidance import NoGuidance  # shared with stage 1: one meaning, one type
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = ["NoGuidance", "ClassifierFree", "Guidance", "stack_for_cfg", "guided_score"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassifierFree:
    """Classifier-free guidance lerp(uncond, cond, cfg_scale); the README of MatterGen uses 2.0.

    Attributes:
        cfg_scale: guidance factor, finite and >= 0.
    """

    cfg_scale: float

    def __post_init__(self):
        if not (isinstance(self.cfg_scale, int | float) and 0 <= self.cfg_scale < float("inf")):
            raise ValueError(f"cfg_scale: expected a finite float >= 0, got {self.cfg_scale!r}")


Guidance = NoGuidance | ClassifierFree


def stack_for_cfg(batch: CrystalBatch, cond: DosCondition) -> tuple[CrystalBatch, DosCondition]:
    """Two copies of the batch, `[2G]` graphs / `[2N]` atoms: first unconditional, then `cond`."""
    g = batch.num_graphs

    def cat(a, b):
        return jnp.concatenate([a, b], axis=0)

    doubled = CrystalBatch(
        atomic_numbers=cat(batch.atomic_numbers, batch.atomic_numbers),
        frac_coords=cat(batch.frac_coords, batch.frac_coords),
        lattice=cat(batch.lattice, batch.lattice),
        num_atoms=cat(batch.num_atoms, batch.num_atoms),
        batch=cat(batch.batch, batch.batch + g),
        node_mask=cat(batch.node_mask, batch.node_mask),
        graph_mask=cat(batch.graph_mask, batch.graph_mask),
    )
    doubled_cond = DosCondition(
        dos=cat(cond.dos, cond.dos),
        use_cond=cat(jnp.zeros_like(cond.use_cond), cond.use_cond),
    )
    return doubled, doubled_cond


def guided_score(
    score_fn: ScoreFn,
    params: PyTree,
    batch: CrystalBatch,
    t: Array,
    cond: DosCondition | None,
    key: PRNGKey,
    guidance: Guidance,
) -> ScoreOutput | ScoreWithDiagnostics:
    """The guided network output ("score x std" convention) for a batch at times `t [G]`.

    Returns whatever kind `score_fn` returns (diagnostics, if any, are those of the one call).
    """
    if isinstance(guidance, NoGuidance) or (
        isinstance(guidance, ClassifierFree) and guidance.cfg_scale == 0.0
    ):
        return score_fn(params, batch, t, None, key)
    if not isinstance(guidance, ClassifierFree):
        raise TypeError(f"guidance: expected NoGuidance or ClassifierFree, got {guidance!r}")
    if cond is None:
        raise ValueError("cond: ClassifierFree guidance needs a DosCondition, got None")
    doubled, doubled_cond = stack_for_cfg(batch, cond)
    raw = score_fn(params, doubled, jnp.concatenate([t, t]), doubled_cond, key)
    out, overflow, stats = split_diagnostics(raw)
    n, g = batch.num_nodes, batch.num_graphs
    cfg_scale = guidance.cfg_scale

    def lerp(x, size):
        uncond, condl = x[:size], x[size:]
        return uncond + cfg_scale * (condl - uncond)

    guided = ScoreOutput(
        frac=lerp(out.frac, n), lattice=lerp(out.lattice, g), type_logits=lerp(out.type_logits, n)
    )
    if isinstance(raw, ScoreWithDiagnostics):
        return ScoreWithDiagnostics(guided, overflow, stats)
    return guided
