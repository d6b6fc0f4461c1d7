"""Smoothness and plausibility of unconditional DOSSampler spectra under each sampling option.

    python -m experiments.bench_dos_smoothness                 # 128 samples x 8 settings, 16 steps
    python -m experiments.bench_dos_smoothness --quick         # 16 samples, 2 settings
    python -m experiments.bench_dos_smoothness --configs "" "temperature=0.5,final_argmax=1"
    python -m experiments.bench_dos_smoothness --models default runs/sampler/model --configs ""

Issue 12, goal 2: the DOSSampler should draw spectra like the world's (roughness within 1.5x of
the world's test split, audit plausibility >= 50 % of the world's own rate, at the default steps).
Each setting is a `DOSSamplingConfig` (16 steps by default, as `tcm_screen`) with the fields given
as `name=value` pairs ("" is the paper's Algorithm 2); all draw `--samples` unconditional spectra
with each of `--models` (sampler directories; "default" is the embedded one), the same seed and K
drawn from the training set, through the same rejection loop as `audit_dos` (no targets, so every
proposal is kept).

Goal 2 holds for a setting when its mean roughness is <= 1.5x the world's and its plausibility
rate >= 0.5x the world's (point values; the intervals are printed beside them).

Roughness of a spectrum d `[L]`: total variation over L1 norm, sum |d[i+1] - d[i]| / sum |d[i]|
(a smooth band ~0.2, per-bin noise ~1), mean with its bootstrap 95 % interval. Plausibility: the
4-metric audit of `jaxdos.kernels.audit` against the world's test split, with its Wilson interval;
the world's own rate is its leave-one-out rate. Diversity, so that a collapsed sampler cannot pass:
the mean pairwise cosine between samples (the world's between its own spectra) and the number of
distinct world spectra that are some sample's cosine-nearest neighbour (the world's: leave-one-out).
Wall time per setting includes its compile.
"""

import dataclasses
import time
from pathlib import Path

from experiments import benchio

__all__ = ["main", "roughness", "parse_config", "DEFAULT_CONFIGS"]

DEFAULT_CONFIGS = (
    "",
    "temperature=0.7",
    "unmask_order=confidence",
    "final_argmax=1",
    "top_p=0.9",
    "unmask_order=confidence,temperature=0.7,final_argmax=1",
    "noise_length=16",
    "noise_length=16,top_p=0.9",
)


def roughness(dos):
    """Total variation / L1 norm per spectrum, `[B, L] -> [B]` (NaN for an all-zero row)."""
    import numpy as np

    d = np.asarray(dos, np.float64)
    l1 = np.abs(d).sum(-1)
    tv = np.abs(np.diff(d, axis=-1)).sum(-1)
    return np.where(l1 > 0, tv / np.where(l1 > 0, l1, 1.0), np.nan)


def parse_config(spec: str, steps: int):
    """`"name=value,..."` -> `DOSSamplingConfig(steps=steps, name=value, ...)` (values typed by
    the field's default: bool as 0/1/true/false)."""
    from jaxdos.sampler.config import DOSSamplingConfig

    fields = {f.name: f for f in dataclasses.fields(DOSSamplingConfig)}
    kw = {"steps": steps}
    for item in filter(None, spec.split(",")):
        name, _, value = item.partition("=")
        if name not in fields:
            raise ValueError(f"configs: unknown DOSSamplingConfig field {name!r} in {spec!r}")
        kind = type(fields[name].default)
        kw[name] = value.lower() in ("1", "true") if kind is bool else kind(value)
    return DOSSamplingConfig(**kw)


def main(argv=None):
    p = benchio.parser(__doc__, quick="16 samples, 2 settings (~1 min on CPU)", out=None)
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS))
    p.add_argument("--models", nargs="+", default=["default"], help='sampler dirs ("default")')
    args = p.parse_args(argv)
    for m in args.models:
        if m != "default" and not (Path(m) / "model.json").is_file():
            p.error(f"--models: {m}/model.json not found")
    if args.quick:
        args.samples, args.configs = 16, args.configs[:2]
    configs = [(spec or "Algorithm 2", parse_config(spec, args.steps)) for spec in args.configs]
    if len(args.models) > 1:
        configs = [(f"{m}: {name}", sc, m) for m in args.models for name, sc in configs]
    else:
        configs = [(name, sc, args.models[0]) for name, sc in configs]

    import numpy as np

    from jaxdos.data.world import load_world
    from jaxdos.kernels import stats
    from jaxdos.kernels.audit import audit
    from jaxdos.sampler.checkpoint import DOSSamplerModel, load_default
    from jaxdos.sampler.proposal import guided_proposer
    from jaxdos.sampler.rejection import RejectionConfig, run_rejection
    from jaxdos.sampler.targets import Targets

    models = {m: load_default() if m == "default" else DOSSamplerModel.load(m) for m in args.models}
    world = np.asarray(load_world("test").dos, np.float32)
    world_rough = stats.mean(roughness(world))
    rejection = RejectionConfig(
        accept=args.samples, proposals=args.samples, batch_size=args.batch_size, seed=args.seed
    )
    rows, table = [], []
    for name, sc, model_name in configs:
        t0 = time.perf_counter()
        m = models[model_name]
        proposer = guided_proposer(
            m.params, m.config, m.scale_distribution, Targets(), sampling_config=sc
        )
        dos = np.asarray(run_rejection(proposer, Targets(), rejection, progress=False).dos)
        wall = time.perf_counter() - t0
        row = audit(dos, world)
        n, n_ref = dos.shape[0], world.shape[0]
        plaus = stats.rate(round(row["plausibility_rate"] * n / 100), n)
        world_plaus = stats.rate(round(row["ref_plausibility_rate"] * n_ref / 100), n_ref)
        rough = stats.mean(roughness(dos))
        x_rough, x_plaus = rough.value / world_rough.value, plaus.value / world_plaus.value
        goal = x_rough <= 1.5 and x_plaus >= 0.5
        rows.append(
            {
                "setting": name,
                "model": model_name,
                "config": repr(sc),
                "roughness": rough.value,
                "roughness_ci": rough.ci(),
                "plausibility": plaus.value,
                "plausibility_ci": plaus.ci(),
                "roughness_vs_world": x_rough,
                "plausibility_vs_world": x_plaus,
                "goal2": goal,
                "pairwise_cosine": row["pairwise_cosine"],
                "unique_nearest": row["unique_nearest"],
                "wall_s": wall,
            }
        )
        table.append(
            f"| {name} | {stats.fmt(rough)} | {x_rough:.2f} | {stats.fmt(plaus, percent=True)} "
            f"| {x_plaus:.2f} | {'yes' if goal else 'no'} | {row['pairwise_cosine']:.2f} "
            f"| {row['unique_nearest']} | {wall:.1f} |"
        )
        benchio.summary(table[-1])
    head = [
        f"| setting ({args.steps} steps, {args.samples} samples) | roughness | x world "
        "| plausibility | / world | goal 2 | pairwise cos | unique nearest | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| world test split | {stats.fmt(world_rough)} | 1.00 "
        f"| {stats.fmt(world_plaus, percent=True)} | 1.00 | - | {row['ref_pairwise_cosine']:.2f} "
        f"| {row['ref_unique_nearest']} (LOO) | - |",
    ]
    print("\n".join(head + table), flush=True)
    if args.out:
        payload = {
            "device": benchio.device_kind(),
            "steps": args.steps,
            "samples": args.samples,
            "seed": args.seed,
            "world_roughness": world_rough.value,
            "world_roughness_ci": world_rough.ci(),
            "world_plausibility": world_plaus.value,
            "world_plausibility_ci": world_plaus.ci(),
            "rows": rows,
        }
        benchio.write_json(args.out, payload)


if __name__ == "__main__":
    main()
