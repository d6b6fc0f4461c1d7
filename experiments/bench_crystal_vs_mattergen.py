"""Crystal sampler throughput: jaxdos (one jitted scan) vs the `mattergen` package, same weights.

    python -m experiments.bench_crystal_vs_mattergen --quick     # 4 steps, 2 crystals, 1 round
    python -m experiments.bench_crystal_vs_mattergen --steps 100 --batch 8 32 --rounds 3
    python -m experiments.bench_crystal_vs_mattergen --weights random --steps 20 --batch 4

The network (`--weights`):
* `default`: the embedded trained CDOSGen (`jaxdos/assets/crystal_tiny`) exported to a MatterGen
  state_dict by `jaxdos.crystal.convert.export_state_dict(..., unconditional=True)`. It is a DOS
  model and MatterGen has no module for the DOS adapter (paper eq. 2), so its base network is
  exported and the benchmark is unconditional; the torch `GemNetTDenoiser` is built from the
  exported config and loads the exported weights, and jaxdos runs the export read back by the
  converter (bit-identical to the trained params; tests/parity/test_export_parity.py checks the
  two scores agree to 1e-4). Its cutoff (7 A) and max_neighbors (20) and its atom-count
  distribution are the model's.
* `random`: a seeded random MatterGen TINY GemNet-T (the parity suite's), converted to flax;
  atom counts from ALEX_MP_20, `--cutoff` applies. With random weights the lattice score is near
  zero, the Langevin corrector's step 2 a (snr |eps| / |score|)^2 is huge and the cells blow up
  (1e4-1e5 A^3 per atom within 4 steps) until mattergen's GemNet fails on edgeless crystals;
  hence its default `--max-step-size` 1e-2 (MatterGen's own clip), and a mattergen crash is
  reported (its error) instead of a figure. Not a comparison to cite; kept as a smoke of the
  unconverted path.

Both samplers run the whole trajectory of `--steps` predictor-corrector steps on their own
geometry (no reset of positions or cells), the same crystal count G per batch and the same atom
counts, one corrector step, no guidance, float32 with matmul precision "highest" on both sides,
the corrector clip `--max-step-size` identical on both (default 1e6, MatterGen's released value,
with trained weights).
mattergen side: mattergen's own `DiffusionModule.score_fn`, `MultiCorruption` (prior sampling,
built from the network's DiffusionConfig) and predictor / corrector objects as its released
`default` sampling config builds them — `WrappedLangevinCorrector` (pos, snr 0.4) and
`LatticeLangevinDiffCorrector` (cell, snr 0.2), `WrappedAncestralSampling`,
`LatticeAncestralSampling` and `D3PMAncestralSampling(predict_x0=True)` predictors, N steps from
t=1 to 1e-3 — driven by a copy of the loop of `PredictorCorrector._sample_maybe_record` (mattergen
1.0.3, record=False, no inpainting mask), eager PyTorch under `torch.no_grad()`. The loop is copied
because `mattergen.diffusion.sampling.pc_sampler` imports pytorch_lightning and hydra (through its
Lightning-module type hint), which the parity extra does not install; the copy is the same calls
in the same order (prior, then per step: score, correctors, score, predictors), minus the tqdm bar.
jaxdos side: `jaxdos.crystal.generate.generate_with_model` with `CrystalSamplingConfig(steps=N)`:
the whole trajectory as one jitted `lax.scan`. The first jaxdos call (compile) is timed apart and
excluded.
Timing: `experiments.benchio.alternate` (each side warmed up once, then `--rounds` rounds with the
sides alternating; median, min, max and spread per side, each round a fresh seed); the JSON
(`benchio.write_json`) carries the machine record (load before / after: a busy machine's row is
marked not citable).

Also reported: padding waste of the jaxdos batch (1 - real atoms / padded atom slots) and the number
of compiled sampler shapes for this run. Skips with a message if torch or mattergen are missing
(install with scripts/install_parity.sh). mattergen's graph builder runs on the stand-in
torch_scatter / torch_sparse of tests/parity/standins when the compiled packages are absent — the
same environment the parity suite runs in; its speed is mattergen's as installed here.
"""

import dataclasses
import tempfile
import time

from experiments import benchio
from experiments.reference.mattergen_twin import missing_parity as _missing
from experiments.reference.mattergen_twin import use_parity_helpers

__all__ = ["main"]


def _mattergen_sampler(denoiser, steps: int, diffusion, max_step_size: float = 1e6):
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

    # The corruption of the network's own DiffusionConfig (MatterGen's released values for both
    # weight choices; the D3PM levels follow the sampling steps, as jaxdos's sampler does).
    corruption = MultiCorruption(
        sdes={
            "cell": LatticeVPSDE.from_vpsde_config(dataclasses.asdict(diffusion.cell)),
            "pos": NumAtomsVarianceAdjustedWrappedVESDE(
                limit_info_key="num_atoms",
                sigma_min=diffusion.pos.sigma_min,
                sigma_max=diffusion.pos.sigma_max,
                wrapping_boundary=1.0,
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


def _networks(weights: str, seed: int, cutoff: float):
    """The same network on both sides (module docstring): (torch denoiser, jaxdos params,
    GemNetConfig, DiffusionConfig, atom-count distribution, label)."""
    from mg_reference import (
        TINY,
        build_denoiser,
        config_dict,
        denoiser_from_export,
        mattergen_scales,
    )

    from jaxdos.crystal.checkpoint import load_default
    from jaxdos.crystal.convert import (
        Checkpoint,
        convert_checkpoint,
        export_state_dict,
        on_mattergen_clock,
    )
    from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20

    with tempfile.TemporaryDirectory() as root, mattergen_scales(root):
        if weights == "default":
            trained = on_mattergen_clock(load_default())  # both sides on MatterGen's clock
            config, tensors = export_state_dict(trained, unconditional=True)
            denoiser = denoiser_from_export(config, tensors)
            label = "embedded trained CDOSGen (crystal_tiny), DOS adapter dropped, exported"
        else:
            denoiser = build_denoiser(TINY, seed, cutoff=cutoff)
            config = config_dict(TINY, cutoff=cutoff)
            tensors = {k: v.numpy() for k, v in denoiser.state_dict().items()}
            label = "TINY GemNet-T (parity suite), seeded random weights"
    params, gcfg, diffusion, _ = convert_checkpoint(config, Checkpoint(tensors, {}, None, "memory"))
    if weights == "default":
        # The exported network read back; the graph budgets (no MatterGen field) stay the model's.
        gcfg = dataclasses.replace(gcfg, graph=trained.gemnet.graph)
        return denoiser, params, gcfg, diffusion, trained.num_atoms, label
    return denoiser, params, gcfg, diffusion, ALEX_MP_20, label


def bench(
    g: int,
    steps: int,
    rounds: int,
    seed: int = 0,
    cutoff: float = 7.0,
    max_step_size=1e6,
    weights: str = "default",
) -> dict:
    import jax
    import numpy as np
    import torch
    from mg_reference import chem_batch, random_crystals

    from jaxdos.crystal.denoiser import GemNetTDenoiser
    from jaxdos.crystal.diffusion.guidance import NoGuidance
    from jaxdos.crystal.diffusion.num_atoms import atom_bucket
    from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig, make_sampler
    from jaxdos.crystal.generate import denoiser_score_fn, generate_with_model

    denoiser, params, gcfg, diffusion, atoms_dist, label = _networks(weights, seed, cutoff)
    num_atoms = atoms_dist.sample(np.random.default_rng(seed), g).astype(int)
    # mattergen: conditioning data only fixes shapes (num_atoms); the prior overwrites the rest.
    cells, fracs = random_crystals(np.random.default_rng(seed), list(num_atoms))
    cond = chem_batch(cells, fracs, list(num_atoms), np.ones(len(fracs), int))
    sampler = _mattergen_sampler(denoiser, steps, diffusion, max_step_size)
    torch.set_float32_matmul_precision("highest")
    mg_seed, jx_seed = iter(range(1, 10**6)), iter(range(1, 10**6))

    def mg_run():
        torch.manual_seed(next(mg_seed))
        with torch.no_grad():
            return sampler(cond)

    state = {"model": GemNetTDenoiser(gcfg)}
    config = CrystalSamplingConfig(steps=steps, guidance=NoGuidance(), max_step_size=max_step_size)

    def jx_run(r=None):
        with jax.default_matmul_precision("highest"):
            gen, state["model"] = generate_with_model(
                state["model"], params, key=jax.random.key(next(jx_seed) if r is None else r),
                num_atoms=num_atoms, config=config,
            )  # fmt: skip
        state["gen"] = gen  # numpy arrays: the call has blocked until the trajectory is done

    t0 = time.perf_counter()
    jx_run(0)
    first_s = time.perf_counter() - t0
    mg_error = None
    try:
        timed = benchio.alternate({"jaxdos": jx_run, "mattergen": mg_run}, rounds)
    except (RuntimeError, IndexError, ValueError) as e:  # an edgeless cell (module docstring)
        mg_error = f"{type(e).__name__}: {str(e)[:200]}"
        timed = benchio.alternate({"jaxdos": jx_run}, rounds)
    gen = state["gen"]
    compiled = make_sampler(denoiser_score_fn(state["model"]), config)._cache_size()
    jx_s = timed["jaxdos"]["median_s"]
    mg_s = timed["mattergen"]["median_s"] if "mattergen" in timed else None
    real = int(num_atoms.sum())
    return {
        "weights": weights,
        "network": f"{label}; unconditional, no reset",
        "cutoff": gcfg.graph.cutoff,
        "max_neighbors": gcfg.graph.max_neighbors,
        "max_step_size": max_step_size,
        "batch": g,
        "steps": steps,
        "corrector_steps": 1,
        "guidance": "none",
        "precision": "float32, matmul precision highest",
        "rounds": rounds,
        "atoms": real,
        "jax_atom_slots": int(gen.atoms_per_device),
        "jax_padding_waste": 1 - real / int(gen.atoms_per_device),
        "jax_bucket": int(atom_bucket(real)),
        "jax_compiled_shapes": int(compiled),
        "jax_first_call_s": first_s,
        "timing": timed,
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
        __doc__,
        quick="4 steps, 2 crystals, one round",
        out="results/bench_crystal_vs_mattergen.json",
    )
    p.add_argument("--weights", choices=("default", "random"), default="default",
                   help="default: the embedded trained CDOSGen exported to MatterGen; random: "
                        "seeded random TINY MatterGen weights converted to jaxdos")  # fmt: skip
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=3,
                   help="alternating timing rounds per side (>= 1)")  # fmt: skip
    p.add_argument("--cutoff", type=float, default=7.0,
                   help="radius graph cutoff, A (> 0; --weights random only: a trained "
                        "network keeps its own)")  # fmt: skip
    p.add_argument("--max-step-size", type=float, default=None,
                   help="corrector step clip, both sides (> 0; default 1e6, MatterGen's released "
                        "value, with trained weights; 1e-2 with random ones)")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds = [2], 4, 1
    if args.steps < 2 or min(args.batch) < 1:
        raise ValueError(f"--steps >= 2 and --batch >= 1 expected, got {args.steps}, {args.batch}")
    if args.rounds < 1:
        raise ValueError(f"--rounds: expected >= 1, got {args.rounds}")
    if not args.cutoff > 0:
        raise ValueError(f"--cutoff: expected > 0 (Angstrom), got {args.cutoff}")
    if args.max_step_size is None:
        args.max_step_size = 1e6 if args.weights == "default" else 1e-2
    if not args.max_step_size > 0:
        raise ValueError(f"--max-step-size: expected > 0, got {args.max_step_size}")
    missing = _missing()
    if missing:
        msg = f"skipped: {missing} not importable (install it with scripts/install_parity.sh)"
        benchio.summary(f"crystal vs mattergen: {msg}")
        benchio.write_json(args.out, {"skipped": msg})
        return None
    use_parity_helpers()

    rows = []
    for g in args.batch:
        r = bench(g, args.steps, args.rounds, cutoff=args.cutoff,
                  max_step_size=args.max_step_size, weights=args.weights)  # fmt: skip
        rows.append(r)
        jx = r["timing"]["jaxdos"]
        if r["mattergen_error"]:
            versus = f"mattergen failed ({r['mattergen_error']})"
        else:
            mg = r["timing"]["mattergen"]
            versus = (
                f"mattergen {r['mattergen_structures_per_s']:.3f} struct/s (spread "
                f"{100 * mg['spread']:.0f}%) = {r['ratio_jax_over_mattergen']:.2f}x"
            )
        benchio.summary(
            f"crystal PC sampler, {args.weights} weights, G={g} N={args.steps} K=1 no-CFG fp32 "
            f"cutoff {r['cutoff']:g} A, max step {args.max_step_size:g}, full trajectory: jaxdos "
            f"{r['jax_structures_per_s']:.3f} struct/s (median of {args.rounds}, spread "
            f"{100 * jx['spread']:.0f}%) vs {versus}; padding waste "
            f"{100 * r['jax_padding_waste']:.0f}% ({r['atoms']} atoms in {r['jax_atom_slots']} "
            f"slots), {r['jax_compiled_shapes']} compiled shape(s), first call "
            f"{r['jax_first_call_s']:.1f}s"
        )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
