"""Host-side entry point of crystal generation: validate, pad, sample, return numpy arrays.

Checks every user input here (NaN / negative / wrong-length DOS, atom counts out of range, guidance
without a condition) so that the jitted sampler stays branch-free.

The sampler and trainer only know `score_fn(params, batch, t, cond, key)`. `denoiser_score_fn`
binds the network: its graph-overflow flag and statistics are returned as `ScoreWithDiagnostics`,
the sampler ORs / max-accumulates them over the trajectory, and `generate_with_model` re-runs the
whole batch with grown budgets if anything overflowed (never a silently truncated graph).

Devices. `generate(..., mesh=...)` cuts the batch into one sub-batch per device of the mesh
(`num_atoms.device_prior_batch`: whole crystals, contiguous in global order, the same atom budget
on every device), places the sub-batches on the `data` axis and the parameters on every device,
and runs the one jitted trajectory; each device reports its own overflow flag
(`Generated.device_overflow`). The crystals for a seed are the same on any device count (per-crystal
keys; the corrector's global means reduced across devices, `diffusion/sampler.py`).

The mesh may span processes (`sharding.make_mesh()` in a multi-host run): every process then
passes the same arguments, places only its own devices' sub-batches (`sharding.place`), and gets
the whole batch and every device's overflow flag back (`_to_host`), so all processes return the
same crystals and take the same re-run decision.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxdos import sharding
from jaxdos.crystal.batch import DosCondition
from jaxdos.crystal.denoiser import GemNetTDenoiser
from jaxdos.crystal.diffusion.guidance import (
    ClassifierFree,
    GradientGuidance,
    NoGuidance,
    network_guidance,
)
from jaxdos.crystal.diffusion.losses import ScoreFn, ScoreWithDiagnostics
from jaxdos.crystal.diffusion.num_atoms import (
    ALEX_MP_20,
    NumAtomsDistribution,
    check_num_atoms,
    device_prior_batch,
    device_split,
)
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig, init_state, make_sampler
from jaxdos.crystal.graph import GraphConfig, grow_budgets, retry_on_overflow
from jaxdos.kernels.grid import check_dos
from jaxdos.structures import CrystalBatch
from jaxdos.typing import PRNGKey, PyTree

__all__ = [
    "Generated",
    "check_condition_dos",
    "denoiser_score_fn",
    "generate",
    "generate_with_model",
]


class Generated(NamedTuple):
    """Sampled crystals (numpy) and how they were made.

    Fields:
        batch: the final padded `CrystalBatch` (numpy arrays; types are Z).
        dos: `[G, 256]` conditioning DOS, or None (unconditional).
        config: the sampler settings used.
        overflow: True if a network call overflowed a static budget (the batch is invalid).
        stats: max over the trajectory (and the devices) of the score function's diagnostics.
        device_overflow: `[D]` the overflow flag of each device's sub-batch.
        atoms_per_device: N_d, the atom slots of each device's sub-batch.
    """

    batch: CrystalBatch
    dos: np.ndarray | None
    config: CrystalSamplingConfig
    overflow: bool = False
    stats: object = None
    device_overflow: np.ndarray | None = None
    atoms_per_device: int = 0


def check_condition_dos(dos, num_graphs: int) -> np.ndarray:
    """Validate a conditioning DOS and broadcast it to `[G, 256]` float32.

    Raises:
        ValueError: naming `dos`, if not `[256]` or `[G, 256]`, not finite, or negative.
    """
    arr = check_dos(dos, "dos")
    if arr.ndim == 1:
        arr = np.broadcast_to(arr, (num_graphs, arr.shape[0]))
    if arr.ndim != 2 or arr.shape[0] != num_graphs:
        raise ValueError(f"dos: expected shape [256] or [{num_graphs}, 256], got {arr.shape}")
    if np.any(arr < 0):
        raise ValueError("dos: expected a DOS >= 0 (states / eV / atom), found negative values")
    return np.ascontiguousarray(arr, np.float32)


def generate(
    score_fn: ScoreFn,
    params: PyTree,
    *,
    key: PRNGKey,
    num_samples: int | None = None,
    num_atoms=None,
    dos=None,
    config: CrystalSamplingConfig | None = None,
    distribution: NumAtomsDistribution = ALEX_MP_20,
    max_atoms: int = 100,
    atom_budget: int | None = None,
    mesh=None,
    guide_params: PyTree = None,
    guide_targets: PyTree = None,
) -> Generated:
    """Sample crystals with the predictor-corrector sampler.

    Args:
        score_fn: `score_fn(params, batch, t, cond, key) -> ScoreOutput`.
        params: network parameters.
        key: PRNG key (also seeds the numpy draw of `num_atoms`).
        num_samples: G, when `num_atoms` is not given.
        num_atoms: `[G]` atoms per crystal; default drawn from `distribution`.
        dos: `[256]` or `[G, 256]` conditioning DOS (needs `ClassifierFree` guidance).
        config: sampler settings (default `CrystalSamplingConfig()`: 1000 steps, unconditional).
        distribution: the training distribution of `num_atoms`.
        max_atoms: largest allowed atoms per crystal.
        atom_budget: padded atom slots per device (default: a power-of-two bucket).
        guide_params: shared parameters of a `GradientGuidance` loss (e.g. a DOS predictor's).
        guide_targets: its per-crystal targets, leaves with a leading `[G]` axis.
        mesh: a `data` mesh (`sharding.local_mesh`, or `sharding.make_mesh()` spanning every
            process, each process then calling with the same arguments); None: one device.

    Raises:
        ValueError: on any invalid argument (named in the message).
    """
    config = CrystalSamplingConfig() if config is None else config
    k_num, k_init = jax.random.split(key)
    if num_atoms is None:
        if num_samples is None or num_samples < 1:
            raise ValueError(f"num_samples: expected >= 1 without num_atoms, got {num_samples}")
        seed = np.asarray(jax.random.key_data(k_num)).astype(np.uint32)
        num_atoms = distribution.sample(np.random.default_rng(seed), num_samples)
    n = check_num_atoms(num_atoms, max_atoms)
    cond = None
    requested = config
    guidance = config.guidance
    base = network_guidance(guidance)

    def with_base(new_base):
        if isinstance(guidance, GradientGuidance):
            return dataclasses.replace(guidance, base=new_base)
        return new_base

    if isinstance(base, NoGuidance):
        if dos is not None:
            raise ValueError(
                "dos: given with guidance=NoGuidance(), which would ignore it; use "
                "guidance=ClassifierFree(cfg_scale=...) (cfg_scale=0 is unconditional)"
            )
    elif isinstance(base, ClassifierFree):
        if dos is None:
            raise ValueError("dos: ClassifierFree guidance needs a conditioning DOS, got None")
        dos = check_condition_dos(dos, n.size)
        if base.cfg_scale == 0.0:
            # cfg_scale = 0 is exactly unconditional (MatterGen computes only that score): share the
            # unconditional compilation.
            config = dataclasses.replace(config, guidance=with_base(NoGuidance()))
        else:
            cond = DosCondition(dos=dos, use_cond=np.ones(n.size, bool))
    d = 1 if mesh is None else mesh.devices.size
    stacked = device_prior_batch(n, d, atom_budget)
    state = init_state(k_init, stacked, config)
    if cond is not None:
        cond = _stack_condition(cond, d)
    if guide_targets is not None:
        if any(np.shape(x)[0] != n.size for x in jax.tree.leaves(guide_targets)):
            raise ValueError(f"guide_targets: expected a leading axis of {n.size} crystals")
        guide_targets = jax.tree.map(lambda x: _stack_rows(np.asarray(x), d), guide_targets)
    if mesh is not None:
        state = state._replace(
            batch=sharding.place(state.batch, mesh, split=True),
            overflow=sharding.place(state.overflow, mesh, split=True),
            key=sharding.place(state.key, mesh, split=False),
            step=sharding.place(state.step, mesh, split=False),
        )
        params = sharding.place(params, mesh, split=False)
        cond = None if cond is None else sharding.place(cond, mesh, split=True)
        guide_params = sharding.place(guide_params, mesh, split=False)
        guide_targets = sharding.place(guide_targets, mesh, split=True)
    out = make_sampler(score_fn, config)(params, state, cond, guide_params, guide_targets)
    batch, flags, stats = _to_host((out.batch, out.overflow, out.stats))
    host = _merge(CrystalBatch(*batch))
    stats = None if stats is None else jax.tree.map(lambda x: x.max(0), stats)
    return Generated(
        host, dos, requested, bool(flags.any()), stats, flags, int(stacked.atomic_numbers.shape[1])
    )


def _to_host(tree):
    """Numpy copies of `tree`'s arrays, whole on every process.

    An array on a mesh spanning processes is gathered (`process_allgather`: each process reads
    every device's rows, one small jitted reshard), so every process sees every device's overflow
    flag and takes the same branch in `generate_with_model`'s re-run. Done on the host side rather
    than by a replicated `out_shardings` of the sampler, so the single-process path (and its
    compilation) is unchanged.
    """

    def get(x):
        if x.is_fully_addressable:
            return np.asarray(x)
        return multihost_utils.process_allgather(x, tiled=True)

    return jax.tree.map(get, tree)


def _stack_rows(x: np.ndarray, devices: int) -> np.ndarray:
    """`[G, ...]` -> `[D, G_d, ...]` in `device_prior_batch`'s order, padded with zeros."""
    g = x.shape[0]
    per = device_split(g, devices)
    x = np.concatenate([x, np.zeros((per * devices - g,) + x.shape[1:], x.dtype)])
    return x.reshape((devices, per) + x.shape[1:])


def _stack_condition(cond: DosCondition, devices: int) -> DosCondition:
    """The condition stacked like the crystals (padding graphs: unconditioned)."""
    return DosCondition(
        _stack_rows(np.asarray(cond.dos), devices),
        _stack_rows(np.asarray(cond.use_cond, bool), devices),
    )


def _merge(stacked: CrystalBatch) -> CrystalBatch:
    """`D` stacked sub-batches -> one flat batch, graphs in global order (D = 1: unchanged)."""
    d, g = stacked.lattice.shape[:2]
    if d == 1:
        return CrystalBatch(*(x[0] for x in stacked))
    offset = (np.arange(d, dtype=np.int32) * g)[:, None]
    flat = stacked._replace(batch=stacked.batch + offset)
    return CrystalBatch(*(x.reshape((-1,) + x.shape[2:]) for x in flat))


@functools.lru_cache(maxsize=64)
def denoiser_score_fn(model: GemNetTDenoiser) -> ScoreFn:
    """A hashable, cached score function for `model` (so jitted samplers are reused)."""

    def score_fn(params, batch, t, cond, key):
        del key  # the network is deterministic (dropout 0)
        out, diag = model.apply(params, batch, t, cond, mutable=["diagnostics"])
        d = diag["diagnostics"]
        return ScoreWithDiagnostics(out, d["graph_overflow"][0], d["graph_stats"][0])

    return score_fn


def generate_with_model(
    model: GemNetTDenoiser, params: PyTree, *, max_tries: int = 4, **kwargs
) -> tuple[Generated, GemNetTDenoiser]:
    """`generate` with the network; re-runs with grown graph budgets until nothing overflows.

    Args:
        model: the denoiser (its `config.graph` budgets are the starting point).
        params: its parameters.
        max_tries: budget increases before giving up.
        **kwargs: passed to `generate` (key, num_atoms, dos, config, ...).

    Returns:
        (the generated batch, the model actually used: reuse it to keep the grown budgets).

    Raises:
        RuntimeError: if the budgets still overflow after `max_tries` increases.
    """

    config = kwargs.pop("config", None) or CrystalSamplingConfig()

    def run(graph: GraphConfig):
        nonlocal config
        m = model
        if graph != model.config.graph:
            m = model.clone(config=dataclasses.replace(model.config, graph=graph))
        gen = generate(denoiser_score_fn(m), params, config=config, **kwargs)
        cfg = network_guidance(gen.config.guidance)
        # Classifier-free guidance runs the network on the batch twice (conditional + not).
        doubled = isinstance(cfg, ClassifierFree) and cfg.cfg_scale != 0.0
        # Budgets are per device: size them for one device's atom slots.
        nodes = gen.atoms_per_device * (2 if doubled else 1)
        if gen.overflow and grow_budgets(graph, gen.stats, nodes) == graph:
            # The network fitted its budgets, so the guide loss overflowed its own.
            config = dataclasses.replace(config, guidance=_grown_guide(config.guidance))
        return (gen, m), gen.overflow, gen.stats, nodes

    # A re-run is another trajectory, whose most degenerate cell differs: candidates saturate.
    grow = functools.partial(grow_budgets, saturate_candidates=True)
    result, _ = retry_on_overflow(run, model.config.graph, max_tries, grow)
    return result


def _grown_guide(guidance: GradientGuidance) -> GradientGuidance:
    """`guidance` with its loss's static budgets grown (`GuideLoss.grown`, guidance.py)."""
    grown = getattr(guidance.loss, "grown", None)
    if not isinstance(guidance, GradientGuidance) or grown is None:
        raise RuntimeError(f"guide loss {guidance!r} overflowed and has no grown() budgets")
    return dataclasses.replace(guidance, loss=grown())
