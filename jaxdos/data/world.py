"""The offline world `jaxdos-world-v1`: prototype crystals scored by the tight-binding oracle.

Crystal i of the world with seed s is `families.generate_crystal(s, i)`; its split is drawn from its
own generator (90 / 5 / 5 train / val / test), so any index range can be generated, resumed or
extended without changing earlier records. Files are `Records` .npz (see `records.py`) whose header
meta holds the world name, seed, the per-record split letters ("t", "v", "s") and families.
"""

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from jaxdos.data.families import generate_crystal, to_crystals
from jaxdos.data.records import Records, load_records
from jaxdos.kernels.oracle import ORACLE_VERSION, oracle_dos
from jaxdos.kernels.properties import all_properties
from jaxdos.structures import MAX_ATOMS

__all__ = [
    "WORLD_NAME",
    "SPLITS",
    "SUBSET_FILE",
    "split_of",
    "generate_records",
    "load_world",
    "load_world_file",
    "load_world_tagged",
    "train_val_records",
    "records_source",
    "realism_stats",
]

WORLD_NAME = "jaxdos-world-v1"
SPLITS = {"train": "t", "val": "v", "test": "s"}
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
SUBSET_FILE = "world-v1-subset.npz"


def split_of(seed: int, index: int) -> str:
    """Split letter of record `index`: its own generator, so splits never depend on chunking."""
    u = np.random.default_rng([seed, index, 1]).random()
    return "t" if u < SPLIT_FRACTIONS[0] else ("v" if u < sum(SPLIT_FRACTIONS[:2]) else "s")


def generate_records(start: int, stop: int, seed: int = 0) -> tuple[Records, dict]:
    """Generate and score world records [start, stop).

    Returns:
        (records, meta) with meta holding "split" (a string, one letter per record) and
        "family" (a list of family tags).
    """
    if not 0 <= start < stop:
        raise ValueError(f"start, stop: expected 0 <= start < stop, got {start}, {stop}")
    crystals = [generate_crystal(seed, i, MAX_ATOMS) for i in range(start, stop)]
    z, frac, lat, n = to_crystals(crystals, MAX_ATOMS)
    dos, efermi = oracle_dos(z, frac, lat, n)
    props = {k: np.asarray(v, np.float32) for k, v in all_properties(dos).items()}
    records = Records(
        atomic_numbers=z,
        frac_coords=frac,
        lattice=lat,
        num_atoms=n,
        dos=dos.astype(np.float32),
        efermi=efermi.astype(np.float32),
        scale=dos.max(axis=1).astype(np.float32),
        band_gap=props["band_gap"],
        dos_at_fermi=props["dos_at_fermi"],
        integrated_dos=props["integrated_dos"],
        ids=np.array([f"world-v1-{i:06d}" for i in range(start, stop)]),
    )
    meta = {
        "world": WORLD_NAME,
        "seed": seed,
        "split": "".join(split_of(seed, i) for i in range(start, stop)),
        "family": [c.family for c in crystals],
    }
    return records, meta


def load_world_file(path, split: str = "all") -> tuple[Records, dict]:
    """Read a world file (checking the oracle version) and select a split.

    Raises:
        ValueError: for an unknown split, a file that is not a world file, or another oracle.
    """
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split: expected one of {(*SPLITS, 'all')}, got {split!r}")
    records, header = load_records(path, oracle_version=ORACLE_VERSION)
    meta = header.get("meta", {})
    letters = meta.get("split")
    if meta.get("world") != WORLD_NAME or letters is None or len(letters) != len(records):
        raise ValueError(f"{path}: not a {WORLD_NAME} file (meta world/split missing or wrong)")
    if split == "all":
        return records, meta
    index = np.flatnonzero(np.frombuffer(letters.encode(), dtype="S1") == SPLITS[split].encode())
    return records.take(index), meta


def load_world(split: str = "all", path=None) -> Records:
    """The world's records for a split; by default the committed ~2 000-record subset.

    Args:
        split: "train", "val", "test" or "all".
        path: a file written by `experiments.make_world` (default: the packaged subset).
    """
    return _read(path, split)[0]


def load_world_tagged(path=None) -> tuple[Records, np.ndarray, np.ndarray | None]:
    """All records of a world file (default: the packaged subset), their split letters `[M]`
    ("t", "v", "s"; see `SPLITS`) and family tags `[M]` (None if the file has none)."""
    records, meta = _read(path, "all")
    family = meta.get("family")
    return records, np.array(list(meta["split"])), None if family is None else np.array(family)


def _read(path, split: str) -> tuple[Records, dict]:
    if path is None:
        with resources.as_file(resources.files("jaxdos").joinpath("assets", SUBSET_FILE)) as p:
            return load_world_file(Path(p), split)
    return load_world_file(path, split)


def train_val_records(records=None, seed: int = 0) -> tuple[Records, Records]:
    """Training and validation records: the world's splits, or a user `Records` .npz of which a
    seeded 10 % (at least one record) is held out for validation."""
    if records is None:
        return load_world("train"), load_world("val")
    recs, _ = load_records(records, oracle_version=None)
    perm = np.random.default_rng(seed).permutation(len(recs))
    n_val = max(1, len(recs) // 10)
    return recs.take(np.sort(perm[n_val:])), recs.take(np.sort(perm[:n_val]))


def records_source(records=None) -> dict:
    """What `train_val_records(records)` trains on, for a model's meta: the world subset, or the
    records file with its oracle version, record count and sha256 (so a model names its data)."""
    if records is None:
        return {"records": "world", "name": WORLD_NAME}
    path = Path(records)
    recs, header = load_records(path, oracle_version=None)
    return {
        "records": str(path.resolve()),
        "oracle_version": header.get("oracle_version"),
        "num_records": len(recs),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def realism_stats(records: Records) -> dict:
    """The MP-likeness statistics of a record set (host numpy; `docs/world/card.md` lists them
    beside their targets).

    Metal: DOS(E_F) above the tokeniser's zero cut (`filters.ZERO_TOL` * K), the same rule the
    TCM filter uses. TCM-like: `filters.screen_tcm` (gap >= 3.1 eV below E_F, DOS(E_F) > 0).
    """
    from jaxdos.kernels.filters import screen_tcm

    tcm = screen_tcm(np.asarray(records.dos))
    metal = np.asarray(tcm.metallic)
    gap = records.band_gap[~metal]
    n = len(records)
    return {
        "n": n,
        "metal_fraction": float(metal.mean()),
        "metal_to_gapped": f"1 : {(~metal).sum() / max(metal.sum(), 1):.2f}",
        "gap_quantiles_eV": np.percentile(gap, [10, 50, 90]).round(2).tolist() if gap.size else [],
        "gap_fraction_0_6_eV": float(((gap > 0) & (gap <= 6)).mean()) if gap.size else 0.0,
        "dos_max_quantiles": np.percentile(records.scale, [5, 50, 95]).round(2).tolist(),
        "tcm_like": int(np.sum(tcm.is_tcm)),
        "tcm_like_fraction": float(np.mean(tcm.is_tcm)),
        "tcm_type1": int(np.sum(tcm.type1)),
        "tcm_type2": int(np.sum(tcm.type2)),
        "atoms_quantiles": np.percentile(records.num_atoms, [5, 50, 95]).tolist(),
        "n_elements": int(len(np.unique(records.atomic_numbers[records.atomic_numbers > 0]))),
    }
