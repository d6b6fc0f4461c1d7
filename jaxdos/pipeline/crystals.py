"""Stage 2 of the pipeline: crystals from DOS with CDOSGen (or unconditionally).

Work is cut into fixed-size batches of min(`batch_size`, crystals) (the last one padded with
repeats and trimmed): the jitted sampler compiles once per batch size, and a small call is not
padded up to a large batch. Batch b is seeded by `fold_in(key(seed), b)`: the same seed gives the
same crystals however the work is resumed.

Devices: every batch is split over the devices of this process (`devices`, default all local
ones), or with `across_processes=True` over every device of every process of a multi-host run (one
call made by all processes with the same arguments, each returning all the crystals), whole
crystals per device, each device with the same static budgets: atom slots sized once
for the fullest device of any batch, graph budgets sized from the run's atom counts and the cutoff
(`graph.presize_budgets`), so the whole call compiles once. A batch that overflows a budget on any
device is re-run alone with grown budgets (one more compile per grown bucket); later batches go back
to the presized budgets, since larger budgets change the network output in the last ulp (reduction
order) and a batch's crystals must not depend on which batches ran before it.

Predictor guidance (`guide_predictor`, `guide_strength`; `jaxdos.pipeline.guided`): a learned DOS
predictor's gradient pulls each crystal's denoised estimate towards a target, on top of
classifier-free guidance (or of unconditional sampling). The target is each conditioned crystal's
own DOS, or, given `guide_windows` / `guide_tcm`, property windows (band gap, DOS(E_F), N(E_F))
and the TCM criteria, which need no conditioning DOS; the targets travel per crystal, split over
the devices with them.
"""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxdos import sharding
from jaxdos.crystal.checkpoint import KIND, CDOSGenModel
from jaxdos.crystal.diffusion.guidance import ClassifierFree, NoGuidance
from jaxdos.crystal.diffusion.num_atoms import device_atom_budget
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig
from jaxdos.crystal.generate import check_condition_dos, generate_with_model
from jaxdos.crystal.graph import presize_budgets
from jaxdos.pipeline.guided import (
    check_tcm,
    check_windows,
    predictor_guidance,
    predictor_property_guidance,
    presized_guidance,
)
from jaxdos.pipeline.models import as_model
from jaxdos.predictor.checkpoint import KIND as DOS_PREDICTOR
from jaxdos.structures import Crystals, unpack

__all__ = [
    "generate_crystals",
    "DEFAULT_STEPS",
    "DEFAULT_CORRECTOR_STEPS",
    "DEFAULT_TYPE_TEMPERATURE",
]

DEFAULT_STEPS = 100  # CPU default of the pipeline; MatterGen's is 1000 (`--steps 1000`)
DEFAULT_CORRECTOR_STEPS = 1  # MatterGen's
# Sharper atom types than MatterGen's T = 1: on the embedded CDOSGen, 300 unconditional crystals
# are 65 % metals at 0.3 against 80 % at 1, and the TCM lift rises (docs/results.md).
DEFAULT_TYPE_TEMPERATURE = 0.3


def generate_crystals(
    dos=None,
    *,
    num_samples: int | None = None,
    crystals_per_dos: int = 1,
    cfg_scale: float = 2.0,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    batch_size: int = 32,
    corrector_steps: int = DEFAULT_CORRECTOR_STEPS,
    model: CDOSGenModel | str | Path | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    devices=None,
    guide_predictor=None,
    guide_strength: float = 1.0,
    guide_windows: dict | None = None,
    guide_tcm: int | None = None,
    across_processes: bool = False,
    type_temperature: float = DEFAULT_TYPE_TEMPERATURE,
) -> tuple[Crystals, np.ndarray]:
    """Generate crystals conditioned on each DOS, or unconditionally.

    Args:
        dos: `[M, 256]` per-atom DOS, or None for unconditional generation.
        num_samples: crystals to generate when `dos` is None.
        crystals_per_dos: crystals per conditioning DOS (>= 1).
        cfg_scale: classifier-free guidance strength (paper/MatterGen 2.0; 0 = unconditional).
        steps: predictor-corrector steps (>= 2).
        seed: run seed.
        batch_size: crystals per jitted sampler call (at most the number of crystals).
        corrector_steps: Langevin corrector iterations per step (MatterGen: 1; 0 = predictor only,
            half the network calls).
        model: a `CDOSGenModel` or a "cdosgen" model directory; default the embedded model.
        on_batch: called as `on_batch(done, total)` after each batch (progress).
        devices: None (every device of this process), an int n (the first n local devices) or a
            list of local `jax.Device`; the same seed gives the same crystals on any count.
            With `across_processes` only None in a multi-process run.
        guide_predictor: None, or a "dos_predictor" model (directory) whose DOS of each
            crystal's denoised estimate is pulled towards the crystal's conditioning DOS
            (`GradientGuidance`; needs `dos`), or into `guide_windows` when those are given.
        guide_strength: that guidance's strength s (>= 0).
        guide_windows: None, or {"band_gap" | "dos_at_fermi" | "integrated_dos": (lo, hi)}
            (eV, states/eV/atom, states/atom): the predictor's properties of every crystal are
            pulled into these windows (`predictor_property_guidance`) instead of towards its
            conditioning DOS; works with `dos` (on top of classifier-free guidance) or without
            (on unconditional sampling). Needs `guide_predictor`.
        guide_tcm: None, or 1 / 2: the predictor's DOS of every crystal is also pulled towards
            the paper's TCM Type 1 / 2 criteria (`filters.tcm_surrogate`); like `guide_windows`,
            with or without `dos`, and it combines with them. Needs `guide_predictor`.
        across_processes: False: this process's devices alone (a screen's chunk, each process
            its own). True: every device of every process (`sharding.training_mesh`); every
            process must make the same call, and each returns all the crystals, equal to a
            single-process run with the same seed. The same as False in a single-process run.
        type_temperature: T > 0: each unmasked atom's type is drawn from the network's type
            distribution sharpened to softmax(logits / T) (`CrystalSamplingConfig`); 1 is
            MatterGen's sampler, T < 1 gives fewer stray elements per crystal (default 0.3).

    Returns:
        (`Crystals` padded to 20 atoms, `[M']` index of the conditioning DOS of each crystal, -1
        for unconditional ones).

    Raises:
        ValueError: naming the argument, before any compute (`devices` for a subset with
            `across_processes` in a multi-process run).
    """
    if crystals_per_dos < 1:
        raise ValueError(f"crystals_per_dos: expected >= 1, got {crystals_per_dos}")
    if steps < 2:
        raise ValueError(f"steps: expected >= 2, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if not np.isfinite(cfg_scale) or cfg_scale < 0:
        raise ValueError(f"cfg_scale: expected a finite value >= 0, got {cfg_scale}")
    windows = check_windows(guide_windows, "guide_windows")
    property_guided = bool(windows) or check_tcm("guide_tcm", guide_tcm) is not None
    if property_guided and guide_predictor is None:
        field = "guide_windows" if windows else "guide_tcm"
        raise ValueError(f"{field}: needs guide_predictor (the predictor that measures them)")
    if dos is None:
        if num_samples is None or num_samples < 1:
            raise ValueError(
                f"num_samples: expected >= 1 for unconditional runs, got {num_samples}"
            )
        source = np.full(num_samples, -1)
        cond = None
    else:
        cond = check_condition_dos(dos, np.shape(dos)[0])
        source = np.repeat(np.arange(cond.shape[0]), crystals_per_dos)
        cond = cond[source]
    guidance = NoGuidance() if cond is None else ClassifierFree(cfg_scale=float(cfg_scale))
    guide_params = guide_targets = None
    if property_guided:
        predictor = as_model(guide_predictor, DOS_PREDICTOR)
        guidance, guide_params, guide_targets = predictor_property_guidance(
            predictor,
            windows,
            source.size,
            strength=float(guide_strength),
            tcm=guide_tcm,
            base=guidance,
        )
    elif guide_predictor is not None:
        if cond is None:
            raise ValueError(
                "guide_predictor: needs conditioning DOS (its targets), guide_windows or "
                "guide_tcm, got dos=None"
            )
        predictor = as_model(guide_predictor, DOS_PREDICTOR)
        guidance, guide_params, guide_targets = predictor_guidance(
            predictor, cond, strength=float(guide_strength), base=guidance
        )
    # Checks corrector_steps (and the rest of the sampler settings) before the model loads.
    # The default allowed_elements (MatterGen's 76) lie inside ALLOWED_Z, which the oracle scores.
    config = CrystalSamplingConfig(
        steps=steps,
        guidance=guidance,
        corrector_steps=corrector_steps,
        type_temperature=float(type_temperature),
    )
    mesh = sharding.training_mesh(devices) if across_processes else sharding.local_mesh(devices)
    model = as_model(model, KIND)
    # The model's own forward processes (a converted MatterGen model brings its own).
    config = dataclasses.replace(config, diffusion=model.diffusion)
    total = source.size
    batch_size = min(batch_size, total)
    rng = np.random.default_rng(seed)
    num_atoms = model.num_atoms.sample(rng, total)
    key = jax.random.key(seed)
    d = mesh.devices.size
    starts = range(0, total, batch_size)
    rows_of = [np.arange(start, start + batch_size) % total for start in starts]  # last: repeats
    atom_budget = max(device_atom_budget(num_atoms[rows], d) for rows in rows_of)
    base = model.denoiser
    graph = presize_budgets(base.config.graph, num_atoms, model.diffusion.cell.limit_density)
    if graph != base.config.graph:
        base = base.clone(config=dataclasses.replace(base.config, graph=graph))
    guidance = presized_guidance(config.guidance, num_atoms, model.diffusion.cell.limit_density)
    config = dataclasses.replace(config, guidance=guidance)
    parts = []
    for b, (start, rows) in enumerate(zip(starts, rows_of, strict=True)):
        kwargs = {"dos": cond[rows]} if cond is not None else {}
        if guide_params is not None:
            kwargs.update(guide_params=guide_params, guide_targets=guide_targets[rows])
        gen, _ = generate_with_model(
            base,
            model.params,
            key=jax.random.fold_in(key, b),
            num_atoms=num_atoms[rows],
            config=config,
            atom_budget=atom_budget,
            mesh=mesh,
            **kwargs,
        )
        parts.append(unpack(gen.batch).take(slice(0, min(batch_size, total - start))))
        if on_batch is not None:
            on_batch(min(start + batch_size, total), total)
    return Crystals(*(np.concatenate(f) for f in zip(*parts, strict=True))), source
