"""Real-data loaders: MP-style pymatgen `Dos` / `CompleteDos` JSON + structures -> `Records`.

Input files are what `mp-api` users save: `json.dump(dos, f, cls=MontyEncoder)` (or monty's
`dumpfn`), i.e. `Dos.as_dict()` / `CompleteDos.as_dict()`, optionally gzipped. Energies and
`efermi` are absolute eV; `densities` maps a spin ("1", "-1") to states / eV per cell. A
`CompleteDos` carries its structure; a plain `Dos` in `<id>.json` is paired by id with
`<id>.cif` or `<id>.structure.json` (a `Structure.as_dict()`) in the structure folder.

Processing follows the paper (Section 3 and Table 6): keep files whose DOS and E_F are present,
with <= 20 atoms and no excluded element (Tc, Pm, Z >= 84); sum spin channels, resample onto the
Fermi-centred 256-bin grid (`jaxdos.kernels.grid.resample_dos`, conserving states) and divide by
the number of atoms; derive K and the three properties with `jaxdos.kernels`.

The JSON is parsed here rather than with `Dos.from_dict` so that each malformed file gets a
precise skip reason instead of a KeyError deep inside pymatgen; a long load never crashes.
"""

import concurrent.futures
import dataclasses
import functools
import gzip
import json
import multiprocessing
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdos.data.records import Records
from jaxdos.kernels.grid import N_BINS, resample_dos
from jaxdos.kernels.properties import all_properties
from jaxdos.kernels.tokenizer import scale_of
from jaxdos.structures import MAX_ATOMS, Crystals, from_structures, is_allowed

try:  # JSON decoding dominates a load (CompleteDos files carry every projected DOS); orjson is ~3x
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - optional speed-up
    _loads = json.loads

__all__ = [
    "MP_ORACLE_VERSION",
    "SKIP_REASONS",
    "MPEntry",
    "LoadReport",
    "parse_mp_file",
    "load_mp_dir",
    "records_from_entries",
]

MP_ORACLE_VERSION = "mp"

# Every skipped file gets exactly one of these (the first check it fails, in this order).
SKIP_REASONS = (
    "unreadable_json",  # not JSON / not gzip / I/O error
    "not_a_dos",  # JSON without a Dos-like "@class" / energies / densities
    "missing_efermi",  # efermi absent, null or non-finite
    "bad_energies",  # not 1-D finite, < 2 values, or not strictly increasing
    "empty_densities",  # no spin channel, zero-length or mismatched arrays, or non-finite values
    "zero_dos_in_window",  # no states at all in [E_F - 10, E_F + 10]
    "missing_structure",  # plain Dos without a readable paired structure
    "disordered_structure",  # partial occupancies cannot be written as atoms
    "too_many_atoms",  # more than 20 sites (Table 6)
    "excluded_element",  # outside `jaxdos.structures.ALLOWED_Z`: Tc, Pm or Z >= 84 (Table 6)
    "unexpected_error",  # anything else raised while parsing (reported, never fatal)
)
_DOS_CLASSES = ("Dos", "CompleteDos", "LobsterCompleteDos")


class _Skip(Exception):
    """Internal: a file is skipped for `reason` (one of SKIP_REASONS)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True, kw_only=True)
class MPEntry:
    """One accepted file, before property derivation.

    Fields:
        id: identifier (file stem, e.g. "mp-149").
        crystal: the structure as one row of `jaxdos.structures.Crystals` (padded to MAX_ATOMS).
        dos: `[L]` float64 states / eV / atom on the Fermi-centred grid.
        efermi: absolute Fermi level (eV).
    """

    id: str
    crystal: Crystals
    dos: np.ndarray
    efermi: float


@dataclasses.dataclass(kw_only=True)
class LoadReport:
    """Counts of a directory load.

    Fields:
        total: DOS files seen.
        stages: Table-6-style pass counts: "dos_efermi" (DOS and E_F usable), "max_atoms"
            (<= 20 atoms, among files whose structure could be read), "elements" (no excluded
            element, same population), "all" (accepted records). Each single filter is counted
            independently of the others, as in the paper's table.
        skipped: count per reason in SKIP_REASONS (zeros included).
        examples: up to `max_examples` (path, reason, message) triples for inspection.
    """

    total: int = 0
    stages: dict = dataclasses.field(default_factory=dict)
    skipped: dict = dataclasses.field(default_factory=dict)
    examples: list = dataclasses.field(default_factory=list)

    def table(self) -> str:
        """The filter table as text (stage, count, percentage of all files)."""
        denom = max(self.total, 1)
        rows = [("Files read", self.total)]
        rows += [
            ("Filter DOS/Fermi level unavailable", self.stages.get("dos_efermi", 0)),
            ("Filter max atoms > 20", self.stages.get("max_atoms", 0)),
            (
                "Filter excluded elements (Z not in {43, 61}, Z <= 83)",
                self.stages.get("elements", 0),
            ),
            ("All filters combined", self.stages.get("all", 0)),
        ]
        lines = [f"{'Stage':<58}{'Count':>9}{'%':>8}"]
        lines += [f"{name:<58}{n:>9}{100.0 * n / denom:>7.1f}%" for name, n in rows]
        lines.append("Skipped by reason:")
        lines += [f"  {r:<56}{n:>9}" for r, n in self.skipped.items()]
        return "\n".join(lines)


def _read_json(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        return _loads(f.read())


def _file_id(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".json", ".dos"):
        name = name.removesuffix(suffix)
    return name


def _parse_dos(d) -> tuple[np.ndarray, np.ndarray, float]:
    """(energies [M], summed densities [M], efermi) from a Dos-like dict, or raise _Skip."""
    if not isinstance(d, dict) or d.get("@class", "Dos") not in _DOS_CLASSES:
        raise _Skip("not_a_dos", f"@class {d.get('@class') if isinstance(d, dict) else None!r}")
    if "energies" not in d or "densities" not in d:
        raise _Skip("not_a_dos", "no 'energies'/'densities' keys")
    efermi = d.get("efermi")
    if not isinstance(efermi, int | float) or not np.isfinite(efermi):
        raise _Skip("missing_efermi", f"efermi = {efermi!r}")
    try:
        e = np.asarray(d["energies"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise _Skip("bad_energies", f"energies not numeric: {err}") from None
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)):
        raise _Skip("bad_energies", f"energies: need >= 2 finite values, got shape {e.shape}")
    if not np.all(np.diff(e) > 0):
        raise _Skip("bad_energies", "energies are not strictly increasing")
    dens = d["densities"]
    if not isinstance(dens, dict) or not dens:
        raise _Skip("empty_densities", "densities: no spin channel")
    total = np.zeros_like(e)
    for spin, values in dens.items():
        try:
            v = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise _Skip("empty_densities", f"spin {spin}: not numeric: {err}") from None
        if v.shape != e.shape or not np.all(np.isfinite(v)):
            raise _Skip("empty_densities", f"spin {spin}: shape {v.shape} vs energies {e.shape}")
        total += v  # spin channels are summed (per-atom total DOS, as in the paper)
    return e, total, float(efermi)


def _load_structure(d, dos_path: Path, structure_dir: Path | None):
    """The structure of a CompleteDos dict, else the paired `<id>.cif` / `<id>.structure.json`."""
    from pymatgen.core import Structure  # heavy import, only needed on this path

    if not isinstance(d, dict):
        raise _Skip("missing_structure", "top-level JSON is not an object")
    if isinstance(d.get("structure"), dict):
        try:
            return Structure.from_dict(d["structure"])
        except Exception as err:  # noqa: BLE001 - any malformed dict is a skip, never a crash
            raise _Skip("missing_structure", f"embedded structure unreadable: {err}") from None
    folder = structure_dir if structure_dir is not None else dos_path.parent
    sid = _file_id(dos_path)
    for candidate in (folder / f"{sid}.structure.json", folder / f"{sid}.cif"):
        if candidate.exists():
            try:
                if candidate.suffix == ".cif":
                    return Structure.from_file(str(candidate))
                return Structure.from_dict(_read_json(candidate))
            except Exception as err:  # noqa: BLE001
                raise _Skip("missing_structure", f"{candidate.name} unreadable: {err}") from None
    raise _Skip("missing_structure", f"no {sid}.structure.json or {sid}.cif in {folder}")


def _structure_z(structure) -> np.ndarray:
    """Z per site, for the Table-6 flags (dummy species, which have no element, count as 0)."""
    if not structure.is_ordered:
        raise _Skip("disordered_structure", "structure has partial occupancies")
    if len(structure) == 0:
        raise _Skip("missing_structure", "structure has no sites")
    zs = [getattr(site.specie, "Z", 0) for site in structure]
    return np.array([zi if isinstance(zi, int) and 1 <= zi <= 118 else 0 for zi in zs], np.int32)


def _filters(z: np.ndarray) -> tuple[bool, bool]:
    # Z < 1 are dummy species (pymatgen's "X"): not atoms, and never allowed.
    return z.size <= MAX_ATOMS, bool(np.all(is_allowed(z)))


def parse_mp_file(path, *, structure_dir=None) -> tuple[MPEntry | None, dict]:
    """Parse one DOS file; never raises on malformed content.

    Args:
        path: a `.json` or `.json.gz` holding `Dos.as_dict()` or `CompleteDos.as_dict()`.
        structure_dir: where to find paired structures of plain Dos files (default: beside it).

    Returns:
        (entry or None, info) where info has "reason" (None if accepted, else one of SKIP_REASONS),
        "message", and the independent Table-6 flags "dos_ok", "atoms_ok", "elements_ok"
        (None when the file got no far enough to evaluate that filter).
    """
    path = Path(path)
    info = {"reason": None, "message": "", "dos_ok": None, "atoms_ok": None, "elements_ok": None}
    reason = None
    try:
        try:
            d = _read_json(path)
        except (OSError, UnicodeDecodeError, ValueError, EOFError) as err:
            raise _Skip("unreadable_json", f"{type(err).__name__}: {err}") from None
        try:
            e, dens, efermi = _parse_dos(d)
            info["dos_ok"] = True
        except _Skip as skip:
            info["dos_ok"] = False
            reason = skip  # remember, but still evaluate the structure filters for the table
        if info["dos_ok"]:
            dos = resample_dos(e, dens, efermi, 1)
            if not np.any(dos > 0):
                info["dos_ok"] = False
                reason = _Skip("zero_dos_in_window", f"no states within 10 eV of E_F={efermi}")
        structure = _load_structure(d, path, None if structure_dir is None else Path(structure_dir))
        z = _structure_z(structure)
        info["atoms_ok"], info["elements_ok"] = _filters(z)
        if reason is not None:
            raise reason
        if not info["atoms_ok"]:
            raise _Skip("too_many_atoms", f"{z.size} atoms > {MAX_ATOMS}")
        if not info["elements_ok"]:
            raise _Skip("excluded_element", f"elements Z={sorted(set(z.tolist()))}")
    except Exception as err:  # noqa: BLE001 - a long load must survive any one bad file
        skip = err if isinstance(err, _Skip) else _Skip("unexpected_error", repr(err))
        # A DOS failure outranks a structure failure found while filling in the table flags.
        skip = reason if reason is not None else skip
        info["reason"], info["message"] = skip.reason, str(skip)
        return None, info
    entry = MPEntry(
        id=_file_id(path),
        crystal=from_structures([structure]),
        dos=dos / z.size,  # per-atom normalisation (Appendix A)
        efermi=efermi,
    )
    return entry, info


def records_from_entries(entries: list[MPEntry]) -> Records:
    """Stack accepted entries and derive K and the three properties (float32)."""
    m = len(entries)
    if m:
        crystals = Crystals(
            *(np.concatenate(f) for f in zip(*(e.crystal for e in entries), strict=True))
        )
    else:
        crystals = from_structures([])
    dos = np.asarray([e.dos for e in entries], np.float32).reshape(m, N_BINS)
    props = jax.jit(all_properties)(jnp.asarray(dos))  # one compile, not one per primitive
    return Records(
        atomic_numbers=crystals.atomic_numbers,
        frac_coords=crystals.frac_coords,
        lattice=crystals.lattice,
        num_atoms=crystals.num_atoms,
        dos=dos,
        efermi=np.asarray([e.efermi for e in entries], np.float32).reshape(m),
        scale=np.asarray(scale_of(jnp.asarray(dos)), np.float32),
        band_gap=np.asarray(props["band_gap"], np.float32),
        dos_at_fermi=np.asarray(props["dos_at_fermi"], np.float32),
        integrated_dos=np.asarray(props["integrated_dos"], np.float32),
        ids=np.asarray([e.id for e in entries], dtype=str).reshape(m),
    )


def _dos_files(src: Path) -> list[Path]:
    files = [p for p in src.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz"))]
    # Paired structure files are inputs of the DOS files, not DOS files themselves.
    files = [p for p in files if not p.name.endswith((".structure.json", ".structure.json.gz"))]
    return sorted(files)


def load_mp_dir(
    src,
    *,
    structure_dir=None,
    progress: bool = True,
    max_examples: int = 20,
    workers: int = 0,
) -> tuple[Records, LoadReport]:
    """Load every DOS file under `src` (recursively, sorted by path) into `Records`.

    Args:
        src: folder of `*.json` / `*.json.gz` DOS files (`*.structure.json` are structures).
        structure_dir: folder of paired structures for plain Dos files (default: beside each file).
        progress: show a tqdm progress bar.
        max_examples: how many skipped files to keep in `report.examples`.
        workers: parse files in this many spawned processes (0: in this process). Output and
            report are identical either way; worth it for large folders on many cores.

    Returns:
        (records, report); records are in path order and may be empty.

    Raises:
        ValueError: if `src` is not a directory.
    """
    src = Path(src)
    if not src.is_dir():
        raise ValueError(f"src: expected a directory of DOS JSON files, got {src}")
    if workers < 0:
        raise ValueError(f"workers: expected >= 0, got {workers}")
    files = _dos_files(src)
    entries, skipped, stages = [], Counter(), Counter()
    report = LoadReport(total=len(files))
    parse = functools.partial(parse_mp_file, structure_dir=structure_dir)
    pool = None
    if workers > 0:
        # spawn, not fork: forking a process that already runs JAX's threads can deadlock.
        ctx = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
        results = pool.map(parse, files, chunksize=8)  # ordered, so the output is deterministic
    else:
        results = map(parse, files)
    bar = tqdm(
        zip(files, results, strict=True),
        total=len(files),
        desc="MP DOS files",
        unit="file",
        disable=not progress,
    )
    for path, (entry, info) in bar:
        stages["dos_efermi"] += bool(info["dos_ok"])
        stages["max_atoms"] += bool(info["atoms_ok"])
        stages["elements"] += bool(info["elements_ok"])
        if entry is None:
            skipped[info["reason"]] += 1
            if len(report.examples) < max_examples:
                report.examples.append((str(path), info["reason"], info["message"]))
            bar.set_postfix(skipped=sum(skipped.values()), refresh=False)
        else:
            entries.append(entry)
    if pool is not None:
        pool.shutdown()
    stages["all"] = len(entries)
    report.stages = dict(stages)
    report.skipped = {r: skipped.get(r, 0) for r in SKIP_REASONS}
    return records_from_entries(entries), report
