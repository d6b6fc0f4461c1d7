"""Guidance variants for the crystal sampler, as types (docs/spec/mattergen.md §5.3).

`ClassifierFree(cfg_scale=w)` evaluates the unconditional and the conditional score in ONE network
call on a batch of 2G stacked crystals (MatterGen HEAD's batching) and returns lerp(uncond, cond, w)
= uncond + w (cond - uncond) on every field, the D3PM logits included (logits of
p(x)^(1-w) p(x|y)^w). w = 1 is conditional only; w = 0 is unconditional and, as in MatterGen, then
only the unconditional score is computed. (`cfg_scale`, not `gamma`: stage 1's `gamma` is the
classifier-guidance strength of the paper's eq. (1)/(8), a different knob.)

`GradientGuidance(loss=..., strength=s, base=...)` adds classifier-style guidance by any
differentiable per-crystal loss of the denoised estimate (e.g. a learned crystal -> DOS predictor
against a target DOS or property window): at each network evaluation the Tweedie estimate of the
clean crystal (types as probabilities, i.e. relaxed types) is formed from the `base`-guided scores,
and s w(t) grad(loss) is subtracted from each field's score (`apply_gradient_guidance`). The
gradient is taken with respect to the estimate, not through the score network (dx0/dx_t ~ I for
positions, 1/alpha for the cell: the usual one-network-call approximation), and weighted by
w(t) = alpha_cell(t)^2, which vanishes at high noise where the estimate is meaningless.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdos.crystal.batch import DosCondition, ScoreOutput
from jaxdos.crystal.diffusion.losses import ScoreFn, ScoreWithDiagnostics, split_diagnostics
from jaxdos.guidance import NoGuidance  # shared with stage 1: one meaning, one type
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = [
    "NoGuidance",
    "ClassifierFree",
    "DenoisedEstimate",
    "GradientGuidance",
    "Guidance",
    "apply_gradient_guidance",
    "denoised_estimate",
    "stack_for_cfg",
    "guided_score",
    "network_guidance",
]


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


class DenoisedEstimate(NamedTuple):
    """The sampler's estimate of the clean crystals at one evaluation (what a guide loss sees).

    Fields:
        type_probs: `[N, C]` probabilities over the C = 101 type classes (class k = Z - 1; the
            mask class has probability 0 once the element mask is applied).
        frac: `[N, 3]` fractional coordinates (not wrapped into [0, 1)).
        lattice: `[G, 3, 3]` lattice rows in Angstrom.
        batch: the noisy batch (masks, `batch` segments, `num_atoms`).
    """

    type_probs: Array
    frac: Array
    lattice: Array
    batch: CrystalBatch


# (guide_params, guide_targets, estimate) -> ([G] loss per crystal, finite on padding graphs;
# [] bool overflow: True when a static budget of the loss, e.g. a predictor's neighbour list, was
# exceeded; the sampler ORs it into its overflow flag, so a trajectory is never silently wrong).
# A loss with static budgets also has `grown() -> GuideLoss`, the same loss with larger budgets:
# `generate_with_model` calls it when the batch overflowed but the network's own graph fitted.
GuideLoss = Callable[[PyTree, PyTree, DenoisedEstimate], tuple[Array, Array]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradientGuidance:
    """Guidance by the gradient of a differentiable per-crystal loss, on top of `base`.

    Attributes:
        loss: a hashable `GuideLoss` (a module-level function or a frozen dataclass): it is a
            static argument of the jitted sampler; its shared parameters (`guide_params`) and
            per-crystal targets (`guide_targets`, leading axis G, split over devices like the
            crystals) are passed separately.
        strength: s >= 0; s = 0 gives the `base` sampler's crystals bit for bit.
        base: the network guidance underneath (`NoGuidance()` or `ClassifierFree(...)`).
        t_max: no guidance at t > t_max (the loss is not even evaluated there): near t = 1 the
            cell estimate divides by alpha ~ 0.007 and is no crystal a predictor can read.
    """

    loss: GuideLoss
    strength: float
    base: NoGuidance | ClassifierFree = NoGuidance()
    t_max: float = 0.5

    def __post_init__(self):
        if not callable(self.loss):
            raise ValueError(f"loss: expected a callable, got {self.loss!r}")
        if not (isinstance(self.strength, int | float) and 0 <= self.strength < float("inf")):
            raise ValueError(f"strength: expected a finite float >= 0, got {self.strength!r}")
        if not isinstance(self.base, NoGuidance | ClassifierFree):
            raise ValueError(f"base: expected NoGuidance or ClassifierFree, got {self.base!r}")
        if not 0 < self.t_max <= 1:
            raise ValueError(f"t_max: expected in (0, 1], got {self.t_max!r}")


Guidance = NoGuidance | ClassifierFree | GradientGuidance


def network_guidance(guidance: Guidance) -> NoGuidance | ClassifierFree:
    """The guidance of the network calls: a `GradientGuidance`'s `base`, else `guidance`."""
    return guidance.base if isinstance(guidance, GradientGuidance) else guidance


def denoised_estimate(
    batch: CrystalBatch,
    pos_score: Array,
    cell_score: Array,
    type_probs: Array,
    sig_t: Array,
    alpha_t: Array,
    std_t: Array,
    mu: Array,
) -> DenoisedEstimate:
    """Tweedie estimates E[x0 | x_t] of the coordinates (VE: x + sigma^2 score) and the cell
    (VP: (L - (1 - alpha) mu + std^2 score) / alpha); `sig_t [N]`, `alpha_t` scalar, `std_t [G]`,
    `mu [G, 3, 3]`, scores in true-score units (network output / std)."""
    frac = batch.frac_coords + sig_t[:, None] ** 2 * pos_score
    lat = (batch.lattice - (1 - alpha_t) * mu + std_t[:, None, None] ** 2 * cell_score) / alpha_t
    return DenoisedEstimate(type_probs, frac, lat, batch)


def apply_gradient_guidance(
    guidance: GradientGuidance,
    guide_params: PyTree,
    guide_targets: PyTree,
    estimate: DenoisedEstimate,
    pos_score: Array,
    cell_score: Array,
    logits: Array,
    alpha_t: Array,
) -> tuple[Array, Array, Array, Array]:
    """The three scores with s w(t) grad(loss) subtracted (module docstring), w = alpha_t^2,
    and the loss's overflow flag.

    Each crystal's loss depends only on its own atoms, so summing the losses of the real crystals
    gives every crystal its own gradient.
    """
    gm = estimate.batch.graph_mask

    def total(type_probs, frac, lat):
        est = estimate._replace(type_probs=type_probs, frac=frac, lattice=lat)
        loss, overflow = guidance.loss(guide_params, guide_targets, est)
        return jnp.sum(jnp.where(gm, loss, 0.0)), overflow

    (g_types, g_frac, g_lat), overflow = jax.grad(total, argnums=(0, 1, 2), has_aux=True)(
        estimate.type_probs, estimate.frac, estimate.lattice
    )
    w = guidance.strength * alpha_t**2
    nm = estimate.batch.node_mask[:, None]
    return (
        pos_score - w * jnp.where(nm, g_frac, 0.0),
        cell_score - (w / alpha_t) * jnp.where(gm[:, None, None], g_lat, 0.0),
        logits - w * jnp.where(nm, g_types, 0.0),
        jnp.asarray(overflow, bool),
    )


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
    For `GradientGuidance` this is its `base` guidance; the sampler then applies the gradient.
    """
    guidance = network_guidance(guidance)
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
