"""Crystal sampler throughput: jaxdos (one jitted scan) vs the `mattergen` package, same weights.

    python -m experiments.bench_crystal_vs_mattergen --quick     # 4 steps, G=4 (< 1 min idle CPU)
    python -m experiments.bench_crystal_vs_mattergen --steps 50 --batch 16 64

Both sides run the full predictor-corrector sampler on the same network: a seeded random
MatterGen `GemNetTDenoiser` (the parity suite's TINY GemNet-T, unconditional) whose state_dict is
converted to flax by `jaxdos.crystal.convert.convert_checkpoint`. mattergen side: mattergen's own
`DiffusionModule.score_fn`, `MultiCorruption` (prior sampling) and predictor / corrector objects
as its released `default` sampling config builds them — `WrappedLangevinCorrector` (pos, snr 0.4)
and `LatticeLangevinDiffCorrector` (cell, snr 0.2), one corrector step, `WrappedAncestralSampling`,
`LatticeAncestralSampling` and `D3PMAncestralSampling(predict_x0=True)` predictors, N steps from
t=1 to 1e-3 — driven by a copy of the loop of `PredictorCorrector._sample_maybe_record` (mattergen
1.0.3, record=False, no inpainting mask), eager PyTorch under `torch.no_grad()`. The loop is copied
because `mattergen.diffusion.sampling.pc_sampler` imports pytorch_lightning and hydra (through its
Lightning-module type hint), which the parity extra does not install; the copy is the same calls
in the same order (prior, then per step: score, correctors, score, predictors), minus the tqdm bar.
Both samplers run the whole trajectory on their own geometry: no reset of positions or cells.
With random weights the network's lattice score is nearly zero, so the Langevin corrector's step
size 2 a (snr |eps| / |score|)^2 is huge and one corrector step inflates the cells from ~15 to
1e4-1e5 A^3 per atom (measured at G=4): the crystals lose every edge, whatever the cutoff (7, 12 and
20 A all fail within 4 steps), and mattergen's GemNet fails on empty index tensors. MatterGen's
own clip of that step size, `max_step_size` (1e6 in its released config), is therefore a flag
(`--max-step-size`, applied identically to both samplers; with 1e-2 three 20-step G=4 mattergen
trajectories ran to the end, though cells still drifted to 3-3e5 A^3 per atom, while the 4-step
`--quick` trajectory, with its larger time steps, still loses its edges), as is
the cutoff (`--cutoff`, 7 A as MatterGen); a mattergen crash is reported (its error) instead of a
figure.
jaxdos side:
`jaxdos.crystal.generate.generate_with_model` with `CrystalSamplingConfig(steps=N)`: the whole
trajectory as one jitted `lax.scan`. Same num_atoms per crystal (drawn from ALEX_MP_20), same batch
G, same steps, no guidance on either side (mattergen has no DOS conditioning; a CFG comparison
would need the same conditional network on both sides, and the unconditional network is the one the
converter is tested on), float32 with matmul precision "highest" on both. The first jaxdos call
(compile) is timed separately and excluded; mattergen gets one warm-up call too.

Also reported: padding waste of the jaxdos batch (1 - real atoms / padded atom slots) and the number
of compiled sampler shapes for this run. Skips with a message if torch or mattergen are missing
(install with scripts/install_parity.sh). mattergen's graph builder runs on the stand-in
torch_scatter / torch_sparse of tests/parity/standins when the compiled packages are absent — the
same environment the parity suite runs in; its speed is mattergen's as installed here.
"""

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

from experiments import benchio

__all__ = ["main"]

PARITY = Path(__file__).resolve().parent.parent / "tests" / "parity"


def _missing() -> str | None:
    for mod in ("torch", "mattergen", "torch_geometric"):
        if importlib.util.find_spec(mod) is None:
            return mod
    return None


def _mattergen_sampler(denoiser, steps: int, max_step_size: float = 1e6):
    """mattergen's PredictorCorrector with its released default partials (module docstring)."""
    import torch
    from mattergen.common.diffusion.corruption import (
        LatticeVPSDE,
        NumAtomsVarianceAdjustedWrappedVESDE,
    )
    from mattergen.common.diffusion.predictors_correctors import (
        LatticeAncestralSamplingPredictor,
        LatticeLangevinDiffCorrector,
    )
    from mattergen.common.loss import MaterialsLoss
    from mattergen.diffusion.corruption.d3pm_corruption import D3PMCorruption
    from mattergen.diffusion.corruption.multi_corruption import MultiCorruption, apply
    from mattergen.diffusion.d3pm.d3pm import MaskDiffusion, create_discrete_diffusion_schedule
    from mattergen.diffusion.d3pm.d3pm_predictors_correctors import (
        D3PMAncestralSamplingPredictor,
    )
    from mattergen.diffusion.diffusion_module import DiffusionModule
    from mattergen.diffusion.wrapped.wrapped_predictors_correctors import (
        WrappedAncestralSamplingPredictor,
        WrappedLangevinCorrector,
    )

    corruption = MultiCorruption(
        sdes={
            "cell": LatticeVPSDE.from_vpsde_config(
                {
                    "beta_max": 20,
                    "beta_min": 0.1,
                    "limit_density": 0.05771451654022283,
                    "limit_var_scaling_constant": 0.25,
                }
            ),
            "pos": NumAtomsVarianceAdjustedWrappedVESDE(
                limit_info_key="num_atoms", sigma_max=5.0, wrapping_boundary=1.0
            ),
        },
        discrete_corruptions={
            "atomic_numbers": D3PMCorruption(
                d3pm=MaskDiffusion(
                    dim=101,
                    schedule=create_discrete_diffusion_schedule(kind="standard", num_steps=steps),
                ),
                offset=1,
            )
        },
    )
    module = DiffusionModule(model=denoiser, corruption=corruption, loss_fn=MaterialsLoss())
    predictors = {
        "pos": WrappedAncestralSamplingPredictor(
            corruption=corruption.corruptions["pos"], score_fn=None
        ),
        "cell": LatticeAncestralSamplingPredictor(
            corruption=corruption.corruptions["cell"], score_fn=None
        ),
        "atomic_numbers": D3PMAncestralSamplingPredictor(
            corruption=corruption.corruptions["atomic_numbers"], score_fn=None, predict_x0=True
        ),
    }
    correctors = {
        "pos": WrappedLangevinCorrector(
            corruption=corruption.corruptions["pos"],
            score_fn=None,
            n_steps=1,
            snr=0.4,
            max_step_size=max_step_size,
        ),
        "cell": LatticeLangevinDiffCorrector(
            corruption=corruption.corruptions["cell"],
            score_fn=None,
            n_steps=1,
            snr=0.2,
            max_step_size=max_step_size,
        ),
    }
    eps_t, max_t = 1e-3, corruption.T

    def sample(cond):
        """`PredictorCorrector._sample_maybe_record(record=False)` of mattergen 1.0.3, no mask."""
        batch = cond.replace(
            **{
                k: c.prior_sampling(
                    shape=cond[k].shape, conditioning_data=cond, batch_idx=cond.get_batch_idx(k)
                )
                for k, c in corruption.corruptions.items()
            }
        )
        mean_batch = batch.clone()
        timesteps = torch.linspace(max_t, eps_t, steps)
        dt = -torch.tensor((max_t - eps_t) / (steps - 1))
        batch_idx = corruption._get_batch_indices(batch)
        for i in range(steps):
            t = torch.full((batch.get_batch_size(),), timesteps[i])
            score = module.score_fn(batch, t)
            out = apply(
                fns={k: c.step_given_score for k, c in correctors.items()},
                broadcast={"t": t, "dt": dt},
                x=batch,
                score=score,
                batch_idx=batch_idx,
            )
            batch = batch.replace(**{k: v[0] for k, v in out.items()})
            mean_batch = mean_batch.replace(**{k: v[1] for k, v in out.items()})
            score = module.score_fn(batch, t)
            out = apply(
                fns={k: p.update_given_score for k, p in predictors.items()},
                x=batch,
                score=score,
                broadcast={"t": t, "batch": batch, "dt": dt},
                batch_idx=batch_idx,
            )
            batch = batch.replace(**{k: v[0] for k, v in out.items()})
            mean_batch = mean_batch.replace(**{k: v[1] for k, v in out.items()})
        return batch, mean_batch

    return sample


def bench(
    g: int, steps: int, repeats: int, seed: int = 0, cutoff: float = 7.0, max_step_size=1e6
) -> dict:
    import jax
    import mattergen.common.gemnet.gemnet as mg_gemnet
    import numpy as np
    import torch
    from mg_reference import TINY, build_denoiser, chem_batch, config_dict, random_crystals
    from parity_helpers import GEMNET_DT_SCALES

    from jaxdos.crystal.convert import Checkpoint, convert_checkpoint
    from jaxdos.crystal.denoiser import GemNetTDenoiser
    from jaxdos.crystal.diffusion.guidance import NoGuidance
    from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20, atom_bucket
    from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig, make_sampler
    from jaxdos.crystal.generate import denoiser_score_fn, generate_with_model

    num_atoms = ALEX_MP_20.sample(np.random.default_rng(seed), g).astype(int)
    with tempfile.TemporaryDirectory() as root:
        # The 1.0.3 wheel lacks gemnet-dT.json; write it where mattergen looks (as the parity
        # suite's `gemnet_scale_file` fixture does).
        path = Path(root) / "common" / "gemnet" / "gemnet-dT.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(GEMNET_DT_SCALES))
        old_root, mg_gemnet.MODELS_PROJECT_ROOT = mg_gemnet.MODELS_PROJECT_ROOT, root
        try:
            denoiser = build_denoiser(TINY, seed, cutoff=cutoff)
        finally:
            mg_gemnet.MODELS_PROJECT_ROOT = old_root
    tensors = {k: v.numpy() for k, v in denoiser.state_dict().items()}
    params, gcfg, _, _ = convert_checkpoint(
        config_dict(TINY, cutoff=cutoff), Checkpoint(tensors, {}, None, "memory")
    )

    # mattergen: conditioning data only fixes shapes (num_atoms); the prior overwrites the rest.
    cells, fracs = random_crystals(np.random.default_rng(seed), list(num_atoms))
    cond = chem_batch(cells, fracs, list(num_atoms), np.ones(len(fracs), int))
    sampler = _mattergen_sampler(denoiser, steps, max_step_size)
    torch.set_float32_matmul_precision("highest")

    def mg_run(r):
        torch.manual_seed(r)
        with torch.no_grad():
            return sampler(cond)

    mg_times, mg_error = [], None
    try:
        mg_run(0)  # warm-up
        for r in range(repeats):
            t0 = time.perf_counter()
            mg_run(r + 1)
            mg_times.append(time.perf_counter() - t0)
    except (RuntimeError, IndexError, ValueError) as e:  # an edgeless cell (module docstring)
        mg_error = f"{type(e).__name__}: {str(e)[:200]}"

    model = GemNetTDenoiser(gcfg)
    config = CrystalSamplingConfig(steps=steps, guidance=NoGuidance(), max_step_size=max_step_size)

    def jx_run(model, r):
        with jax.default_matmul_precision("highest"):
            gen, model = generate_with_model(
                model, params, key=jax.random.key(r), num_atoms=num_atoms, config=config
            )
        return gen, model

    t0 = time.perf_counter()
    gen, model = jx_run(model, 0)
    first_s = time.perf_counter() - t0
    jx_times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        gen, model = jx_run(model, r + 1)
        jx_times.append(time.perf_counter() - t0)
    compiled = make_sampler(denoiser_score_fn(model), config)._cache_size()
    jx_s = float(np.median(jx_times))
    mg_s = float(np.median(mg_times)) if mg_times else None
    real = int(num_atoms.sum())
    return {
        "network": "TINY GemNet-T (parity suite), unconditional, random seeded weights, no reset",
        "cutoff": cutoff,
        "max_step_size": max_step_size,
        "batch": g,
        "steps": steps,
        "corrector_steps": 1,
        "guidance": "none",
        "precision": "float32, matmul precision highest",
        "atoms": real,
        "jax_atom_slots": int(gen.atoms_per_device),
        "jax_padding_waste": 1 - real / int(gen.atoms_per_device),
        "jax_bucket": int(atom_bucket(real)),
        "jax_compiled_shapes": int(compiled),
        "jax_first_call_s": first_s,
        "jax_s": jx_s,
        "mattergen_s": mg_s,
        "mattergen_error": mg_error,
        "jax_structures_per_s": g / jx_s,
        "mattergen_structures_per_s": None if mg_s is None else g / mg_s,
        "ratio_jax_over_mattergen": None if mg_s is None else mg_s / jx_s,
        "torch_threads": torch.get_num_threads(),
        "device": benchio.device_kind(),
    }


def main(argv=None):
    p = benchio.parser(
        __doc__, quick="4 steps, G=4, one repeat", out="results/bench_crystal_vs_mattergen.json"
    )
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cutoff", type=float, default=7.0, help="radius graph cutoff, A (> 0)")
    p.add_argument(
        "--max-step-size", type=float, default=1e-2, help="corrector step clip, both sides (> 0)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.repeats = [4], 4, 1
    if args.steps < 2 or min(args.batch) < 1:
        raise ValueError(f"--steps >= 2 and --batch >= 1 expected, got {args.steps}, {args.batch}")
    if not args.cutoff > 0:
        raise ValueError(f"--cutoff: expected > 0 (Angstrom), got {args.cutoff}")
    if not args.max_step_size > 0:
        raise ValueError(f"--max-step-size: expected > 0, got {args.max_step_size}")
    missing = _missing()
    if missing:
        msg = f"skipped: {missing} not importable (install it with scripts/install_parity.sh)"
        benchio.summary(f"crystal vs mattergen: {msg}")
        benchio.write_json(args.out, {"skipped": msg})
        return None
    sys.path.insert(0, str(PARITY))  # mg_reference / parity_helpers (+ torch_scatter stand-ins)
    import parity_helpers  # noqa: F401  (before mattergen: stand-ins on sys.path, numpy.math)

    rows = []
    for g in args.batch:
        r = bench(g, args.steps, args.repeats, cutoff=args.cutoff, max_step_size=args.max_step_size)
        rows.append(r)
        if r["mattergen_error"]:
            versus = f"mattergen failed ({r['mattergen_error']})"
        else:
            versus = (
                f"mattergen {r['mattergen_structures_per_s']:.3f} struct/s = "
                f"{r['ratio_jax_over_mattergen']:.2f}x"
            )
        benchio.summary(
            f"crystal PC sampler TINY G={g} N={args.steps} K=1 no-CFG fp32 cutoff "
            f"{args.cutoff:g} A, max step {args.max_step_size:g}, no reset: jaxdos "
            f"{r['jax_structures_per_s']:.3f} struct/s vs "
            f"{versus}; padding waste {100 * r['jax_padding_waste']:.0f}% ({r['atoms']} atoms in "
            f"{r['jax_atom_slots']} slots), {r['jax_compiled_shapes']} compiled shape(s), "
            f"first call {r['jax_first_call_s']:.1f}s"
        )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
