"""The pipeline's output writers, one home each: structures (CIF + extxyz), tables (markdown +
CSV), figures, and the `write_outputs` bundle of a `jaxdos.crystal.generate.Generated`.

Every structure file of every command goes through `_structures` below and the writers of
`jaxdos.structures`, which keep the lattice matrix.
"""

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxdos.kernels.grid import bin_centres
from jaxdos.structures import Crystals, to_structures, unpack, write_cif, write_extxyz

__all__ = [
    "markdown_table",
    "write_table",
    "write_structure_files",
    "write_structures",
    "write_outputs",
    "plot_dos_pairs",
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
    """Conditioning DOS vs the oracle DOS of the generated crystal (Figure 3 of the paper)."""
    idx = np.flatnonzero(select)[:limit]
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
