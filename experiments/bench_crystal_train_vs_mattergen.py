"""CDOSGen training-step speed: jaxdos's jitted step vs MatterGen's PyTorch step, same everything.

    python -m experiments.bench_crystal_train_vs_mattergen --quick    # G=4, 3 steps, 1 round
    python -m experiments.bench_crystal_train_vs_mattergen --batch 4 16 --steps 20 --rounds 3

Both sides train the same network from the same weights (jaxdos's tiny unconditional CDOSGen,
exported to a MatterGen state_dict, `experiments.reference.mattergen_twin`) on the same batch of
G world training crystals, with the same optimiser (elementwise clip 0.5, Adam 1e-4):
* jaxdos: `jaxdos.crystal.fit.RegrowingStep` (the stage's jitted step, graph budgets presized
  as `train_crystal` does), float32, after one compile call timed apart;
* MatterGen: `DiffusionModule.calc_loss` in train mode, `backward`, `clip_grad_value_`,
  `Adam.step`, eager PyTorch (its own times, noise and radius graph).
One call is `--steps` consecutive steps; `experiments.benchio.alternate` times `--rounds` calls
per side, alternating. `--budgets E T` adds a third side in the same run: jaxdos with
`edges_per_atom` E and `max_in_degree` T (the tiny preset's are 32 and 32, and presizing rounds
grown budgets up to powers of two). Also reported: jaxdos's static graph budgets against what
the batch needed (directed edge slots vs edges, triplet slots vs the largest in-degree), the
padding its static shapes pay for. The JSON carries the machine record (a busy machine's row is
not citable). Skips with a message without torch / mattergen (scripts/install_parity.sh).
"""

from experiments import benchio
from experiments.reference.mattergen_twin import missing_parity as _missing
from experiments.reference.mattergen_twin import use_parity_helpers


def bench(g: int, steps: int, rounds: int, budgets: tuple[int, int] | None = None) -> dict:
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from experiments.reference.mattergen_twin import chem_batch_of, mattergen_module
    from jaxdos.crystal.checkpoint import CDOSGenModel
    from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
    from jaxdos.crystal.diagnostics import targets_from_records
    from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
    from jaxdos.crystal.fit import RegrowingStep, crystal_train_config, presize_graph
    from jaxdos.crystal.train import LossConfig, Pretrain, TrainBatch
    from jaxdos.data.world import train_val_records
    from jaxdos.training import init_train_state, make_optimizer

    train, _ = train_val_records()
    crystals = targets_from_records(train.take(np.arange(g)))
    batch = TrainBatch(jax.tree.map(jnp.asarray, crystals), jnp.zeros((crystals.num_graphs, 256)))
    config = GemNetConfig.tiny()
    net = GemNetTDenoiser(config)
    t_half = jnp.full(crystals.num_graphs, 0.5)
    params = {"params": jax.jit(net.init)(jax.random.key(0), batch.crystal, t_half)["params"]}
    dist = NumAtomsDistribution.from_counts(np.asarray(crystals.num_atoms)[crystals.graph_mask])
    module, _ = mattergen_module(CDOSGenModel(params=params, gemnet=config, num_atoms=dist))
    clean = chem_batch_of(crystals)

    tcfg = crystal_train_config(steps=steps)
    loss = LossConfig(mode=Pretrain())
    key = jax.random.key(1)

    def jaxdos_side(model):
        step = RegrowingStep(presize_graph(model, batch, loss), loss, tcfg)
        state = {"s": init_train_state(params, make_optimizer(tcfg), tcfg), "stats": None}

        def run():
            s = state["s"]
            for _ in range(steps):
                s, metrics = step(s, batch, key)
            jax.block_until_ready(s.params)
            state["s"], state["stats"] = s, metrics["stats"]

        return run, step, state

    jx_run, step, state = jaxdos_side(net)
    sides = {"jaxdos": jx_run}
    if budgets is not None:
        graph = dataclasses.replace(
            config.graph, edges_per_atom=budgets[0], max_in_degree=budgets[1]
        )
        tight_run, tight_step, _ = jaxdos_side(
            GemNetTDenoiser(dataclasses.replace(config, graph=graph))
        )
        sides["jaxdos_budgets"] = tight_run

    opt = torch.optim.Adam(module.parameters(), lr=tcfg.learning_rate, betas=(0.9, 0.999))

    def mg_run():
        for _ in range(steps):
            opt.zero_grad()
            module.calc_loss(clean)[0].backward()
            torch.nn.utils.clip_grad_value_(module.parameters(), tcfg.clip_value)
            opt.step()

    timed = benchio.alternate({**sides, "mattergen": mg_run}, rounds)
    graph = step.model.config.graph
    n_slots = int(crystals.num_nodes)
    stats = state["stats"]
    jx, mg = timed["jaxdos"]["median_s"], timed["mattergen"]["median_s"]
    extra = {}
    if budgets is not None:
        used = tight_step.model.config.graph
        extra = {
            "budgets_side": {"edges_per_atom": used.edges_per_atom,
                             "max_in_degree": used.max_in_degree},
            "jaxdos_budgets_steps_per_s": steps / timed["jaxdos_budgets"]["median_s"],
            "ratio_budgets_over_preset": jx / timed["jaxdos_budgets"]["median_s"],
        }  # fmt: skip
    return {
        "batch": g,
        "atoms": int(np.sum(crystals.num_atoms)),
        "atom_slots": n_slots,
        "steps_per_call": steps,
        "rounds": rounds,
        "network": "GemNetConfig.tiny(), unconditional, float32",
        "edge_slots": n_slots * graph.edges_per_atom,
        "edges_needed_max": 2 * int(stats.half_edges_needed),
        "triplet_slots_per_edge": graph.max_in_degree,
        "in_degree_needed_max": int(stats.in_degree_needed),
        "timing": timed,
        "jaxdos_steps_per_s": steps / jx,
        "mattergen_steps_per_s": steps / mg,
        "ratio_jax_over_mattergen": mg / jx,
        "torch_threads": torch.get_num_threads(),
        "device": benchio.device_kind(),
        **extra,
    }


def main(argv=None):
    p = benchio.parser(
        __doc__,
        quick="G=4, 3 steps, one round",
        out="results/bench_crystal_train_vs_mattergen.json",
    )
    p.add_argument("--batch", type=int, nargs="+", default=[4, 16])
    p.add_argument("--steps", type=int, default=20, help="training steps per timed call (>= 1)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (>= 1)")
    p.add_argument("--budgets", type=int, nargs=2, metavar=("E", "T"), default=None,
                   help="also time jaxdos with these edge / in-degree budgets")  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds = [4], 3, 1
    if args.steps < 1 or args.rounds < 1 or not all(1 <= g <= 256 for g in args.batch):
        p.error("--steps, --rounds: expected >= 1; --batch: expected 1..256 crystals each")
    if args.budgets is not None and (min(args.budgets) < 2 or args.budgets[0] % 2):
        p.error(f"--budgets: expected an even E >= 2 and T >= 2, got {args.budgets}")
    missing = _missing()
    if missing:
        msg = f"skipped: {missing} not importable (install it with scripts/install_parity.sh)"
        benchio.summary(f"crystal training vs mattergen: {msg}")
        benchio.write_json(args.out, {"skipped": msg})
        return None
    use_parity_helpers()

    rows = []
    for g in args.batch:
        r = bench(g, args.steps, args.rounds, args.budgets)
        rows.append(r)
        benchio.summary(
            f"CDOSGen training step, tiny, G={g} ({r['atoms']} atoms in {r['atom_slots']} slots): "
            f"jaxdos {r['jaxdos_steps_per_s']:.2f} steps/s vs mattergen "
            f"{r['mattergen_steps_per_s']:.2f} steps/s = {r['ratio_jax_over_mattergen']:.2f}x; "
            f"edge slots {r['edge_slots']} for <= {r['edges_needed_max']} edges, "
            f"{r['triplet_slots_per_edge']} triplet slots per edge for in-degree "
            f"<= {r['in_degree_needed_max']}"
        )
        if args.budgets is not None:
            benchio.summary(
                f"  same run, jaxdos with budgets {r['budgets_side']}: "
                f"{r['jaxdos_budgets_steps_per_s']:.2f} steps/s = "
                f"{r['ratio_budgets_over_preset']:.2f}x the preset budgets"
            )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
