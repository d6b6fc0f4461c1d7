"""Benchmark predictor guidance of CDOSGen: time per sampler step, guided vs unguided.

    python -m experiments.bench_guidance [--quick] [--batch 8 32] [--steps 20] [--rounds 5]
        [--loss tcm|dos] [--crystal-model DIR] [--guide-predictor DIR] [--cfg]
        [--out results/bench_guidance.json]

For each batch size G it times whole jitted trajectories (`generate_with_model`, `--steps`
steps, `--corrector-steps` corrector iterations) of the same crystals (atom counts drawn once per
G) in alternating rounds (`benchio.alternate`, medians and spread) for these sides:

    unguided            NoGuidance
    guided              predictor guidance (`--loss`: the TCM surrogate, or a DOS target) at
                        `--t-max` (default 0.5, `GradientGuidance`'s): the loss is evaluated only
                        at t <= t_max, i.e. on about that fraction of the steps
    cfg, cfg+guided     with --cfg: classifier-free guidance, without and with predictor guidance

Time per step = trajectory median / steps; `ratio_*` = a side's time per step over the unguided
one (over `cfg` for `cfg+guided`), the figure of issue 16's goal (<= 1.5x). Models: the embedded
CDOSGen and DOS predictor unless given (their sizes are what a user samples with). Each side is
compiled and run once before the timed rounds (`first_call_s`).
"""

import dataclasses
import time

import jax
import numpy as np

from experiments import benchio
from jaxdos.crystal.checkpoint import KIND as CDOSGEN
from jaxdos.crystal.diffusion.guidance import ClassifierFree, NoGuidance
from jaxdos.crystal.diffusion.num_atoms import device_atom_budget
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig
from jaxdos.crystal.generate import generate_with_model
from jaxdos.crystal.graph import presize_budgets
from jaxdos.data.world import load_world
from jaxdos.kernels.filters import screen_tcm
from jaxdos.pipeline.guided import predictor_guidance, predictor_property_guidance
from jaxdos.pipeline.models import as_model
from jaxdos.predictor.checkpoint import KIND as DOS_PREDICTOR


def _sides(predictor, loss: str, target_dos: np.ndarray, cfg: bool, t_max: float) -> dict:
    """side -> (guidance, guide_params, guide_targets, conditioning DOS or None)."""
    g = len(target_dos)

    def guided(base):
        if loss == "tcm":
            return predictor_property_guidance(
                predictor, {}, g, tcm=1, strength=1.0, base=base, t_max=t_max
            )
        return predictor_guidance(predictor, target_dos, strength=1.0, base=base, t_max=t_max)

    sides = {
        "unguided": (NoGuidance(), None, None, None),
        "guided": (*guided(NoGuidance()), None),
    }
    if cfg:
        base = ClassifierFree(cfg_scale=2.0)
        sides["cfg"] = (base, None, None, target_dos)
        sides["cfg+guided"] = (*guided(base), target_dos)
    return sides


def bench(model, predictor, g: int, args) -> dict:
    """One batch size: every side's timings and its ratio to the unguided sampler."""
    num_atoms = model.num_atoms.sample(np.random.default_rng(args.seed), g)
    world = load_world("test").dos
    tcm = world[screen_tcm(world).is_tcm]  # conditions / DOS targets: TCM-like world DOS
    target = (tcm if len(tcm) else world)[np.arange(g) % max(len(tcm), 1)]
    # Budgets as `generate_crystals` sizes them: one compile per side, no overflow retries.
    denoiser = model.denoiser
    graph = presize_budgets(denoiser.config.graph, num_atoms, model.diffusion.cell.limit_density)
    denoiser = denoiser.clone(config=dataclasses.replace(denoiser.config, graph=graph))
    budget = device_atom_budget(num_atoms, 1)
    calls, compile_s = {}, {}
    sides = _sides(predictor, args.loss, target, args.cfg, args.t_max)
    for name, (guidance, gp, gt, dos) in sides.items():
        config = CrystalSamplingConfig(
            steps=args.steps,
            corrector_steps=args.corrector_steps,
            guidance=guidance,
            diffusion=model.diffusion,
        )
        kw = dict(num_atoms=num_atoms, config=config, atom_budget=budget, dos=dos)
        if gp is not None:
            kw.update(guide_params=gp, guide_targets=gt)
        counter = iter(range(1 << 30))

        def call(kw=kw, counter=counter):
            # Host arrays come back: the call blocks until the trajectory is done.
            return generate_with_model(
                denoiser, model.params, key=jax.random.key(next(counter)), **kw
            )

        t0 = time.perf_counter()
        call()
        compile_s[name] = time.perf_counter() - t0
        calls[name] = call
    timed = benchio.alternate(calls, args.rounds)
    base = timed["unguided"]["median_s"] / args.steps
    row = {"batch": g, "steps": args.steps, "corrector_steps": args.corrector_steps}
    row.update(loss=args.loss, t_max=args.t_max, atoms=int(num_atoms.sum()))
    row.update(device=benchio.device_kind())
    for name, t in timed.items():
        per_step = t["median_s"] / args.steps
        ref = timed["cfg"]["median_s"] / args.steps if name == "cfg+guided" else base
        row[name] = {
            "per_step_s": per_step,
            "median_s": t["median_s"],
            "spread": t["spread"],
            "first_call_s": compile_s[name],
            "ratio": per_step / ref,
        }
    return row


def main(argv=None):
    p = benchio.parser(
        __doc__,
        quick="G=2, 3 steps, no corrector, 2 rounds (CPU smoke)",
        out="results/bench_guidance.json",
    )
    p.add_argument("--batch", nargs="+", type=int, default=[8, 32], help="batch sizes G")
    p.add_argument("--steps", type=int, default=20, help="CDOSGen steps per trajectory (>= 2)")
    p.add_argument("--corrector-steps", type=int, default=1, help="corrector iterations (1)")
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (>= 1)")
    p.add_argument("--loss", choices=("tcm", "dos"), default="tcm", help="guidance loss (tcm)")
    p.add_argument("--cfg", action="store_true", help="also time CFG without / with guidance")
    p.add_argument(
        "--t-max", type=float, default=0.5, help="guidance only at t <= t_max, in (0, 1] (0.5)"
    )
    p.add_argument("--crystal-model", help="CDOSGen model directory (default: embedded)")
    p.add_argument("--guide-predictor", help="dos_predictor model directory (default: embedded)")
    p.add_argument("--seed", type=int, default=0, help="seed of the atom-count draw (0)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.corrector_steps, args.rounds = [2], 3, 0, 2
    for name, low in (("steps", 2), ("rounds", 1), ("corrector_steps", 0)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')}: expected >= {low}, got {getattr(args, name)}")
    if not 0 < args.t_max <= 1:
        p.error(f"--t-max: expected in (0, 1], got {args.t_max}")
    if min(args.batch) < 1:
        p.error(f"--batch: expected sizes >= 1, got {args.batch}")
    try:
        model = as_model(args.crystal_model, CDOSGEN)
        predictor = as_model(args.guide_predictor, DOS_PREDICTOR)
    except (OSError, ValueError) as err:
        p.error(str(err).splitlines()[0])
    rows = []
    for g in args.batch:
        row = bench(model, predictor, g, args)
        rows.append(row)
        sides = [k for k in row if isinstance(row[k], dict)]
        benchio.summary(
            f"G={g:3d} S={args.steps} K={args.corrector_steps} loss={args.loss}: "
            + ", ".join(
                f"{k} {1e3 * row[k]['per_step_s']:.1f} ms/step (x{row[k]['ratio']:.2f}, "
                f"spread {row[k]['spread']:.0%})"
                for k in sides
            )
        )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
