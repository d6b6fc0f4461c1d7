"""Generate the offline world `jaxdos-world-v1`: prototype crystals + tight-binding DOS.

    python -m experiments.make_world --n 20000 --out DIR [--seed 0] [--resume] [--chunk 250]

Chunks of records are written to DIR/chunks/ as they finish (so an interrupted run resumes with
--resume), then merged into DIR/world-v1.npz with a data card DIR/card.md and histogram PNGs.
Record i and its split depend only on (seed, i), never on chunking.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxdos.data.records import concat, load_records, save_records
from jaxdos.data.world import WORLD_NAME, generate_records, realism_stats
from jaxdos.kernels.oracle import ORACLE_VERSION


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="number of crystals")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=250, help="records per chunk file")
    ap.add_argument("--resume", action="store_true", help="keep finished chunks in DIR/chunks")
    args = ap.parse_args(argv)
    if args.n < 1 or args.chunk < 1:
        ap.error("--n and --chunk must be >= 1")
    return args


def write_card(out: Path, records, meta, seconds: float, generated: int, seed: int) -> None:
    """card.md plus PNG histograms of the realism statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = realism_stats(records)
    from jaxdos.kernels.filters import screen_tcm

    metal = np.asarray(screen_tcm(records.dos).metallic)
    figs = {
        "band_gap.png": (records.band_gap[~metal], "band gap of gapped materials (eV)", 40),
        "dos_max.png": (records.scale, "K = max DOS (states/eV/atom)", 40),
        "dos_at_fermi.png": (records.dos_at_fermi[metal], "DOS(E_F) of metals", 40),
        "num_atoms.png": (records.num_atoms, "atoms per cell", np.arange(0.5, 21)),
    }
    for name, (values, label, bins) in figs.items():
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.hist(values, bins=bins)
        ax.set_xlabel(label)
        ax.set_ylabel("count")
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)
    from jaxdos.kernels.grid import bin_centres

    fig, ax = plt.subplots(figsize=(5, 3))
    for i in range(4):
        ax.plot(bin_centres(), records.dos[i], lw=0.8, label=str(records.ids[i]))
    ax.set_xlabel("E - E_F (eV)")
    ax.set_ylabel("DOS (states/eV/atom)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=80)
    plt.close(fig)

    splits = {k: meta["split"].count(v) for k, v in (("train", "t"), ("val", "v"), ("test", "s"))}
    fams: dict = {}
    for f in meta["family"]:
        fams[f.split("+")[0]] = fams.get(f.split("+")[0], 0) + 1
    lines = [
        f"# {WORLD_NAME} data card",
        "",
        f"- oracle version: `{ORACLE_VERSION}` (tight-binding, `jaxdos/kernels/oracle.py`)",
        f"- seed: {seed}; records: {len(records)}; splits: {splits}",
        f"- generation: {generated} records in {seconds:.0f} s this run "
        f"({generated / max(seconds, 1e-9):.1f} crystals/s, 2-core shared CPU)",
        "",
        "## Realism statistics (targets in brackets)",
        "",
        f"- metal fraction: {stats['metal_fraction']:.3f}; metals : gapped = "
        f"{stats['metal_to_gapped']} [1 : 2 to 1 : 3]",
        f"- gapped: band gap 10/50/90 % quantiles {stats['gap_quantiles_eV']} eV; fraction in "
        f"(0, 6] eV: {stats['gap_fraction_0_6_eV']:.3f} [spread over 0-6 eV]",
        f"- K = max DOS 5/50/95 %: {stats['dos_max_quantiles']} states/eV/atom [order 0-5]",
        f"- TCM-like (`filters.screen_tcm`): {stats['tcm_like']} "
        f"({100 * stats['tcm_like_fraction']:.2f} %; type 1: {stats['tcm_type1']}, type 2: "
        f"{stats['tcm_type2']}) [rare, well under 1 %]",
        f"- atoms per cell 5/50/95 %: {stats['atoms_quantiles']}; distinct elements: "
        f"{stats['n_elements']}",
        "",
        "## Families",
        "",
        "| family | records |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(fams.items(), key=lambda kv: -kv[1])],
        "",
        "## Histograms",
        "",
        *[f"![{n}]({n})" for n in (*figs, "examples.png")],
        "",
    ]
    (out / "card.md").write_text("\n".join(lines))
    (out / "stats.json").write_text(json.dumps(stats, indent=1))


def run(args) -> Path:
    chunks = args.out / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, args.n, args.chunk))
    t0, generated = time.time(), 0
    with tqdm(total=args.n, desc=WORLD_NAME, unit="crystal") as bar:
        for start in starts:
            stop = min(start + args.chunk, args.n)
            path = chunks / f"chunk_{args.seed}_{start:07d}_{stop:07d}.npz"
            if args.resume and path.exists():
                bar.update(stop - start)
                continue
            records, meta = generate_records(start, stop, args.seed)
            save_records(path, records, oracle_version=ORACLE_VERSION, meta=meta)
            generated += stop - start
            bar.update(stop - start)
    seconds = time.time() - t0
    parts, split, family = [], "", []
    for start in starts:
        stop = min(start + args.chunk, args.n)
        rec, header = load_records(
            chunks / f"chunk_{args.seed}_{start:07d}_{stop:07d}.npz", oracle_version=ORACLE_VERSION
        )
        parts.append(rec)
        split += header["meta"]["split"]
        family += header["meta"]["family"]
    records = concat(parts)
    meta = {"world": WORLD_NAME, "seed": args.seed, "split": split, "family": family}
    out = args.out / "world-v1.npz"
    save_records(out, records, oracle_version=ORACLE_VERSION, meta=meta)
    write_card(args.out, records, meta, seconds, generated, args.seed)
    print(f"wrote {out} ({len(records)} records) and {args.out / 'card.md'}")
    return out


def main(argv=None) -> None:
    run(parse(argv))


if __name__ == "__main__":
    main()
