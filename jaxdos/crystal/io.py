"""Generated crystals -> CIF and extxyz files, plus a JSON record of how they were made (the
conditioning DOS, guidance, sampler settings).

Structures and files come from `jaxdos.structures` (`unpack`, `to_structures`, `write_cif`,
`write_extxyz`), the same conversion and writers the pipeline uses, so the sampled lattice matrix
is written as it is (extxyz keeps it; a CIF holds its cell parameters).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxdos.structures import to_structures, unpack, write_cif, write_extxyz

__all__ = ["write_outputs"]


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
    structures = to_structures(unpack(generated.batch, max_atoms=None))
    cifs = []
    for i, s in enumerate(structures):
        p = outdir / f"{prefix}_{i:04d}.cif"
        write_cif(s, p)
        cifs.append(str(p))
    xyz = outdir / f"{prefix}.extxyz"
    write_extxyz(structures, xyz)
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
