"""Inverse design from property targets to crystal files: the whole pipeline as one job.

    targets (band gap, DOS(E_F), N(E_F), TCM / thermoelectric filters)
        -> DOSSampler + prior + guidance + rejection: ceil(crystals / crystals_per_dos) DOS
        -> CDOSGen, crystals_per_dos crystals per accepted DOS (classifier-free guidance)
        -> the world's tight-binding oracle on every crystal -> each target's verdict

`run(DesignConfig(...), out)` fills the run folder `out` (`jaxdos.pipeline.rundir`): the accepted
DOS in `dos/` (the `sample_dos` layout), the crystal chunks in `stages/`, every crystal in
`structures/` (CIF, `_hit` in the name when it meets every target, and `crystals.extxyz`),
`crystals.csv` / `.md`, `dos_pairs.png`, `properties.png`, `summary.json` and `run.json`
(`jaxdos.pipeline.writers.write_generation`). A killed run continues with `resume=True`: both
stages are chunked and seeded by chunk, so the result equals an uninterrupted run.

Targets are the strings of the command line (`VALUE`, `VALUE+-TOL`, `LO:HI`; parsed by
`jaxdos.sampler.targets.parse_target`), so run.json records them as typed. Scores come from
`scorer`: the world's oracle (default) or a learned DOS predictor directory.
"""

import dataclasses
import math

import numpy as np
from tqdm import tqdm

from jaxdos.pipeline.dos import sample_dos
from jaxdos.pipeline.models import load_checked
from jaxdos.pipeline.rundir import RunDir
from jaxdos.pipeline.score import scorer_name, target_verdicts
from jaxdos.pipeline.screening import CrystalSettings, crystal_stage
from jaxdos.pipeline.writers import write_generation
from jaxdos.sampler.checkpoint import KIND as DOSSAMPLER
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.targets import FILTER_NAMES, Targets, Thermoelectric, parse_target

__all__ = ["DesignConfig", "FIELDS", "run", "summarise"]

# config field -> the property it targets (the fields are the flags' names: --band-gap, --dos-ef)
FIELDS = {"band_gap": "band_gap", "dos_ef": "dos_at_fermi", "n_ef": "integrated_dos"}
_RENAME = {**{v: k for k, v in FIELDS.items()}, "filters": "filter"}


def _renamed(err: ValueError) -> ValueError:
    """`Targets`' error with its leading property names turned into this config's fields."""
    head, sep, rest = str(err).partition(":")
    if not sep:
        return err
    names = [_RENAME.get(n.strip().split(".")[0], n.strip()) for n in head.split(",")]
    return ValueError(f"{', '.join(names)}:{rest}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DesignConfig(CrystalSettings):
    """One design run (all recorded in run.json), with the inherited CDOSGen settings.

    Attributes:
        band_gap, dos_ef, n_ef: targets on E_BG (eV), DOS(E_F) (states/eV/atom) and N(E_F)
            (states/atom) as `VALUE` (the paper's ±10 %), `VALUE+-TOL` or `LO:HI`; None: free.
        filter: "tcm1", "tcm2" or "te" (the kernels' TCM Type 1 / 2 and thermoelectric filters).
        te_reference: a CIF file whose oracle DOS is the thermoelectric filter's reference.
        crystals: crystals wanted in total (>= 1); the DOS stage accepts
            ceil(crystals / crystals_per_dos) spectra.
        proposals: DOSSampler proposal budget (None: 1000 per accepted DOS).
        dos_steps: DOSSampler denoising steps (>= 1; the paper preset is 128).
        dos_batch: DOSSampler proposals per jitted batch (>= 1).
        gamma: stage 1's classifier-guidance strength (>= 0).
        dos_model: a "dossampler" model directory (None: the embedded default).
        best: crystals shown in the DOS-pair figure (>= 1).
        seed: the run seed.
    """

    band_gap: str | None = None
    dos_ef: str | None = None
    n_ef: str | None = None
    filter: str | None = None
    te_reference: str | None = None
    crystals: int = 16
    proposals: int | None = None
    dos_steps: int = 16
    dos_batch: int = 128
    gamma: float = 1.0
    dos_model: str | None = None
    best: int = 6
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        for name in ("crystals", "dos_steps", "dos_batch", "best"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.proposals is not None and self.proposals < self.accept:
            raise ValueError(
                f"proposals: expected >= {self.accept} (DOS to accept), got {self.proposals}"
            )
        if not (math.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"gamma: expected a finite value >= 0, got {self.gamma}")
        if self.filter is not None and self.filter not in FILTER_NAMES:
            raise ValueError(f"filter: expected one of {sorted(FILTER_NAMES)}, got {self.filter!r}")
        if (self.filter == "te") != (self.te_reference is not None):
            raise ValueError("te_reference: expected a CIF file exactly when filter is 'te'")
        if all(getattr(self, f) is None for f in (*FIELDS, "filter")):
            raise ValueError(
                "targets: expected at least one target (band_gap, dos_ef, n_ef or filter: "
                "--band-gap, --dos-ef, --n-ef, --filter)"
            )
        # Every rule of `Targets` is checked now; the TE reference's DOS comes later (oracle).
        self.targets(np.zeros(256, np.float32))

    @property
    def accept(self) -> int:
        """Accepted DOS the run asks stage 1 for."""
        return -(-self.crystals // self.crystals_per_dos)

    def targets(self, te_reference_dos=None) -> Targets:
        """The `Targets` of these fields (the TE filter on `te_reference_dos`, default the oracle
        DOS of `te_reference`). ValueError names the fields."""
        try:
            props = tuple(
                parse_target(prop, getattr(self, field))
                for field, prop in FIELDS.items()
                if getattr(self, field) is not None
            )
        except ValueError as err:
            raise _renamed(err) from None
        filters = ()
        if self.filter == "te":
            if te_reference_dos is None:
                te_reference_dos = reference_dos(
                    self.te_reference, "te_reference", self.scorer_model()
                )[0][0]
            filters = (Thermoelectric(reference=te_reference_dos),)
        elif self.filter is not None:
            filters = (FILTER_NAMES[self.filter](),)
        try:
            return Targets(properties=props, filters=filters)
        except ValueError as err:
            raise _renamed(err) from None


def reference_dos(paths, field: str, scorer=None) -> tuple[np.ndarray, list[str]]:
    """`[R, 256]` DOS of CIF files by `scorer` (None: the oracle) and their names; ValueError
    names `field` and the file when pymatgen cannot read one, it has more than MAX_ATOMS atoms or
    the oracle's structural check rejects it."""
    from pathlib import Path

    from pymatgen.core import Structure

    from jaxdos.pipeline.score import score
    from jaxdos.structures import MAX_ATOMS

    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    structures = []
    for p in paths:
        try:
            s = Structure.from_file(str(p))
        except Exception as err:  # noqa: BLE001 - pymatgen raises many types on a bad file
            raise ValueError(
                f"{field}: {p}: pymatgen cannot read it ({type(err).__name__})"
            ) from None
        if not 1 <= len(s) <= MAX_ATOMS:
            raise ValueError(f"{field}: {p}: {len(s)} atoms, expected 1..{MAX_ATOMS}")
        structures.append(s)
    s = score(structures, scorer=scorer)
    for p, ok, why in zip(paths, s.valid, s.reason, strict=True):
        if not ok:
            raise ValueError(f"{field}: {p}: the oracle cannot score it ({why})")
    return s.dos, [Path(p).stem for p in paths]


def summarise(stage: dict, verdicts: dict, written: dict) -> dict:
    """The run's counts: crystals, valid, each verdict's hits, the figure's rows."""
    return {
        "crystals": len(stage["valid"]),
        "valid": int(np.sum(stage["valid"])),
        "hits": {k: int(np.sum(v)) for k, v in verdicts.items()},
        "best": written["best"],
        "unique": stage["unique"],
        "novel": stage["novel"],
    }


def run(cfg: DesignConfig, out, *, resume: bool = False, force: bool = False) -> dict:
    """Run the design into `out`; returns the summary (also written as summary.json)."""
    # Everything a user can get wrong is checked before the folder is claimed.
    targets = cfg.targets()
    sampler = load_checked("dos_model", cfg.dos_model, DOSSAMPLER)
    cfg.check_crystal_model()
    rd = RunDir(out, dataclasses.asdict(cfg), resume=resume, force=force)
    folder = rd.path / "dos"
    acc = sample_dos(
        targets,
        accept=cfg.accept,
        proposals=cfg.proposals,
        seed=cfg.seed,
        out=folder,
        resume=folder.exists(),
        batch_size=cfg.dos_batch,
        gamma=cfg.gamma,
        sampling_config=DOSSamplingConfig(steps=cfg.dos_steps),
        sampler=sampler,
    )
    summary = {
        "targets": targets.describe(),
        "dos_accepted": len(acc),
        "dos_proposals": int(acc.proposals),
        "scorer": scorer_name(cfg.scorer),
    }
    if len(acc) == 0:
        tqdm.write(f"{targets.describe()}: no DOS accepted within {acc.proposals} proposals")
        summary.update(crystals=0, valid=0, hits={})
        rd.write_json("summary.json", summary)
        return summary
    stage = crystal_stage(rd, "crystals", dos=acc.dos, cfg=cfg, seed=cfg.seed + 1)
    keep = np.arange(min(cfg.crystals, len(stage["source"])))
    stage = {k: (v[keep] if isinstance(v, np.ndarray) and v.ndim else v) for k, v in stage.items()}
    stage["conditioning"] = acc.dos
    verdicts = target_verdicts(targets, stage["oracle_dos"], stage["valid"])
    intervals = {p.name: p.interval for p in targets.properties}
    if rd.main:
        ids = [f"dos_{int(i):06d}" for i in acc.index]
        written = write_generation(
            rd.path, stage, source_ids=ids, verdicts=verdicts, intervals=intervals, best=cfg.best
        )
        summary.update(summarise(stage, verdicts, written))
    rd.write_json("summary.json", summary)
    rd.barrier("design-written")
    return summary
