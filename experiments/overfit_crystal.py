"""Issue 12's overfit bisection: memorise a few world crystals, then regenerate them field by field.

    python -m experiments.overfit_crystal --out runs/overfit [--crystals 16] [--steps 3000]
        [--repeat 1] [--sampling-steps 100] [--lr 1e-3] [--cosine] [--time-scale 1]
        [--pos-sigma-ref S0] [--pos-weight 0.1] [--type-ce 0.01] [--frac-fourier K] [--cell-var C]
        [--cell-time-power P] [--t-mid F] [--seeds 1] [--model DIR] [--hand-over T [T ...]]

Trains a tiny unconditional CDOSGen on the first `--crystals` world training crystals with at most
8 atoms (or loads `--model`), then samples them with every combination of network and exact-score
fields (`jaxdos.crystal.diagnostics.swap_fields`) and counts pymatgen matches: with "own" the
exact fields tie each sample to its target, so it must match that target; "any" counts a match to
any target (the only fair count when the network draws the types). Exact coordinates are tied
to atom indices, so a row with exact coordinates and network types is no fair test either: the
network may give site i another atom's element. `--seeds` repeats each row with that many sampler
seeds. `--hand-over T ...` replaces the bisection by hand-over rows: the exact score down to t = T,
then every field from the network (`jaxdos.crystal.diagnostics.hand_over`), which says at which
noise level the network loses the crystals. Before either, the score's quality against the exact
one by t (`jaxdos.crystal.diagnostics.score_quality`). Writes OUT/model/ and OUT/bisection.json,
and prints both tables.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.train_crystal import add_lever_flags, lever_configs
from jaxdos.crystal.checkpoint import CDOSGenModel, save_model
from jaxdos.crystal.denoiser import GemNetTDenoiser
from jaxdos.crystal.diagnostics import (
    FIELDS,
    hand_over,
    invariant_floor,
    regenerated,
    score_quality,
    swap_fields,
    targets_from_records,
)
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig
from jaxdos.crystal.fit import RegrowingStep, crystal_train_config, presize_graph
from jaxdos.crystal.generate import denoiser_score_fn, generate
from jaxdos.crystal.train import LossConfig, Pretrain, TrainBatch
from jaxdos.data.world import train_val_records
from jaxdos.training import init_train_state, make_optimizer


def world_targets(count: int, max_atoms: int = 8, repeat: int = 1):
    """The first `count` world training crystals with <= max_atoms atoms, as sampler targets, each
    `repeat` times in a row (a training batch of `repeat` copies holds one crystal's worth of
    information: the test of whether the network can represent one crystal's score at all)."""
    train, _ = train_val_records()
    idx = np.flatnonzero(train.num_atoms <= max_atoms)[:count]
    return targets_from_records(train.take(np.repeat(idx, repeat)))


def add_run_flags(p: argparse.ArgumentParser, crystals: int = 16, steps: int = 3000) -> None:
    """The flags of an overfit run (shared with `experiments.overfit_mattergen`)."""
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--crystals", type=int, default=crystals)
    p.add_argument("--repeat", type=int, default=1, help="copies of each crystal in the batch")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--cosine", action="store_true", help="cosine-decay the lr to 1 %% over --steps")
    p.add_argument("--sampling-steps", type=int, default=100)


def check_run_flags(p: argparse.ArgumentParser, args) -> None:
    if not 1 <= args.crystals <= 64:
        p.error(f"--crystals: expected 1..64, got {args.crystals}")
    if not 1 <= args.repeat <= 64 or args.crystals * args.repeat > 64:
        p.error(f"--repeat: expected 1..64 with --crystals x --repeat <= 64, got {args.repeat}")
    if args.steps < 1 or args.sampling_steps < 2:
        p.error("--steps: expected >= 1; --sampling-steps: expected >= 2")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_run_flags(p)
    p.add_argument("--seeds", type=int, default=1, help="sampler seeds per bisection row")
    add_lever_flags(p)
    p.add_argument("--model", type=Path, default=None, help="a trained model dir (skip training)")
    p.add_argument("--hand-over", type=float, nargs="+", default=None, metavar="T",
                   help="hand-over rows at these t in (0, 1) instead of the bisection")  # fmt: skip
    args = p.parse_args(argv)
    check_run_flags(p, args)
    if args.hand_over is not None and not all(0 < t < 1 for t in args.hand_over):
        p.error(f"--hand-over: expected times in (0, 1), got {args.hand_over}")
    if not 1 <= args.seeds <= 64:
        p.error(f"--seeds: expected 1..64, got {args.seeds}")
    if args.model is not None and not (args.model / "model.json").is_file():
        p.error(f"--model: {args.model}/model.json not found")
    return args


def initial_params(model: GemNetTDenoiser, targets) -> dict:
    """The run's initial weights (seed 0): the same for jaxdos's and MatterGen's training."""
    crystal = jax.tree.map(jnp.asarray, targets)
    params = jax.jit(model.init)(jax.random.key(0), crystal, jnp.full(targets.num_graphs, 0.5))
    return {"params": params["params"]}


def train(args, targets):
    config, diffusion, weights = lever_configs(args)
    model = GemNetTDenoiser(config)
    g = targets.num_graphs
    batch = TrainBatch(jax.tree.map(jnp.asarray, targets), jnp.zeros((g, 256)))
    params = initial_params(model, targets)
    loss = LossConfig(mode=Pretrain(), diffusion=diffusion, weights=weights)
    tcfg = crystal_train_config(
        steps=args.steps,
        learning_rate=args.lr,
        decay_steps=args.steps if args.cosine else None,
        final_lr_fraction=0.01,
    )
    step = RegrowingStep(presize_graph(model, batch, loss), loss, tcfg)
    state = init_train_state(params, make_optimizer(tcfg), tcfg)
    key = jax.random.key(1)
    for i in range(args.steps):
        state, metrics = step(state, batch, key)
        if (i + 1) % max(args.steps // 10, 1) == 0:
            print(f"step {i + 1}: loss {float(metrics['loss']):.3f}", flush=True)
    return step.model, state.params


TIMES = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9)


def pos_floor(targets, crystals: int, repeat: int, diffusion) -> np.ndarray:
    """`[len(TIMES)]` the mean over the run's distinct crystals of `invariant_floor`: the pos_rel
    an invariant network that had memorised one crystal could reach (a lower bound with several)."""
    frac, z = np.asarray(targets.frac_coords), np.asarray(targets.atomic_numbers)
    owner = np.where(np.asarray(targets.node_mask), np.asarray(targets.batch), -1)
    rng = np.random.default_rng(3)
    floors = [invariant_floor(frac[owner == g], z[owner == g], TIMES, rng, diffusion, 16, 12)
              for g in range(0, crystals * repeat, repeat)]  # fmt: skip
    return np.mean(floors, axis=0)


QUALITY_COLUMNS = ("pos_rel", "pos_floor", "pos_gain", "cell_rel", "type_acc")


def print_quality(quality: dict) -> None:
    print("t      " + "  ".join(QUALITY_COLUMNS))
    for i, t in enumerate(quality["t"]):
        cols = (quality[k][i] for k in QUALITY_COLUMNS)
        print(f"{t:<6.3f} " + " ".join(f"{x:8.3f}" for x in cols))


def main(argv=None):
    args = parse(argv)
    targets = world_targets(args.crystals, repeat=args.repeat)
    t0 = time.time()
    if args.model is None:
        model, params = train(args, targets)
        dist = NumAtomsDistribution.from_counts(np.asarray(targets.num_atoms))
        diffusion = lever_configs(args)[1]
        meta = {"steps": args.steps}
        save_model(args.out / "model", params, model.config, dist, meta, diffusion=diffusion)
    else:
        loaded = CDOSGenModel.load(args.model)
        params, model, diffusion = loaded.params, loaded.denoiser, loaded.diffusion
    train_s = time.time() - t0
    quality = score_quality(
        denoiser_score_fn(model), params, jax.tree.map(jnp.asarray, targets), TIMES,
        jax.random.key(2), diffusion, draws=16,
    )  # fmt: skip
    quality["pos_floor"] = pos_floor(targets, args.crystals, args.repeat, diffusion)
    print_quality(quality)
    cfg = CrystalSamplingConfig(steps=args.sampling_steps, diffusion=diffusion)
    g = len(targets.num_atoms) * args.seeds

    def count(fn) -> tuple[int, int]:
        own = anyref = 0
        for seed in range(args.seeds):
            gen = generate(
                fn, params, key=jax.random.key(seed), num_atoms=targets.num_atoms, config=cfg
            )
            counts = regenerated(gen.batch, targets)
            own, anyref = own + counts[0], anyref + counts[1]
        return own, anyref

    net_fn = denoiser_score_fn(model)
    if args.hand_over is not None:  # (row keys, score function, printed label) per row
        cases = [({"hand_over_t": t}, hand_over(net_fn, targets, t, diffusion),
                  f"network below t = {t:<5g}") for t in args.hand_over]  # fmt: skip
    else:
        cases = []
        for r in range(len(FIELDS) + 1):
            for exact in itertools.combinations(FIELDS, r):
                net = [f for f in FIELDS if f not in exact]
                cases.append(({"network": net, "exact": list(exact)},
                              swap_fields(net_fn, targets, exact, diffusion),
                              f"network {'+'.join(net) or '-':16s}"))  # fmt: skip
    rows = []
    for keys, fn, label in cases:
        own, anyref = count(fn)
        rows.append({**keys, "own": own, "any": anyref, "n": g})
        print(f"{label} own {own}/{g} any {anyref}/{g}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "train_s": train_s,
        "quality": {k: v.tolist() for k, v in quality.items()},
        "rows": rows,
    }
    (args.out / "bisection.json").write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
