"""The pipeline's output writers, one home each: structures (CIF + extxyz), tables (markdown +
CSV), figures, and the `write_outputs` bundle of a `jaxdos.crystal.generate.Generated`.

Every structure file of every command goes through `_structures` below and the writers of
`jaxdos.structures`, which keep the lattice matrix.
"""

import csv
import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxdos.kernels.grid import bin_centres
from jaxdos.kernels.metrics import cosine
from jaxdos.structures import Crystals, to_structures, unpack, write_cif, write_extxyz

__all__ = [
    "markdown_table",
    "write_table",
    "write_structure_files",
    "write_structures",
    "write_outputs",
    "write_every_structure",
    "write_generation",
    "TABLE_COLUMNS",
    "plot_dos_pairs",
    "plot_property_histograms",
    "plot_nearest_grid",
]


# -- the one conversion point: crystals -> Structures -> CIF / extxyz -------------------------


def _structures(crystals) -> list:
    """Structures of padded `Crystals` rows or of a flat `CrystalBatch` (its real graphs)."""
    if not isinstance(crystals, Crystals):
        crystals = unpack(crystals, max_atoms=None)
    return to_structures(crystals)


def write_structure_files(structures: list, folder, names: Sequence[str], extxyz: str) -> list:
    """One CIF per structure (`folder/names[i]`) and all of them in `folder/extxyz`; returns the
    CIF paths. The writer behind `write_structures` and `write_outputs`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, name in zip(structures, names, strict=True):
        write_cif(s, folder / name)
        paths.append(str(folder / name))
    write_extxyz(structures, folder / extxyz)
    return paths


# -- tables -----------------------------------------------------------------------------------


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table; floats with 4 significant digits, everything else as `str`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(folder, name: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Write `folder/name.csv` (full precision) and `folder/name.md`; return the markdown."""
    folder = Path(folder)
    md = markdown_table(header, rows)
    with open(folder / f"{name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    (folder / f"{name}.md").write_text(md)
    return md


# -- structures -------------------------------------------------------------------------------


def write_structures(folder: Path, stage: dict, select: np.ndarray, limit: int = 64) -> None:
    """CIF files `crystal_<row>.cif` and one `crystals.extxyz` of the selected crystals of a
    generation stage (`jaxdos.pipeline.screening.crystal_stage`), at most `limit`."""
    idx = np.flatnonzero(select)[:limit]
    if idx.size == 0:
        return
    crystals = Crystals(*(stage[f][idx] for f in Crystals._fields))
    names = [f"crystal_{j:05d}.cif" for j in idx]
    write_structure_files(_structures(crystals), folder, names, "crystals.extxyz")


def write_every_structure(folder, stage: dict, tags: Sequence[str] | None = None) -> list[str]:
    """A CIF of every crystal of a stage, `crystal_<row>[_<tag>].cif`, and all of them in
    `crystals.extxyz`; returns the file name per row.

    A crystal whose cell pymatgen cannot hold (a singular lattice, a mask-state atom) gets no file
    and the name "" (its row in the table says why); every other one is written, hit or not.
    """
    tags = tags if tags is not None else [""] * len(stage["num_atoms"])
    structures, names = [], []
    for j, tag in enumerate(tags):
        crystal = Crystals(*(stage[f][j : j + 1] for f in Crystals._fields))
        try:
            structures.append(to_structures(crystal)[0])
        except ValueError:
            names.append("")
            continue
        names.append(f"crystal_{j:05d}{'_' + tag if tag else ''}.cif")
    written = [n for n in names if n]
    if written:
        write_structure_files(structures, folder, written, "crystals.extxyz")
    return names


# The table of `write_generation`, one row per crystal (a verdict column per target follows).
TABLE_COLUMNS = (
    "id",
    "formula",
    "atoms",
    "source_dos",
    "valid",
    "reason",
    "band_gap",
    "dos_at_fermi",
    "integrated_dos",
    "cosine_to_condition",
)


def _formula(z: np.ndarray) -> str:
    from pymatgen.core import Composition, Element

    try:
        return Composition(Counter(Element.from_Z(int(v)) for v in z)).reduced_formula
    except ValueError:  # a mask-state atom of an unfinished trajectory
        return "?"


def write_generation(
    folder,
    stage: dict,
    *,
    source_ids: Sequence[str],
    verdicts: dict,
    intervals: dict,
    best: int = 6,
) -> dict:
    """Every output of a design / generate run: structures, the table, figures.

    Args:
        folder: the run folder.
        stage: a `jaxdos.pipeline.screening.crystal_stage` result with `conditioning` [S, 256].
        source_ids: the name of each conditioning DOS row.
        verdicts: column -> `[M]` bool (each target / filter, then `meets_targets`).
        intervals: property -> (lo, hi) of its target, for the histograms (absent: untargeted).
        best: crystals in the DOS-pair figure: target hits first, then by cosine to the condition.

    Returns:
        {"rows": table rows, "header": columns, "best": rows of the figure, "files": names}.
    """
    folder = Path(folder)
    m = len(stage["num_atoms"])
    cond = stage["conditioning"][stage["source"]]
    cos = np.where(stage["valid"], np.asarray(cosine(cond, stage["oracle_dos"])), np.nan)
    hits = verdicts.get("meets_targets", np.zeros(m, bool))
    files = write_every_structure(folder / "structures", stage, ["hit" if h else "" for h in hits])
    header = [*TABLE_COLUMNS, *verdicts, "cif"]
    rows = []
    for j in range(m):
        n = int(stage["num_atoms"][j])
        rows.append(
            [
                f"crystal_{j:05d}",
                _formula(stage["atomic_numbers"][j, :n]),
                n,
                source_ids[int(stage["source"][j])],
                bool(stage["valid"][j]),
                str(stage["reason"][j]),
                *(float(stage[k][j]) for k in ("band_gap", "dos_at_fermi", "integrated_dos")),
                float(cos[j]),
                *(bool(v[j]) for v in verdicts.values()),
                f"structures/{files[j]}" if files[j] else "",
            ]
        )
    write_table(folder, "crystals", header, rows)
    valid = np.flatnonzero(stage["valid"])
    order = valid[np.lexsort((-cos[valid], ~hits[valid]))][:best]
    plot_dos_pairs(
        folder / "dos_pairs.png", stage, order, title="condition vs generated", limit=best
    )
    plot_property_histograms(folder / "properties.png", stage, intervals)
    return {"rows": rows, "header": header, "best": order.tolist(), "files": files}


def _jsonable(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {
            "type": type(x).__name__,
            **{f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)},
        }
    if isinstance(x, tuple | list):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def write_outputs(generated, outdir, *, prefix: str = "gen", extra: dict | None = None) -> dict:
    """Write CIFs, one extxyz and `<prefix>.json` (conditioning DOS, guidance, sampler settings).

    Args:
        generated: a `jaxdos.crystal.generate.Generated`.
        outdir: output directory (created).
        prefix: file-name prefix.
        extra: more JSON-able metadata (e.g. seed, checkpoint).

    Returns:
        {"cif": [paths], "extxyz": path, "json": path, "formulas": [...]}.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    structures = _structures(generated.batch)
    names = [f"{prefix}_{i:04d}.cif" for i in range(len(structures))]
    cifs = write_structure_files(structures, outdir, names, f"{prefix}.extxyz")
    xyz = outdir / f"{prefix}.extxyz"
    meta = {
        "num_structures": len(structures),
        "formulas": [s.composition.reduced_formula for s in structures],
        "num_atoms": [len(s) for s in structures],
        "guidance": _jsonable(generated.config.guidance),
        "sampler": _jsonable(generated.config),
        "conditioning_dos": None if generated.dos is None else np.asarray(generated.dos).tolist(),
        "dos_units": "states / eV / atom, 256 bins on [E_F - 10, E_F + 10] eV",
        "files": {"cif": [Path(c).name for c in cifs], "extxyz": xyz.name},
        **(extra or {}),
    }
    js = outdir / f"{prefix}.json"
    js.write_text(json.dumps(meta, indent=1))
    return {"cif": cifs, "extxyz": str(xyz), "json": str(js), "formulas": meta["formulas"]}


# -- figures ----------------------------------------------------------------------------------


def plot_dos_pairs(path: Path, stage: dict, select: np.ndarray, *, title: str, limit: int = 6):
    """Conditioning DOS vs the oracle DOS of the generated crystal (Figure 3 of the paper).

    `select` is a `[M]` bool mask (its first `limit` rows) or the rows themselves, in order."""
    select = np.asarray(select)
    idx = (np.flatnonzero(select) if select.dtype == bool else select.astype(int))[:limit]
    if idx.size == 0 or "conditioning" not in stage:
        return
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    e = bin_centres()
    fig, axes = plt.subplots(1, idx.size, figsize=(3.2 * idx.size, 2.6), squeeze=False)
    for ax, j in zip(axes[0], idx, strict=True):
        ax.plot(e, stage["conditioning"][stage["source"][j]], label="condition", lw=1)
        ax.plot(e, stage["oracle_dos"][j], ":", label="oracle DOS of crystal", lw=1)
        ax.axvline(0.0, color="k", lw=0.5)
        ax.set_xlabel("E - E_F (eV)")
    axes[0][0].set_ylabel("states / eV / atom")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_nearest_grid(grids: dict, path: Path, per_row: int = 4) -> None:
    """Per setting (a row), the first `per_row` samples and their cosine-nearest reference DOS.

    Args:
        grids: setting -> (samples [M, L], reference [R, L], nearest [M] reference rows; empty
            when there are no statistics).
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = bin_centres()
    fig, axes = plt.subplots(
        len(grids), per_row, figsize=(3.2 * per_row, 2.4 * len(grids)), squeeze=False
    )
    for r, (name, (dos, ref, nearest)) in enumerate(grids.items()):
        for c in range(per_row):
            ax = axes[r, c]
            if c < dos.shape[0]:
                ax.plot(e, dos[c], color="tab:blue", lw=0.8, label="sample")
                if nearest.size:
                    ax.plot(
                        e, ref[nearest[c]], color="tab:red", lw=0.8, ls=":", label="nearest ref"
                    )
            ax.axvline(0.0, color="grey", lw=0.5)
            ax.set_title(f"{name} #{c}", fontsize=8)
            ax.tick_params(labelsize=6)
        if dos.shape[0]:
            axes[r, 0].legend(fontsize=6)
    fig.supxlabel("E - E_F (eV)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_property_histograms(path: Path, stage: dict, intervals: dict) -> None:
    """Histogram of each oracle property over the valid crystals, the target interval shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = {"band_gap": "eV", "dos_at_fermi": "states/eV/atom", "integrated_dos": "states/atom"}
    valid = np.asarray(stage["valid"], bool)
    fig, axes = plt.subplots(1, len(units), figsize=(3.4 * len(units), 2.6), squeeze=False)
    for ax, (name, unit) in zip(axes[0], units.items(), strict=True):
        values = np.asarray(stage[name])[valid]
        if values.size:
            ax.hist(values, bins=20, color="tab:blue", alpha=0.8)
        if name in intervals:
            lo, hi = intervals[name]
            ax.axvspan(lo, hi, color="tab:orange", alpha=0.3, label="target")
            ax.legend(fontsize=6)
        ax.set_xlabel(f"{name} ({unit})")
    axes[0][0].set_ylabel(f"valid crystals (n={int(valid.sum())})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
