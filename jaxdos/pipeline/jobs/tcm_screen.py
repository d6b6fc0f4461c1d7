"""The transparent-conducting-material screen (paper Section 6.1, Table 4) as a library job.

    property (TCM Type 1 / Type 2) -> DOSSampler + band-gap prior below E_F + rejection
        -> CDOSGen (several crystals per accepted DOS, classifier-free guidance)
        -> tight-binding oracle on every crystal -> TCM yield and type-correct rate
    against unconditional CDOSGen samples scored by the same oracle.

`run(ScreenConfig(...), out)` fills the run folder `out` (`jaxdos.pipeline.rundir`): the DOS runs
in `dos_type*/`, the crystal stages in `stages/`, table4.md / .csv, summary.json, structures_*/
(every generated crystal, `_hit` in the file name of those that pass) and tcm_*.png (hits
first); `python -m experiments.tcm_screen` is its command line.
"""

import dataclasses
import time

import numpy as np

from jaxdos.kernels import stats
from jaxdos.kernels.filters import TCMCriteria
from jaxdos.pipeline.dos import sample_dos
from jaxdos.pipeline.models import load_checked
from jaxdos.pipeline.rundir import RunDir
from jaxdos.pipeline.screening import CrystalSettings, crystal_stage, unique_novel
from jaxdos.pipeline.writers import plot_dos_pairs, write_every_structure
from jaxdos.sampler.checkpoint import KIND as DOSSAMPLER
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.targets import Targets, TCMType1, TCMType2

__all__ = ["LARGE", "ScreenConfig", "TYPES", "run"]

TYPES = {"type1": TCMType1, "type2": TCMType2}

# The large screen (`ScreenConfig.large()`, `tcm_screen --large`): 64 accepted DOS x 4 crystals
# gives 256 conditioned crystals per type, against 256 unconditional ones, enough for a lift of
# 2-3x over the world's ~8 % unconditional TCM rate to exclude 1 (the default's 16 against 32
# cannot). 4096 proposals cover 64 acceptances down to a 1.6 % acceptance rate.
LARGE = {"accept": 64, "proposals": 4096, "uncond": 256}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScreenConfig(CrystalSettings):
    """Settings of one screen (all recorded in run.json), with the inherited CDOSGen settings.

    Attributes:
        accept: accepted DOS per TCM type (>= 1).
        proposals: DOSSampler proposal budget per type (>= accept).
        dos_steps: DOSSampler denoising steps (>= 1; the paper preset is 128).
        uncond: unconditional crystals for the baseline (default: as many as the pipeline makes).
        dos_batch: DOSSampler proposals per jitted batch.
        noise_length: correlation length (bins) of the DOSSampler's draw noise; 0 is the paper's
            Algorithm 2 (`DOSSamplingConfig.noise_length`, an option for smoother spectra).
        type2_min_width: eV; a Type 2 conduction band must be wider than this, for the accepted
            DOS and for the generated crystals alike (`TCMCriteria.type2_min_width`). 0 is the
            paper's rule, under which a one-bin (0.078 eV) "band" passes; a positive value is
            an explicit option, recorded in run.json, that asks for a real band.
        seed: the run seed.
        devices: devices for the DOSSampler (None: all).
        dos_model: a "dossampler" model directory (None: the embedded default).
    """

    accept: int = 4
    proposals: int = 512
    dos_steps: int = 16
    uncond: int | None = None
    dos_batch: int = 128
    noise_length: float = 0.0
    type2_min_width: float = 0.0
    seed: int = 0
    devices: int | None = None
    dos_model: str | None = None

    def __post_init__(self):
        super().__post_init__()
        for name in ("accept", "dos_batch", "dos_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.proposals < self.accept:
            raise ValueError(f"proposals: expected >= accept ({self.accept}), got {self.proposals}")
        if self.uncond is not None and self.uncond < 1:
            raise ValueError(f"uncond: expected >= 1, got {self.uncond}")
        if self.devices is not None and self.devices < 1:
            raise ValueError(f"devices: expected >= 1, got {self.devices}")
        self.dos_sampling()  # validates noise_length before any folder is made
        self.criteria()  # and type2_min_width

    @classmethod
    def large(cls, **overrides) -> "ScreenConfig":
        """The large screen (`LARGE`); `overrides` win."""
        return cls(**{**LARGE, **overrides})

    def criteria(self) -> TCMCriteria:
        """The TCM criteria of this screen: the paper's, with `type2_min_width`."""
        return TCMCriteria(type2_min_width=self.type2_min_width)

    def dos_sampling(self) -> DOSSamplingConfig:
        """The DOSSampler's sampling settings of this screen."""
        return DOSSamplingConfig(steps=self.dos_steps, noise_length=self.noise_length)


def _pct(rate: stats.Estimate) -> str:
    return stats.fmt(rate, percent=True)


def _lift(hits: np.ndarray, base: np.ndarray) -> stats.Estimate:
    """Yield of `hits` over the unconditional yield `base`, with its log-ratio interval (two
    independent binomials; `stats.ratio_of_rates`): inf with a finite lower end when the baseline
    has no hit, n/a when neither has one."""
    return stats.rate_ratio(hits.sum(), hits.size, base.sum(), base.size)


def _tags(hits: np.ndarray) -> list[str]:
    """File-name tags: `crystal_<row>_hit.cif` for a crystal that passes the screen."""
    return ["hit" if h else "" for h in hits]


def _fmt_lift(lift: stats.Estimate) -> str:
    return stats.fmt(lift, digits=2, unit="x")


def _under(stage: dict, criteria: TCMCriteria) -> dict:
    """A scored crystal stage with its TCM verdicts under `criteria` (the stage was scored under
    the paper's; only the Type 2 lower width bound can differ, and the bandwidth is stored)."""
    type2 = np.asarray(stage["type2"], bool) & (stage["bandwidth"] > criteria.type2_min_width)
    return {**stage, "type2": type2, "is_tcm": np.asarray(stage["type1"], bool) | type2}


def run(cfg: ScreenConfig, out, *, resume: bool = False, force: bool = False) -> dict:
    """Run the screen into `out`; returns the summary dict (also written as summary.json)."""
    sampler = load_checked("dos_model", cfg.dos_model, DOSSAMPLER)  # before the folder is claimed
    cfg.check_crystal_model()
    rd = RunDir(out, dataclasses.asdict(cfg), resume=resume, force=force)
    summary: dict = {"types": {}}
    stages = {}
    for i, (name, kind) in enumerate(TYPES.items()):
        t0 = time.perf_counter()
        folder = rd.path / f"dos_{name}"
        acc = sample_dos(
            Targets(filters=(kind(criteria=cfg.criteria()),)),
            accept=cfg.accept,
            proposals=cfg.proposals,
            seed=cfg.seed + i,
            out=folder,
            resume=folder.exists(),
            devices=cfg.devices,
            batch_size=cfg.dos_batch,
            sampling_config=cfg.dos_sampling(),
            sampler=sampler,
        )
        dos_seconds = time.perf_counter() - t0
        summary["types"][name] = {
            "accepted": len(acc),
            "proposals": int(acc.proposals),
            "acceptance_rate": acc.acceptance_rate,
            "dos_seconds_this_session": dos_seconds,
        }
        if len(acc) == 0:
            continue
        stage = crystal_stage(
            rd, f"crystals_{name}", dos=acc.dos, cfg=cfg, seed=cfg.seed + 100 * (i + 1)
        )
        stages[name] = _under(stage, cfg.criteria())
        stages[name]["conditioning"] = acc.dos
    n_cond = sum(len(s["num_atoms"]) for s in stages.values())
    n_uncond = cfg.uncond or max(n_cond, cfg.crystal_batch)
    uncond = crystal_stage(rd, "crystals_uncond", n=n_uncond, cfg=cfg, seed=cfg.seed)
    stages["uncond"] = _under(uncond, cfg.criteria())

    base = stages["uncond"]
    n_base = len(base["valid"])
    base_yield = {k: float(base[k].mean()) for k in ("is_tcm", "type1", "type2")}
    base_rate = {k: stats.rate(base[k].sum(), n_base) for k in base_yield}
    header = ["generation", "DOS accepted", "crystals", "valid", "TCM yield", "lift"]
    header += ["type-correct yield", "lift"]
    rows = [
        [
            "unconditional CDOSGen",
            "-",
            n_base,
            _pct(stats.rate(base["valid"].sum(), n_base)),
            _pct(base_rate["is_tcm"]),
            "1.0x",
            f"T1 {_pct(base_rate['type1'])} / T2 {_pct(base_rate['type2'])}",
            "1.0x",
        ]
    ]
    for name in TYPES:
        t = summary["types"][name]
        accepted = stats.rate(t["accepted"], t["proposals"])
        t["acceptance_rate_ci"] = accepted.ci()
        if name not in stages:  # no DOS passed the criteria within the budget: nothing to generate
            rows.append([f"DOS-intermediated {name}", _pct(accepted), 0, *["n/a"] * 5])
            continue
        s = stages[name]
        n = len(s["valid"])
        y, yt = stats.rate(s["is_tcm"].sum(), n), stats.rate(s[name].sum(), n)
        lift, lift_t = _lift(s["is_tcm"], base["is_tcm"]), _lift(s[name], base[name])
        rows.append(
            [
                f"DOS-intermediated {name}",
                _pct(accepted),
                n,
                _pct(stats.rate(s["valid"].sum(), n)),
                _pct(y),
                _fmt_lift(lift),
                _pct(yt),
                _fmt_lift(lift_t),
            ]
        )
        unique, novel = unique_novel(s)
        t.update(
            crystals=n,
            tcm_yield=float(s["is_tcm"].mean()),
            tcm_yield_ci=y.ci(),
            tcm_lift=lift.value,
            tcm_lift_ci=lift.ci(),
            type_correct_yield=float(s[name].mean()),
            type_correct_yield_ci=yt.ci(),
            type_correct_lift=lift_t.value,
            type_correct_lift_ci=lift_t.ci(),
            crystals_per_second=s["crystals_per_second"],
            unique=s["unique"],
            unique_ci=unique.ci(),
            novel=s["novel"],
            novel_ci=novel.ci(),
        )
        if rd.main:  # every crystal, hits tagged; the figure shows hits first
            hits = np.asarray(s[name], bool)
            write_every_structure(rd.path / f"structures_{name}", s, _tags(hits))
            order = np.lexsort((np.arange(hits.size), ~hits))
            plot_dos_pairs(rd.path / f"tcm_{name}.png", s, order, title=f"TCM {name}: hits first")
    if rd.main:
        hits = np.asarray(base["is_tcm"], bool)
        write_every_structure(rd.path / "structures_uncond", base, _tags(hits))
    unique, novel = unique_novel(base)
    summary["uncond"] = {
        "crystals": n_base,
        **base_yield,
        **{f"{k}_ci": r.ci() for k, r in base_rate.items()},
        "unique": base["unique"],
        "unique_ci": unique.ci(),
        "novel": base["novel"],
        "novel_ci": novel.ci(),
    }
    table = rd.write_table("table4", header, rows)
    rd.write_json("summary.json", summary)
    rd.barrier("tcm_screen-written")  # no process leaves before process 0 has written
    return {"table": table, **summary}
