"""Stage 2 alone: crystals from a source of DOS (the counterpart of `mattergen-generate`).

    SOURCE -> [S, 256] conditioning DOS -> CDOSGen (crystals_per_dos each) -> oracle -> outputs

SOURCE is one of (`load_source`):
- a folder written by `sample_dos` (its `index.json` and shards): the accepted DOS;
- a records `.npz` (`jaxdos.data.records`, e.g. what `load-mp` writes): its `dos` rows;
- a folder of MP-style pymatgen `Dos` / `CompleteDos` JSON: resampled onto the paper's grid by
  the MP loader (`jaxdos.data.mp.load_mp_dir`, which needs each file's structure for the per-atom
  normalisation);
- a folder of CIF files: their DOS computed by the job's scorer (the world's oracle by default).

`run(GenerateConfig(...), out)` writes what `design` writes (`writers.write_generation`): every
crystal as CIF (+ `crystals.extxyz`), `crystals.csv` / `.md` with the source DOS of each crystal
and the oracle's properties, `dos_pairs.png`, `properties.png`, `summary.json`, `run.json`; the
source is read and checked before the run folder is claimed.
"""

import dataclasses
from pathlib import Path

import numpy as np

from jaxdos.crystal.generate import check_condition_dos
from jaxdos.pipeline.jobs.design import reference_dos, summarise
from jaxdos.pipeline.rundir import RunDir
from jaxdos.pipeline.score import scorer_name
from jaxdos.pipeline.screening import CrystalSettings, crystal_stage
from jaxdos.pipeline.writers import write_generation

__all__ = ["GenerateConfig", "load_source", "run"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerateConfig(CrystalSettings):
    """One stage-2 run (recorded in run.json), with the inherited CDOSGen settings.

    Attributes:
        source: an accepted-DOS folder, a records .npz, a folder of DOS JSON or of CIF files.
        best: crystals shown in the DOS-pair figure (>= 1).
        seed: the run seed.
    """

    source: str
    best: int = 6
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.best < 1:
            raise ValueError(f"best: expected >= 1, got {self.best}")


def _kind(path: Path) -> str:
    if path.is_file() and path.suffix == ".npz":
        return "records"
    if not path.is_dir():
        raise ValueError(
            f"source: {path}: expected a records .npz or a folder (sample_dos output, DOS JSON "
            "or CIF files)"
        )
    if (path / "index.json").is_file() or any(path.glob("shard-*")):
        return "accepted"
    if any(path.glob("*.cif")):
        return "cif"
    if any(path.rglob("*.json")) or any(path.rglob("*.json.gz")):
        return "dos_json"
    raise ValueError(f"source: {path}: holds no index.json, *.cif or *.json DOS files")


def load_source(source, scorer=None) -> tuple[np.ndarray, list[str], str]:
    """(`[S, 256]` DOS, a name per row, the source kind), checked (a CIF folder's DOS by `scorer`,
    None: the oracle): ValueError names the source
    (and the file) for a DOS of the wrong length, NaN or negative values, an unreadable CIF or
    one of more than MAX_ATOMS atoms."""
    path = Path(source)
    kind = _kind(path)
    if kind == "records":
        from jaxdos.data.records import load_records

        try:
            records, _ = load_records(path, oracle_version=None)
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"source: {path}: not a jaxdos records file ({err})") from None
        dos, names = records.dos, [str(i) for i in records.ids]
    elif kind == "accepted":
        from jaxdos.sampler.rejection import load_accepted

        try:
            acc = load_accepted(path)
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"source: {path}: not a finished sample_dos run ({err})") from None
        dos, names = acc.dos, [f"dos_{int(i):06d}" for i in acc.index]
    elif kind == "cif":
        dos, names = reference_dos(sorted(path.glob("*.cif")), "source", scorer)
    else:
        from jaxdos.data.mp import load_mp_dir

        records, report = load_mp_dir(path, progress=False)
        if len(records) == 0:
            raise ValueError(
                f"source: {path}: no usable DOS file (skipped: {report.skipped}; first: "
                f"{report.examples[:1]})"
            )
        dos, names = records.dos, [str(i) for i in records.ids]
    if len(dos) == 0:
        raise ValueError(f"source: {path}: holds no DOS")
    try:
        dos = check_condition_dos(dos, len(dos))
    except ValueError as err:
        raise ValueError(f"source: {path}: {err}") from None
    return dos, names, kind


def run(cfg: GenerateConfig, out, *, resume: bool = False, force: bool = False) -> dict:
    """Generate into `out`; returns the summary (also written as summary.json)."""
    dos, names, kind = load_source(cfg.source, cfg.scorer_model())
    cfg.check_crystal_model()
    rd = RunDir(out, dataclasses.asdict(cfg), resume=resume, force=force)
    stage = crystal_stage(rd, "crystals", dos=dos, cfg=cfg, seed=cfg.seed)
    stage["conditioning"] = dos
    # No targets, so no verdict columns: validity and the oracle's properties are the table.
    verdicts = {}
    summary = {
        "source": str(cfg.source),
        "source_kind": kind,
        "dos": len(dos),
        "scorer": scorer_name(cfg.scorer),
    }
    if rd.main:
        written = write_generation(
            rd.path, stage, source_ids=names, verdicts=verdicts, intervals={}, best=cfg.best
        )
        summary.update(summarise(stage, verdicts, written))
    rd.write_json("summary.json", summary)
    rd.barrier("generate-written")
    return summary
