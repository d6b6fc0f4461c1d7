"""Predictor-corrector reverse sampler (MatterGen's `GuidedPredictorCorrector`).

See docs/spec/mattergen.md §5.

Per step i with t = t_i (t_i = linspace(1, eps_t, S)) and s = t_{i+1} (s = 0 at the last step):
1. Langevin corrector on pos (snr 0.4) and cell (snr 0.2, polar-symmetrised after), step size
   2 alpha (snr |eps| / |score|)^2 with batch-mean norms (MatterGen's rule; padding excluded).
2. Ancestral predictors: wrapped VE for pos, VP for the cell, absorbing D3PM for types (discrete
   level k = S - 1 - i, i.e. floor(t_i (S - 1)), the D3PM schedule having T = S levels).
Two guided network evaluations per step. The whole trajectory is ONE jitted `lax.scan` over a
donated `SamplerState`; step keys are `fold_in(state.key, step)`. The returned types are the argmax
of the last posterior (MatterGen's `mean_batch`); pos and cell equal the sample (zero noise at s=0).

Devices. The state holds `D` independent sub-batches (leading axis of every batch leaf, one per
device of the `data` mesh axis, each with its own static atom / graph / edge budgets); the step is
vmapped over them with the axis name `sharding.DATA_AXIS`, so with the leading axis sharded the
jitted scan runs each sub-batch on its device. Every random draw is per crystal:
`fold_in(fold_in(key, global crystal index), atom index within the crystal)`, so a crystal's noise
does not depend on how the batch is cut. The corrector's batch-mean norms stay MatterGen's
batch-global rule (docs/spec/mattergen.md §5.2): per-device sums and counts are `psum`-ed over the
device axis (a cross-device all-reduce), so D devices reproduce the one-device batch to float
tolerance (the sum order differs).
"""

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.crystal.batch import NUM_TYPE_CLASSES, DosCondition
from jaxdos.crystal.diffusion import d3pm, lattice, wrapped_normal
from jaxdos.crystal.diffusion.corruption import DiffusionConfig
from jaxdos.crystal.diffusion.guidance import (
    GradientGuidance,
    Guidance,
    NoGuidance,
    apply_gradient_guidance,
    denoised_estimate,
    guided_score,
)
from jaxdos.crystal.diffusion.losses import ScoreFn, split_diagnostics
from jaxdos.sharding import DATA_AXIS
from jaxdos.structures import ALLOWED_Z, MAX_Z, CrystalBatch, is_allowed
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = [
    "SELECTED_ATOMIC_NUMBERS",
    "CrystalSamplingConfig",
    "SamplerState",
    "element_logit_bias",
    "crystal_keys",
    "init_state",
    "make_sampler",
]

# MatterGen's sampling-time whitelist: the element policy ALLOWED_Z without the noble gases
# He Ne Ar Kr Xe (76 elements). Applied only when sampling, never in training
# (docs/spec/mattergen.md §8 item 6).
SELECTED_ATOMIC_NUMBERS = tuple(z for z in ALLOWED_Z if z not in (2, 10, 18, 36, 54))


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrystalSamplingConfig:
    """Predictor-corrector settings (MatterGen defaults).

    Attributes:
        steps: S, predictor-corrector steps (1000; also the D3PM levels used at sampling).
        eps_t: the last time t_{S-1}.
        snr_pos: Langevin signal-to-noise ratio for fractional coordinates.
        snr_cell: Langevin signal-to-noise ratio for the lattice.
        max_step_size: clip of the Langevin step size.
        corrector_steps: corrector iterations per step (0 disables the corrector).
        guidance: `NoGuidance()`, `ClassifierFree(cfg_scale=...)` or `GradientGuidance(...)`
            (its parameters and per-crystal targets go to the sampler's `guide_params` and
            `guide_targets`).
        allowed_elements: Z values the type logits may produce (others and the mask get -1e10).
        type_temperature: T > 0, the predicted type distribution sharpened to softmax(logits / T)
            before the D3PM posterior draws an unmasked atom's type (1: MatterGen's sampler).
        diffusion: the forward processes (only pos and cell settings are used here).
    """

    steps: int = 1000
    eps_t: float = 1e-3
    snr_pos: float = 0.4
    snr_cell: float = 0.2
    max_step_size: float = 1e6
    corrector_steps: int = 1
    guidance: Guidance = NoGuidance()
    allowed_elements: tuple[int, ...] = SELECTED_ATOMIC_NUMBERS
    type_temperature: float = 1.0
    diffusion: DiffusionConfig = DiffusionConfig()

    def __post_init__(self):
        if not 2 <= self.steps <= 100_000:
            raise ValueError(f"steps: expected 2..100000, got {self.steps}")
        if not 0 < self.eps_t < 1:
            raise ValueError(f"eps_t: expected in (0, 1), got {self.eps_t}")
        if not (self.snr_pos > 0 and self.snr_cell > 0 and self.max_step_size > 0):
            raise ValueError("snr_pos, snr_cell, max_step_size: expected > 0")
        if not 0 <= self.corrector_steps <= 10:
            raise ValueError(f"corrector_steps: expected 0..10, got {self.corrector_steps}")
        if not self.allowed_elements or any(not 1 <= z <= MAX_Z for z in self.allowed_elements):
            raise ValueError(f"allowed_elements: expected a non-empty tuple of Z in 1..{MAX_Z}")
        if not (math.isfinite(self.type_temperature) and self.type_temperature > 0):
            raise ValueError(
                f"type_temperature: expected a finite value > 0, got {self.type_temperature}"
            )
        if not isinstance(self.guidance, Guidance):
            raise ValueError(
                "guidance: expected NoGuidance, ClassifierFree or GradientGuidance, got "
                f"{self.guidance}"
            )


class SamplerState(NamedTuple):
    """Loop state of the reverse process.

    In `make_sampler`'s state `batch`, `overflow` and `stats` carry a leading device axis `[D]`
    (one sub-batch per device); `_step` sees one sub-batch.

    Fields:
        batch: current noisy crystals (types as Z; 101 = mask).
        key: the trajectory's PRNG key (never split in the loop; steps use fold_in).
        step: int32 scalar, the next step index.
        overflow: bool scalar, True once any network call overflowed a static budget (the
            trajectory is then invalid and must be re-run with larger budgets).
        stats: elementwise max over the trajectory of the score function's diagnostics (or None).
    """

    batch: CrystalBatch
    key: PRNGKey
    step: Array
    overflow: Array
    stats: PyTree = None


def element_logit_bias(allowed_elements: tuple[int, ...]) -> Array:
    """`[NUM_TYPE_CLASSES]`: 0 for allowed classes (Z - 1), -1e10 for the rest and the mask."""
    class_z = np.arange(1, NUM_TYPE_CLASSES + 1)  # class k <-> Z = k + 1; the mask is MAX_Z + 1
    return jnp.asarray(np.where(is_allowed(class_z, allowed_elements), 0.0, -1e10), jnp.float32)


def crystal_keys(key: PRNGKey, batch: CrystalBatch, offset=0) -> tuple[Array, Array]:
    """Per-atom `[N]` and per-crystal `[G]` keys, independent of how the batch is laid out.

    Crystal slot g has global index `offset + g`; its key is `fold_in(key, offset + g)` and atom a
    of it gets `fold_in(that, a)`. Padding slots get keys too (their draws are masked out).
    """
    gid = offset + jnp.arange(batch.num_graphs, dtype=jnp.int32)
    graph_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, gid)
    seg = jnp.clip(batch.batch, 0, batch.num_graphs - 1)
    atom_keys = jax.vmap(jax.random.fold_in)(graph_keys[seg], batch.atom_index())
    return atom_keys, graph_keys


def _atom_normal(atom_keys: Array) -> Array:
    return jax.vmap(lambda k: jax.random.normal(k, (3,)))(atom_keys)


def _cell_noise(graph_keys: Array) -> Array:
    return jax.vmap(lambda k: lattice.symmetric_noise(k, (3, 3)))(graph_keys)


def _init_one(key: PRNGKey, batch: CrystalBatch, config: CrystalSamplingConfig, offset):
    atom_keys, graph_keys = crystal_keys(key, batch, offset)
    n_atom = batch.num_atoms[batch.batch]
    sig = wrapped_normal.sigma(jnp.float32(1.0), n_atom, config.diffusion.pos)
    pos = jnp.mod(sig[:, None] * _atom_normal(atom_keys), 1.0)
    cfg = config.diffusion.cell
    cell = lattice.limit_mean(batch.num_atoms, cfg) + jnp.sqrt(
        lattice.limit_var(batch.num_atoms, cfg)
    )[:, None, None] * _cell_noise(graph_keys)
    return batch._replace(
        frac_coords=jnp.where(batch.node_mask[:, None], pos, 0.0).astype(jnp.float32),
        lattice=jnp.where(batch.graph_mask[:, None, None], cell, jnp.eye(3)).astype(jnp.float32),
        atomic_numbers=jnp.where(batch.node_mask, NUM_TYPE_CLASSES, 0).astype(jnp.int32),
    )


def init_state(key: PRNGKey, batch: CrystalBatch, config: CrystalSamplingConfig) -> SamplerState:
    """Draw the priors (wrapped pos, VP cell, all types masked) into padded sub-batches.

    Args:
        key: the trajectory key.
        batch: `D` sub-batches stacked on a leading axis (`num_atoms.device_prior_batch`); device d
            holds the crystals with global index d * G_d + g.
        config: sampler settings (the forward processes' priors).

    Returns:
        A `SamplerState` with `[D]` leading axes on batch / overflow; the prior of a crystal
        depends only on `key` and its global index.
    """
    k_prior, k_draw = jax.random.split(key)
    batch = CrystalBatch(*map(jnp.asarray, batch))
    d, g = batch.lattice.shape[0], batch.lattice.shape[1]
    offsets = jnp.arange(d, dtype=jnp.int32) * g
    batch = jax.vmap(_init_one, (None, 0, None, 0))(k_draw, batch, config, offsets)
    return SamplerState(batch, k_prior, jnp.int32(0), jnp.zeros((d,), bool))


def _mean(values: Array, graph_mask: Array, axis_name) -> Array:
    """Mean over real crystals of `values [G]`, over every device when `axis_name` is set."""
    num = jnp.sum(jnp.where(graph_mask, values, 0.0))
    den = jnp.sum(graph_mask.astype(jnp.float32))
    if axis_name is not None:
        num, den = jax.lax.psum((num, den), axis_name)
    return num / jnp.maximum(den, 1.0)


def _batch_mean_norm(v: Array, seg: Array, node_mask: Array, graph_mask: Array, axis_name):
    """Mean over real crystals of the per-crystal L2 norm of per-atom vectors `v [N, 3]`."""
    g = graph_mask.shape[0]
    sq = jax.ops.segment_sum(jnp.sum(v**2, -1) * node_mask, seg, num_segments=g)
    return _mean(jnp.sqrt(sq), graph_mask, axis_name)


def _graph_mean_norm(v: Array, graph_mask: Array, axis_name) -> Array:
    return _mean(jnp.sqrt(jnp.sum(v**2, (-1, -2))), graph_mask, axis_name)


def _step(
    score_fn,
    config,
    bias,
    params,
    cond,
    state: SamplerState,
    axis_name=None,
    guide_params=None,
    guide_targets=None,
) -> SamplerState:
    """One predictor-corrector step of one sub-batch (under `vmap(axis_name=...)` for several);
    `guide_targets` are the sub-batch's rows of the per-crystal guidance targets."""
    b = state.batch
    s_total = config.steps
    i = state.step
    dcfg = config.diffusion
    t_grid = jnp.linspace(1.0, config.eps_t, s_total)
    t = t_grid[i]
    s = jnp.where(i >= s_total - 1, 0.0, t_grid[jnp.minimum(i + 1, s_total - 1)])
    g = b.num_graphs
    tg = jnp.full((g,), t)
    key = jax.random.fold_in(state.key, i)
    k_net_c, k_net_p, k_corr, k_pred = jax.random.split(key, 4)
    offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * g
    seg = jnp.where(b.node_mask, b.batch, 0)
    nm, gm = b.node_mask.astype(jnp.float32), b.graph_mask
    n_atom = b.num_atoms[b.batch]
    sig_t = wrapped_normal.sigma(t, n_atom, dcfg.pos)  # [N]
    sig_s = jnp.where(s > 0, wrapped_normal.sigma(s, n_atom, dcfg.pos), 0.0)
    _, std_t = lattice.marginal(b.lattice, tg, b.num_atoms, dcfg.cell)  # [G]
    mu = lattice.limit_mean(b.num_atoms, dcfg.cell)

    diag = [state.overflow, state.stats]

    def scores(batch, k):
        raw = guided_score(score_fn, params, batch, tg, cond, k, config.guidance)
        out, overflow, stats = split_diagnostics(raw)
        diag[0] = diag[0] | overflow
        if stats is not None:
            diag[1] = jax.tree.map(jnp.maximum, diag[1], stats)
        sp, sc, logits = (
            out.frac / sig_t[:, None],
            out.lattice / std_t[:, None, None],
            out.type_logits,
        )
        guide = config.guidance
        if isinstance(guide, GradientGuidance) and guide.strength > 0:
            a_t = lattice.alpha(t, dcfg.cell)

            def guided(scores3):
                probs = jax.nn.softmax(scores3[2] + bias, axis=-1)
                est = denoised_estimate(batch, scores3[0], scores3[1], probs, sig_t, a_t, std_t, mu)
                return apply_gradient_guidance(
                    guide, guide_params, guide_targets, est, *scores3, a_t
                )

            def plain(scores3):
                return (*scores3, jnp.bool_(False))

            sp, sc, logits, guide_overflow = jax.lax.cond(
                t <= guide.t_max, guided, plain, (sp, sc, logits)
            )
            diag[0] = diag[0] | guide_overflow
        return sp, sc, logits

    # 1. Langevin corrector (pos: alpha = 1; cell: alpha = abar(t) / abar(s), abar = alpha^2).
    a_corr = (lattice.alpha(t, dcfg.cell) / lattice.alpha(s, dcfg.cell)) ** 2
    for c in range(config.corrector_steps):
        kc_pos, kc_cell = jax.random.split(jax.random.fold_in(k_corr, c))
        sp, sc, _ = scores(b, jax.random.fold_in(k_net_c, c))
        e_pos = _atom_normal(crystal_keys(kc_pos, b, offset)[0])
        gn = _batch_mean_norm(sp, seg, nm, gm, axis_name)
        nn = _batch_mean_norm(e_pos, seg, nm, gm, axis_name)
        step_pos = jnp.minimum(2.0 * (config.snr_pos * nn / gn) ** 2, config.max_step_size)
        pos = jnp.mod(b.frac_coords + step_pos * sp + jnp.sqrt(2 * step_pos) * e_pos, 1.0)
        e_cell = _cell_noise(crystal_keys(kc_cell, b, offset)[1])
        gc = _graph_mean_norm(sc, gm, axis_name)
        nc = _graph_mean_norm(e_cell, gm, axis_name)
        step_cell = jnp.minimum(
            2.0 * a_corr * (config.snr_cell * nc / gc) ** 2, config.max_step_size
        )
        cell = lattice.polar_symmetrize(
            b.lattice + step_cell * sc + jnp.sqrt(2 * step_cell) * e_cell
        )
        b = b._replace(
            frac_coords=jnp.where(b.node_mask[:, None], pos, b.frac_coords),
            lattice=jnp.where(gm[:, None, None], cell, b.lattice),
        )

    # 2. Ancestral predictors.
    kp_pos, kp_cell, kp_types = jax.random.split(k_pred, 3)
    sp, sc, logits = scores(b, k_net_p)
    dvar = sig_t**2 - sig_s**2
    noise_pos = jnp.sqrt(dvar) * sig_s / sig_t
    pos = b.frac_coords + dvar[:, None] * sp
    e_pos = _atom_normal(crystal_keys(kp_pos, b, offset)[0])
    pos = jnp.mod(pos + noise_pos[:, None] * e_pos, 1.0)

    alpha_t = lattice.alpha(t, dcfg.cell)
    alpha_s = lattice.alpha(s, dcfg.cell)
    a = jnp.maximum(alpha_t / alpha_s, 1e-3)
    v = lattice.limit_var(b.num_atoms, dcfg.cell)
    std_s = jnp.sqrt(lattice.noise_fraction(s, dcfg.cell) * v)
    var_ts = jnp.maximum(std_t**2 - std_s**2 * a**2, 0.0)
    mean_cell = b.lattice / a + (var_ts / a)[:, None, None] * sc + (1 - 1 / a) * mu
    noise_cell = jnp.sqrt(var_ts) * std_s / std_t
    cell = mean_cell + noise_cell[:, None, None] * _cell_noise(crystal_keys(kp_cell, b, offset)[1])

    k_disc = jnp.full((b.num_nodes,), s_total - 1 - i, jnp.int32)
    probs = jax.nn.softmax((logits + bias) / config.type_temperature, axis=-1)
    x_cur = jnp.maximum(b.atomic_numbers - 1, 0)
    post = d3pm.posterior_logits(probs, x_cur, k_disc, s_total)
    type_keys = crystal_keys(kp_types, b, offset)[0]
    drawn = jax.vmap(lambda k, lg: jax.random.categorical(k, lg))(type_keys, post)
    is_mask = x_cur == d3pm.MASK_CLASS
    sampled = jnp.where(is_mask, drawn, x_cur)
    mean_types = jnp.where(is_mask, jnp.argmax(post, axis=-1), x_cur)
    types = jnp.where(i >= s_total - 1, mean_types, sampled) + 1

    b = b._replace(
        frac_coords=jnp.where(b.node_mask[:, None], pos, b.frac_coords),
        lattice=jnp.where(gm[:, None, None], cell, b.lattice),
        atomic_numbers=jnp.where(b.node_mask, types, 0).astype(jnp.int32),
    )
    return SamplerState(b, state.key, i + 1, diag[0], diag[1])


# vmap axes of the loop state: sub-batch leaves on axis 0, the key and the step shared.
_STATE_AXES = SamplerState(batch=0, key=None, step=None, overflow=0, stats=0)


@functools.lru_cache(maxsize=32)
def make_sampler(score_fn: ScoreFn, config: CrystalSamplingConfig):
    """The jitted full trajectory `run(params, state, cond, guide_params=None,
    guide_targets=None) -> state` (state donated).

    `state` comes fresh from `init_state` (`D` stacked sub-batches); `cond` is None or a
    `DosCondition` stacked the same way, and so are `guide_targets` (per-crystal targets of a
    `GradientGuidance` loss, `[D, G_d, ...]`); `guide_params` (the loss's parameters) are shared.
    Runs all `steps` steps as one `lax.scan`, each step vmapped
    over the sub-batches with axis name `DATA_AXIS` (the corrector's global means are `psum`s over
    it); with the stacked leaves sharded over the `data` mesh axis and `params` replicated, each
    device runs its sub-batch. Cached per (score_fn, config) so repeated calls reuse the
    compilation (one compile per padded shape).
    """
    bias = element_logit_bias(config.allowed_elements)

    def run(
        params: PyTree,
        state: SamplerState,
        cond: DosCondition | None,
        guide_params: PyTree = None,
        guide_targets: PyTree = None,
    ) -> SamplerState:
        # The diagnostics' structure is only known from the score function: start from zeros.
        def probe_one(batch, c):
            t = jnp.zeros(batch.num_graphs)
            return guided_score(score_fn, params, batch, t, c, state.key, config.guidance)

        probe = jax.eval_shape(jax.vmap(probe_one), state.batch, cond)
        _, _, stats = split_diagnostics(probe)
        if stats is not None and state.stats is None:
            state = state._replace(stats=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stats))

        def one(st, c, gt):
            return _step(score_fn, config, bias, params, c, st, DATA_AXIS, guide_params, gt)

        step = jax.vmap(one, (_STATE_AXES, 0, 0), _STATE_AXES, axis_name=DATA_AXIS)

        def body(st, _):
            return step(st, cond, guide_targets), None

        state, _ = jax.lax.scan(body, state, None, length=config.steps)
        return state

    return jax.jit(run, donate_argnums=1)
