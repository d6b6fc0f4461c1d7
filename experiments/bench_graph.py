"""Periodic graph builder: per-crystal image boxes vs the dense batch box it replaced, same batch.

    python -m experiments.bench_graph --quick                  # G=4, 2 rounds: a smoke check
    python -m experiments.bench_graph --batch 16 64 --rounds 7

Both sides build the tiny CDOSGen preset's graph (cutoff 7 A, 20 neighbours per centre) of the
same batch of G world training crystals (`experiments.reference.dense_graph.world_batch`: atom
slots rounded up to a multiple of 32, lattices polar-symmetrised as in training), clean and
corrupted by CDOSGen's forward process at the training draw t ~ U(t_min, 1) per crystal:
* new: `jaxdos.neighbors.build_graph`, candidates per centre atom grown to fit the batch (a power
  of two, as `retry_on_overflow` grows it);
* dense: the former builder (`experiments.reference.dense_graph`) at image_budget 5, MatterGen's
  cap (where the embedded model's budget had grown to), and "dense_fit" at the batch's own need
  (the smallest budget the old builder could run this batch at).
The edge and in-degree budgets are the preset's, grown to fit, and the same on every side. Each
side is jitted and warmed up (compile excluded); the graphs are checked equal field by field
before timing. One timed call is `--calls` builds; `experiments.benchio.alternate` times
`--rounds` calls per side, alternating. Reports ms per build and the speed-up; the JSON carries
the machine record (a busy machine's row is not citable).
"""

from experiments import benchio

__all__ = ["main"]


def _identical(a, b) -> bool:
    import jax
    import numpy as np

    a, b = jax.device_get((a, b))
    fields = [f for f in a._fields if f not in ("stats", "overflow")]
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields)


def bench(g: int, state: str, rounds: int, calls: int, seed: int = 0) -> dict:
    import jax
    import numpy as np

    from experiments.reference.dense_graph import build_graph_dense_jit, world_batch
    from jaxdos.crystal.gemnet.config import GemNetConfig
    from jaxdos.neighbors import build_graph_checked, build_graph_jit

    batch = world_batch(g, seed=seed, t=None if state == "clean" else "uniform")
    new, config = build_graph_checked(batch, GemNetConfig.tiny().graph)
    dense = build_graph_dense_jit(batch, config, 5)
    fit = int(dense.stats.images_needed)
    dense_fit = build_graph_dense_jit(batch, config, fit)
    if bool(dense.overflow) or bool(dense_fit.overflow):
        raise RuntimeError("the dense builder overflowed the budgets the new one grew to")
    identical = _identical(new, dense) and _identical(new, dense_fit)

    def side(fn):
        def run():
            for _ in range(calls):
                out = fn()
            jax.block_until_ready(out)

        return run

    timed = benchio.alternate(
        {
            "new": side(lambda: build_graph_jit(batch, config)),
            "dense": side(lambda: build_graph_dense_jit(batch, config, 5)),
            "dense_fit": side(lambda: build_graph_dense_jit(batch, config, fit)),
        },
        rounds,
    )
    ms = {k: v["median_s"] / calls * 1e3 for k, v in timed.items()}
    a = config.max_atoms_per_crystal
    n, graphs = batch.num_nodes, batch.num_graphs
    return {
        "batch": g,
        "state": state,
        "atoms": int(np.sum(np.asarray(batch.num_atoms))),
        "atom_slots": n,
        "graph_slots": graphs,
        "config": {"cutoff": config.cutoff, "max_neighbors": config.max_neighbors,
                   "candidates_per_atom": config.candidates_per_atom,
                   "edges_per_atom": config.edges_per_atom,
                   "max_in_degree": config.max_in_degree, "max_atoms_per_crystal": a},
        "candidates_needed": int(new.stats.candidates_needed),
        "images_needed": fit,
        "candidates_new": n * config.candidates_per_atom,
        "candidates_dense": graphs * a * a * 11**3,
        "candidates_dense_fit": graphs * a * a * (2 * fit + 1) ** 3,
        "identical": identical,
        "calls_per_round": calls,
        "rounds": rounds,
        "timing": timed,
        "ms_new": ms["new"],
        "ms_dense": ms["dense"],
        "ms_dense_fit": ms["dense_fit"],
        "speedup_vs_dense": ms["dense"] / ms["new"],
        "speedup_vs_dense_fit": ms["dense_fit"] / ms["new"],
        "device": benchio.device_kind(),
    }  # fmt: skip


def main(argv=None):
    p = benchio.parser(__doc__, quick="G=4, 2 rounds of 2 calls", out="results/bench_graph.json")
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64], help="crystals per batch")
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (>= 1)")
    p.add_argument("--calls", type=int, default=5, help="graph builds per timed call (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="which world crystals, and their noise")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.rounds, args.calls = [4], 2, 2
    if min(args.batch) < 1 or args.rounds < 1 or args.calls < 1:
        raise ValueError("--batch, --rounds, --calls: expected >= 1")
    rows = []
    for g in args.batch:
        for state in ("clean", "corrupted"):
            r = bench(g, state, args.rounds, args.calls, args.seed)
            rows.append(r)
            benchio.summary(
                f"graph G={g} {state} ({r['atoms']} atoms in {r['atom_slots']} slots): new "
                f"{r['ms_new']:.1f} ms/build ({r['config']['candidates_per_atom']} candidates "
                f"per atom, {r['candidates_needed']} needed) vs dense {r['ms_dense']:.1f} ms "
                f"(11^3 images; {r['speedup_vs_dense']:.1f}x) and dense_fit "
                f"{r['ms_dense_fit']:.1f} ms ({2 * r['images_needed'] + 1}^3 images; "
                f"{r['speedup_vs_dense_fit']:.1f}x); identical graphs: {r['identical']}"
            )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
