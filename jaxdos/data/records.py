"""The record schema shared by the offline world and real (MP-style) data.

A record set is a `Records` of numpy arrays with a leading record axis M; crystals are padded to
`jaxdos.structures.MAX_ATOMS` atoms (atomic number 0 marks padding), and `records.crystals` is
that padded crystal layout (`jaxdos.structures.Crystals`) without copying. Saved as one `.npz`
with a JSON header holding the schema version, the oracle version that produced the DOS (or "mp"
for real data) and free metadata. Loading a file written by another schema or oracle version
fails loudly.
"""

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxdos.structures import Crystals

__all__ = ["SCHEMA_VERSION", "Records", "save_records", "load_records", "concat"]

SCHEMA_VERSION = 1


class Records(NamedTuple):
    """M crystals with their per-atom DOS on the paper's grid.

    Fields:
        atomic_numbers: `[M, 20]` int32, Z per atom, 0 = padding (atoms first, contiguous).
        frac_coords: `[M, 20, 3]` float32 in [0, 1).
        lattice: `[M, 3, 3]` float32, rows are lattice vectors in Angstrom (cart = frac @ lattice).
        num_atoms: `[M]` int32 in [1, 20].
        dos: `[M, 256]` float32 states / eV / atom on [E_F - 10, E_F + 10] eV.
        efermi: `[M]` float32 absolute Fermi level in eV (oracle or DFT reference).
        scale: `[M]` float32, K = max(dos).
        band_gap: `[M]` float32 eV (Algorithm 1 on `dos`).
        dos_at_fermi: `[M]` float32 states / eV / atom.
        integrated_dos: `[M]` float32 states / atom.
        ids: `[M]` str, stable identifiers (e.g. "world-v1-000123" or an MP id).
    """

    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lattice: np.ndarray
    num_atoms: np.ndarray
    dos: np.ndarray
    efermi: np.ndarray
    scale: np.ndarray
    band_gap: np.ndarray
    dos_at_fermi: np.ndarray
    integrated_dos: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def crystals(self) -> Crystals:
        """The crystal fields as the shared padded layout (the same arrays, not copies)."""
        return Crystals(self.atomic_numbers, self.frac_coords, self.lattice, self.num_atoms)

    def take(self, index) -> "Records":
        """A sub-selection by integer index array or slice (copies nothing it need not)."""
        return Records(*(f[index] for f in self))


def _replace(self: Records, **fields) -> Records:
    """`Records._replace`: rebuild through the constructor (see below)."""
    return Records(**{**self._asdict(), **fields})


# NamedTuple._replace checks len(result) == number of fields, which the record-count __len__ breaks
# (TypeError "Expected 11 arguments, got M"); typing forbids overriding it in the class body.
Records._replace = _replace


def concat(parts: list[Records]) -> Records:
    """Concatenate record sets along M."""
    return Records(*(np.concatenate(fs, axis=0) for fs in zip(*parts, strict=True)))


def save_records(path, records: Records, *, oracle_version: str, meta: dict | None = None) -> None:
    """Write records and a versioned header to `path` (.npz)."""
    header = {
        "schema_version": SCHEMA_VERSION,
        "oracle_version": oracle_version,
        "meta": meta or {},
    }
    arrays = records._asdict()
    arrays["ids"] = np.asarray(arrays["ids"]).astype(str)
    np.savez_compressed(path, __header__=np.asarray(json.dumps(header)), **arrays)


def load_records(path, *, oracle_version: str | None) -> tuple[Records, dict]:
    """Read records written by `save_records`.

    Args:
        path: the .npz file.
        oracle_version: the version the caller expects; None accepts any (tools that only inspect).

    Returns:
        (records, header).

    Raises:
        ValueError: if the schema or oracle version differs from what is expected, naming both.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
        if header.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{path}: schema_version {header.get('schema_version')} != {SCHEMA_VERSION} "
                "(written by another jaxdos version; regenerate the data set)"
            )
        if oracle_version is not None and header.get("oracle_version") != oracle_version:
            raise ValueError(
                f"{path}: oracle_version {header.get('oracle_version')!r} != expected "
                f"{oracle_version!r}; the DOS were computed by another oracle, regenerate them"
            )
        records = Records(**{name: z[name] for name in Records._fields})
    return records, header
