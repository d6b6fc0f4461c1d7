"""Bisecting a trained CDOSGen: its score field by field against the exact score of known crystals.

The exact score of a target batch (one known crystal per graph, same atom layout) is what the
training loss regresses on: coordinates sigma * grad log p_wrapped(x_t | x_0), the lattice
-(L_t - mean_t) / std_t of the VP marginal, types as a one-hot on the true class. Driving the
sampler with it regenerates the targets exactly, so any field whose network output, swapped in
alone, stops that is where a trained model fails (issue 12's overfit bisection). `hand_over`
splits by time instead (exact above t, network below), and `score_quality` measures each field's
error against the exact score along the forward process, t by t, and `invariant_floor` the part of
that error no network can remove (a translation- and permutation-invariant network regresses on
the exact score's posterior mean, which shrinks once noise makes sites ambiguous).
"""

import itertools
from collections.abc import Collection

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.crystal.batch import MASK_Z, ScoreOutput
from jaxdos.crystal.diffusion import lattice, wrapped_normal
from jaxdos.crystal.diffusion.corruption import DiffusionConfig, corrupt, types_to_classes
from jaxdos.crystal.diffusion.losses import ScoreFn, ScoreWithDiagnostics, split_diagnostics
from jaxdos.crystal.diffusion.num_atoms import prior_batch
from jaxdos.structures import CrystalBatch, pack
from jaxdos.typing import Array

__all__ = [
    "FIELDS",
    "targets_from_records",
    "exact_score",
    "swap_fields",
    "hand_over",
    "regenerated",
    "score_quality",
    "invariant_floor",
]

FIELDS = ("pos", "cell", "types")
_DEFAULT = DiffusionConfig()
_TYPE_LOGIT = 20.0  # one-hot logits: softmax puts all but ~1e-8 of the mass on the true class


def targets_from_records(records) -> CrystalBatch:
    """`jaxdos.data.records.Records` packed in the sampler's `prior_batch` layout (same atom
    slots), lattices polar-symmetrised as in training."""
    layout = prior_batch(np.asarray(records.num_atoms))
    batch = pack(records.crystals, num_nodes=layout.num_nodes, num_graphs=layout.num_graphs)
    lat = np.asarray(lattice.polar_symmetrize(jnp.asarray(batch.lattice)), np.float32)
    return batch._replace(lattice=lat)


def exact_score(
    target: CrystalBatch, batch: CrystalBatch, t, config: DiffusionConfig = _DEFAULT
) -> ScoreOutput:
    """The "score x std" of q(x_t | x_0 = target) at `batch` (same layout as `target`)."""
    n_atom = batch.num_atoms[batch.batch]
    sig = wrapped_normal.sigma(t[batch.batch], n_atom, config.pos)[:, None]
    d = batch.frac_coords - target.frac_coords
    frac = sig * wrapped_normal.wrapped_normal_score(d, sig, config.pos.num_images)
    mean, std = lattice.marginal(target.lattice, t, batch.num_atoms, config.cell)
    cell = -(batch.lattice - mean) / std[:, None, None]
    logits = _TYPE_LOGIT * jax.nn.one_hot(jnp.maximum(target.atomic_numbers - 1, 0), 101)
    nm = batch.node_mask[:, None]
    return ScoreOutput(
        frac=jnp.where(nm, frac, 0.0),
        lattice=jnp.where(batch.graph_mask[:, None, None], cell, 0.0),
        type_logits=jnp.where(nm, logits, 0.0),
    )


def _mixed(score_fn: ScoreFn, target: CrystalBatch, config: DiffusionConfig, network_at) -> ScoreFn:
    """`score_fn` with each field taken from the network where `network_at(t)[field]` (`[G]`
    bool) holds and from `exact_score(target, ...)` elsewhere; diagnostics pass through."""

    def fn(params, batch, t, cond, key):
        net, overflow, stats = split_diagnostics(score_fn(params, batch, t, cond, key))
        ref = exact_score(target, batch, t, config)
        use = network_at(t)

        def per_atom(field):
            return use[field][batch.batch][:, None]

        mixed = ScoreOutput(
            frac=jnp.where(per_atom("pos"), net.frac, ref.frac),
            lattice=jnp.where(use["cell"][:, None, None], net.lattice, ref.lattice),
            type_logits=jnp.where(per_atom("types"), net.type_logits, ref.type_logits),
        )
        return ScoreWithDiagnostics(mixed, overflow, stats) if stats is not None else mixed

    return fn


def swap_fields(
    score_fn: ScoreFn,
    target: CrystalBatch,
    exact: Collection[str],
    config: DiffusionConfig = _DEFAULT,
) -> ScoreFn:
    """`score_fn` with the fields named in `exact` ("pos", "cell", "types") taken from
    `exact_score(target, ...)`; the network's diagnostics (graph overflow) pass through."""
    unknown = set(exact) - set(FIELDS)
    if unknown:
        raise ValueError(f"exact: unknown fields {sorted(unknown)}, expected a subset of {FIELDS}")
    return _mixed(
        score_fn, target, config, lambda t: {f: jnp.full(t.shape, f not in exact) for f in FIELDS}
    )


def hand_over(
    score_fn: ScoreFn, target: CrystalBatch, t_switch: float, config: DiffusionConfig = _DEFAULT
) -> ScoreFn:
    """The exact score of `target` for t > `t_switch`, the network's (every field) below: the
    sampler reaches t_switch on the targets' own forward marginal, then the network alone must
    finish. The largest t_switch that still regenerates says where a trained model loses them."""
    return _mixed(score_fn, target, config, lambda t: dict.fromkeys(FIELDS, t <= t_switch))


def regenerated(generated: CrystalBatch, targets: CrystalBatch) -> tuple[int, int]:
    """(samples matching their own target, samples matching any target): exact pymatgen
    `StructureMatcher.fit` at its default tolerances. "Own" is meaningful only when exact fields
    tie each sample to its target; with network types only "any" is a fair count."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from jaxdos.structures import to_structures, unpack

    sm = StructureMatcher()
    gen, ref = (to_structures(unpack(b, max_atoms=None)) for b in (generated, targets))
    own = sum(sm.fit(a, b) for a, b in zip(gen, ref, strict=True))
    return int(own), int(sum(any(sm.fit(a, b) for b in ref) for a in gen))


def _sq(x: Array, mask: Array) -> Array:
    return jnp.sum(jnp.where(mask, x**2, 0.0))


def _relative_error(pred: Array, target: Array, mask: Array) -> Array:
    return _sq(pred - target, mask) / _sq(target, mask)


def _without_common_mode(x: Array, batch: CrystalBatch) -> Array:
    """Per-crystal mean displacement removed: a translation-invariant network cannot predict it."""
    nm = batch.node_mask[:, None]
    total = jax.ops.segment_sum(jnp.where(nm, x, 0.0), batch.batch, batch.num_graphs)
    return x - (total / jnp.maximum(batch.num_atoms, 1)[:, None])[batch.batch]


def score_quality(
    score_fn: ScoreFn,
    params,
    target: CrystalBatch,
    times,
    key,
    config: DiffusionConfig = _DEFAULT,
    draws: int = 4,
) -> dict[str, np.ndarray]:
    """How well the network's score matches the exact score of `target` under the forward process.

    For each t (every crystal at that t, `draws` noise draws), on the real slots:
    `pos_rel` = |pred - target|^2 / |target|^2 of the coordinate score with each crystal's common
    mode removed (what an invariant network can predict; 0 = exact, 1 = predicting zero),
    `pos_gain` = |pred|^2 / |target|^2, `cell_rel` the same relative error of the lattice score,
    `type_acc` the arg-max accuracy on masked atoms (NaN where no draw masked any).

    Returns:
        {name: `[len(times)]` float array}, plus "t".
    """
    nm, gm = target.node_mask[:, None], target.graph_mask[:, None, None]
    num_images = config.pos.num_images

    @jax.jit
    def one(key, t):
        tt = jnp.full(target.num_graphs, t)
        c = corrupt(key, target, tt, config)
        out, _, _ = split_diagnostics(score_fn(params, c.batch, tt, None, key))
        sig = c.pos_sigma[:, None]
        d = c.batch.frac_coords - target.frac_coords
        pos = _without_common_mode(
            sig * wrapped_normal.wrapped_normal_score(d, sig, num_images), c.batch
        )
        pred = _without_common_mode(out.frac, c.batch)
        cell = -(c.batch.lattice - c.cell_mean) / c.cell_std[:, None, None]
        masked = (c.batch.atomic_numbers == MASK_Z) & target.node_mask
        right = jnp.argmax(out.type_logits, -1) == types_to_classes(target.atomic_numbers)
        acc = jnp.sum(masked & right) / jnp.maximum(jnp.sum(masked), 1)
        return jnp.stack([
            _relative_error(pred, pos, nm),
            _sq(pred, nm) / _sq(pos, nm),
            _relative_error(out.lattice, cell, gm),
            jnp.where(masked.any(), acc, jnp.nan),
        ])  # fmt: skip

    keys = [jax.random.split(jax.random.fold_in(key, i), draws) for i in range(len(times))]
    per_draw = np.asarray([[np.asarray(one(k, float(t))) for k in ks]
                         for ks, t in zip(keys, times, strict=True)])  # fmt: skip
    seen = np.sum(~np.isnan(per_draw), axis=1)  # NaN type accuracy: no masked atom in that draw
    rows = np.where(seen > 0, np.nansum(per_draw, axis=1) / np.maximum(seen, 1), np.nan)
    names = ("pos_rel", "pos_gain", "cell_rel", "type_acc")
    return {"t": np.asarray(times, float), **{n: rows[:, j] for j, n in enumerate(names)}}


def _wrapped_log_and_grad(d: np.ndarray, s: float, images: int):
    """Per-dimension wrapped normal: log density summed over the last axis, and its gradient, in
    float64 numpy (`wrapped_normal`'s JAX versions run in float32, too coarse for the posterior
    weights over thousands of components that `invariant_floor` compares)."""
    dd = d[..., None] + np.arange(-images, images + 1)  # [..., 3, I]
    lw = -(dd**2) / (2 * s * s)
    top = lw.max(-1, keepdims=True)
    w = np.exp(lw - top)
    logp = (top[..., 0] + np.log(w.sum(-1))).sum(-1)
    return logp, (w * (-dd / (s * s))).sum(-1) / w.sum(-1)


def invariant_floor(
    frac: np.ndarray,
    numbers: np.ndarray,
    times,
    rng: np.random.Generator,
    config: DiffusionConfig = _DEFAULT,
    draws: int = 32,
    grid: int = 16,
) -> np.ndarray:
    """`[len(times)]` the lowest `pos_rel` (score_quality) an invariant network can reach on one
    crystal it has memorised: the relative error of the Bayes-optimal prediction of the exact
    coordinate score (its posterior mean over every translation, on a `grid`^3 grid, and every
    permutation of same-element atoms, the types known) against that score, common mode removed.

    With several training crystals the optimum also mixes over crystals, so this per-crystal
    value is a lower bound there. `frac` `[n, 3]`, `numbers` `[n]`; permutations are enumerated,
    so keep n small (<= 8 atoms, a few elements).
    """
    x0 = np.asarray(frac, np.float64)
    z = np.asarray(numbers)
    n = len(z)
    perms = [list(p) for p in itertools.permutations(range(n)) if np.all(z[list(p)] == z)]
    axis = np.arange(grid) / grid
    shifts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 1, 3)
    images = config.pos.num_images

    def posterior_mean(xt: np.ndarray, s: float) -> np.ndarray:
        top, weight, acc = -np.inf, 0.0, np.zeros_like(xt)  # running log-sum-exp over perms
        for p in perms:
            centres = (x0[p][None] + shifts) % 1.0  # [grid^3, n, 3]
            logp, grad = _wrapped_log_and_grad((xt[None] - centres + 0.5) % 1.0 - 0.5, s, images)
            lp = logp.sum(-1)
            new_top = max(top, lp.max())
            w = np.exp(lp - new_top)
            decay = np.exp(top - new_top)
            weight = weight * decay + w.sum()
            acc = acc * decay + np.einsum("c,cnd->nd", w, grad)
            top = new_top
        return s * acc / weight

    out = []
    for t in times:
        s = float(wrapped_normal.sigma(jnp.float32(t), jnp.int32(n), config.pos))
        err = ref = 0.0
        for _ in range(draws):
            xt = (x0 + s * rng.standard_normal(x0.shape)) % 1.0
            target = s * _wrapped_log_and_grad((xt - x0 + 0.5) % 1.0 - 0.5, s, images)[1]
            best = posterior_mean(xt, s)
            target, best = target - target.mean(0), best - best.mean(0)
            err += np.sum((best - target) ** 2)
            ref += np.sum(target**2)
        out.append(err / ref)
    return np.asarray(out)
