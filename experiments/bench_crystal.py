"""Benchmark the CDOSGen sampler: structures/s, padding waste, compiled shapes.

    python -m experiments.bench_crystal --quick          # tiny network, few steps (CPU smoke)
    python -m experiments.bench_crystal --sizes tiny mattergen_base --batch 4 16 --steps 20

Per configuration (network size, batch G, guidance): one warm-up call (compile, timed separately)
then `--repeats` timed calls of the whole jitted trajectory. Throughput is reported per
`--steps` trajectory and extrapolated to MatterGen's 1000 steps (both network calls per step scale
linearly). Baseline (same run): the unguided sampler at the same size and batch; the CFG rows'
ratio is CFG / unguided throughput. Padding waste = 1 - real atoms / atom slots of the sampler's
power-of-two atom buckets over `--draws` num_atoms draws from the training distribution; compiled
shapes = distinct jitted-sampler compilations those draws needed. Random-init weights: speed only.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import benchio
from jaxdos.crystal.batch import DosCondition
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
from jaxdos.crystal.diffusion.guidance import ClassifierFree, NoGuidance
from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20, atom_bucket, prior_batch
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig, make_sampler
from jaxdos.crystal.generate import denoiser_score_fn, generate_with_model


def _model(size: str) -> GemNetTDenoiser:
    cfg = getattr(GemNetConfig, size)().conditional()
    return GemNetTDenoiser(cfg)


def _params(model, num_atoms):
    b = jax.tree.map(jnp.asarray, prior_batch(num_atoms))
    b = b._replace(
        frac_coords=jax.random.uniform(jax.random.key(0), b.frac_coords.shape),
        lattice=b.lattice * 4.0,
        atomic_numbers=jnp.where(b.node_mask, 8, 0),
    )
    g = b.num_graphs
    cond = DosCondition(jnp.ones((g, 256)), jnp.ones(g, bool))
    return {"params": jax.jit(model.init)(jax.random.key(0), b, jnp.full(g, 0.5), cond)["params"]}


def bench_one(model, params, g, guidance, steps, repeats, seed=0):
    num_atoms = ALEX_MP_20.sample(np.random.default_rng(seed), g)
    config = CrystalSamplingConfig(steps=steps, guidance=guidance)
    dos = None if isinstance(guidance, NoGuidance) else np.ones(256, np.float32)
    kw = dict(num_atoms=num_atoms, dos=dos, config=config)
    t0 = time.perf_counter()
    gen, model = generate_with_model(model, params, key=jax.random.key(seed), **kw)
    compile_s = time.perf_counter() - t0
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        gen, model = generate_with_model(model, params, key=jax.random.key(seed + 1 + r), **kw)
        times.append(time.perf_counter() - t0)
    t = float(np.median(times))
    return model, {
        "structures_per_s": g / t,
        "structures_per_s_1000_steps": g / (t * 1000 / steps),
        "seconds_per_trajectory": t,
        "first_call_seconds": compile_s,
        "atoms": int(num_atoms.sum()),
        "atom_slots": gen.batch.num_nodes,
    }


def padding_and_shapes(model, params, g, draws, steps):
    """Atom-slot waste and distinct compilations over `draws` batches of sampled num_atoms."""
    rng = np.random.default_rng(123)
    config = CrystalSamplingConfig(steps=steps)
    real = slots = 0
    for _ in range(draws):
        n = ALEX_MP_20.sample(rng, g)
        real += int(n.sum())
        slots += atom_bucket(int(n.sum()))
        model = generate_with_model(
            model, params, key=jax.random.key(0), num_atoms=n, config=config
        )[1]
    compiled = make_sampler(denoiser_score_fn(model), config)._cache_size()
    return 1 - real / slots, compiled


def main(argv=None):
    p = benchio.parser(
        __doc__, quick="tiny network, G=4, 4 steps (CPU smoke)", out="runs/bench_crystal.json"
    )
    p.add_argument("--sizes", nargs="+", default=["tiny", "mattergen_base"])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--draws", type=int, default=6)
    p.add_argument("--gamma", type=float, default=2.0)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.batch, args.steps, args.repeats, args.draws = ["tiny"], [4], 4, 1, 3
    rows = []
    for size in args.sizes:
        model = _model(size)
        params = _params(model, np.full(max(args.batch), 8))
        for g in args.batch:
            model, base = bench_one(model, params, g, NoGuidance(), args.steps, args.repeats)
            model, cfg = bench_one(
                model, params, g, ClassifierFree(cfg_scale=args.gamma), args.steps, args.repeats
            )
            for name, r, ratio in (
                ("none", base, 1.0),
                (f"cfg{args.gamma:g}", cfg, cfg["structures_per_s"] / base["structures_per_s"]),
            ):
                row = {
                    "size": size,
                    "batch": g,
                    "guidance": name,
                    "steps": args.steps,
                    "ratio_vs_unguided": ratio,
                    "device": benchio.device_kind(),
                    **r,
                }
                rows.append(row)
                benchio.summary(
                    f"{size:15s} G={g:3d} {name:8s} {r['structures_per_s']:9.3f} struct/s "
                    f"({args.steps} steps) = {r['structures_per_s_1000_steps']:8.4f} struct/s "
                    f"@1000 steps; first call {r['first_call_seconds']:.1f}s; "
                    f"x{ratio:.2f} vs unguided"
                )
        waste, compiled = padding_and_shapes(model, params, max(args.batch), args.draws, args.steps)
        rows.append(
            {
                "size": size,
                "padding_waste_atoms": waste,
                "compiled_shapes": compiled,
                "draws": args.draws,
                "batch": max(args.batch),
            }
        )
        benchio.summary(
            f"{size:15s} padding waste {waste:.1%} of atom slots; {compiled} compiled sampler "
            f"shapes for {args.draws} random batches of G={max(args.batch)}"
        )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
