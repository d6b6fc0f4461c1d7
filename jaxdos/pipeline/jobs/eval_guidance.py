"""Predictor guidance of CDOSGen measured in the world, scored by the oracle (issue 16's goals).

    TCM yield, at equal crystals and steps:
        unconditional | CFG on the world's TCM-like DOS | predictor guidance only (the TCM
        surrogate, or each DOS as the predictor's target) | both
    E_BG for a band-gap target (default 2 eV, the paper's +-10 % window):
        unconditional | CFG on world DOS with that gap | window guidance only | both

Every arm makes `crystals` crystals with `steps` CDOSGen steps, in chunks of `crystal_batch`;
chunk i of every arm is seeded by `seed * 100003 + i`, so the arms share their atom counts and
initial noise (a paired comparison) and a resumed run equals an uninterrupted one. The conditioned
arms cycle through their world DOS (`screen_tcm` Type `tcm_type`, or band gap within the window:
the DOS are only conditions, so every split is used). The guiding predictor (default: the
embedded one) and the scoring oracle are different models, so a hit is the oracle's verdict on
the crystal, not the guide's opinion of it.

`run(EvalGuidanceConfig(...), out)` fills the run folder `out` (`jaxdos.pipeline.rundir`): one
stage per arm in `stages/`, `tcm.md` / `.csv`, `band_gap.md` / `.csv`, `summary.json` (each
value with its `*_ci` {lo, hi, n}; `gen_seconds` per arm includes its compile) and run.json;
`python -m experiments.eval_guidance` is its command line.
"""

import dataclasses
import math
import time

import numpy as np
from tqdm import tqdm

from jaxdos.crystal.checkpoint import KIND as CDOSGEN
from jaxdos.data.world import load_world
from jaxdos.kernels import stats
from jaxdos.kernels.filters import screen_tcm
from jaxdos.kernels.properties import measure, tolerance
from jaxdos.pipeline.crystals import DEFAULT_CORRECTOR_STEPS, generate_crystals
from jaxdos.pipeline.models import load_checked
from jaxdos.pipeline.rundir import RunDir
from jaxdos.pipeline.score import score
from jaxdos.predictor.checkpoint import KIND as DOS_PREDICTOR

__all__ = ["EvalGuidanceConfig", "TCM_ARMS", "BAND_GAP_ARMS", "run"]

# arm -> (conditioned on the world DOS, classifier-free guided, predictor guidance: None | "tcm" |
# "dos" (each crystal's conditioning DOS as the target) | "window")
TCM_ARMS = {
    "unconditional": (False, False, None),
    "cfg": (True, True, None),
    "guide_tcm": (False, False, "tcm"),
    "guide_dos": (True, False, "dos"),
    "cfg+guide_tcm": (True, True, "tcm"),
    "cfg+guide_dos": (True, True, "dos"),
}
BAND_GAP_ARMS = {
    "unconditional": (False, False, None),  # the TCM table's unconditional crystals
    "cfg": (True, True, None),
    "guide_window": (False, False, "window"),
    "cfg+guide_window": (True, True, "window"),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalGuidanceConfig:
    """One evaluation (recorded in run.json).

    Attributes:
        crystals: crystals per arm (>= 1).
        steps: CDOSGen sampler steps (>= 2).
        corrector_steps: Langevin corrector iterations per step (0..10).
        crystal_batch: crystals per jitted CDOSGen batch and per chunk (>= 1).
        cfg_scale: classifier-free guidance scale of the CFG arms (finite, > 0).
        guide_strength: predictor-guidance strength of the guided arms (finite, > 0).
        guide_predictor: the guiding "dos_predictor" model directory (None: the embedded one).
        crystal_model: a "cdosgen" model directory (None: the embedded one).
        tcm_type: 1 or 2: the TCM type of the conditioning DOS and of the surrogate loss.
        band_gap: E_BG target in eV (> 0); its window is the paper's +-10 %.
        seed: the run seed.
        tcm_arms, band_gap_arms: the arms of each table to run (names from `TCM_ARMS` /
            `BAND_GAP_ARMS`, in their order); "unconditional", both tables' baseline, always runs.
    """

    crystals: int = 32
    steps: int = 50
    corrector_steps: int = DEFAULT_CORRECTOR_STEPS
    crystal_batch: int = 32
    cfg_scale: float = 2.0
    guide_strength: float = 1.0
    guide_predictor: str | None = None
    crystal_model: str | None = None
    tcm_type: int = 1
    band_gap: float = 2.0
    seed: int = 0
    tcm_arms: tuple[str, ...] = tuple(TCM_ARMS)
    band_gap_arms: tuple[str, ...] = tuple(BAND_GAP_ARMS)

    def __post_init__(self):
        for name, known in (("tcm_arms", TCM_ARMS), ("band_gap_arms", BAND_GAP_ARMS)):
            unknown = [arm for arm in getattr(self, name) if arm not in known]
            if unknown:
                raise ValueError(
                    f"{name}: expected names from {', '.join(known)}, got {', '.join(unknown)}"
                )
        for name in ("crystals", "crystal_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.steps < 2:
            raise ValueError(f"steps: expected >= 2, got {self.steps}")
        if not 0 <= self.corrector_steps <= 10:
            raise ValueError(f"corrector_steps: expected 0..10, got {self.corrector_steps}")
        for name in ("cfg_scale", "guide_strength", "band_gap"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite value > 0, got {value}")
        if self.tcm_type not in (1, 2):
            raise ValueError(f"tcm_type: expected 1 or 2, got {self.tcm_type}")

    @classmethod
    def quick(cls, **overrides) -> "EvalGuidanceConfig":
        """A smoke-test preset: 4 crystals per arm, 3 sampler steps, no corrector."""
        return cls(**{"crystals": 4, "steps": 3, "corrector_steps": 0, **overrides})

    @property
    def window(self) -> tuple[float, float]:
        """The band-gap window: the target +- the paper's tolerance."""
        tol = tolerance(self.band_gap)
        return self.band_gap - tol, self.band_gap + tol


def _world_conditions(cfg: EvalGuidanceConfig) -> tuple[np.ndarray, np.ndarray]:
    """The world's `[T, 256]` TCM-like DOS of `tcm_type` and `[B, 256]` DOS with E_BG in the
    band-gap window; ValueError naming the setting when there is none."""
    dos = load_world().dos
    tcm = dos[np.asarray(getattr(screen_tcm(dos), f"type{cfg.tcm_type}"), bool)]
    if len(tcm) == 0:
        raise ValueError(f"tcm_type: the world has no TCM Type {cfg.tcm_type} DOS to condition on")
    lo, hi = cfg.window
    gap = measure(dos)["band_gap"]
    gapped = dos[(gap >= lo) & (gap <= hi)]
    if len(gapped) == 0:
        raise ValueError(f"band_gap: the world has no DOS with E_BG in [{lo:g}, {hi:g}] eV")
    return tcm, gapped


def _arm_stage(rd, name, spec, cfg, *, model, guide, cond, windows):
    """Generate and score one arm's crystals (chunked, resumable); the stage's arrays."""
    conditioned, cfg_on, guided = spec
    n_chunks = -(-cfg.crystals // cfg.crystal_batch)
    bar = tqdm(total=n_chunks, desc=name, unit="chunk", disable=not rd.main)

    def work(i):
        rows = np.arange(i * cfg.crystal_batch, min((i + 1) * cfg.crystal_batch, cfg.crystals))
        kw = {}
        if conditioned:
            kw.update(dos=cond[rows % len(cond)], cfg_scale=cfg.cfg_scale if cfg_on else 0.0)
        else:
            kw.update(num_samples=rows.size)
        if guided is not None:
            kw.update(guide_predictor=guide, guide_strength=cfg.guide_strength)
        if guided == "tcm":
            kw.update(guide_tcm=cfg.tcm_type)
        elif guided == "window":
            kw.update(guide_windows=windows)
        t0 = time.perf_counter()
        crystals, _ = generate_crystals(
            steps=cfg.steps,
            corrector_steps=cfg.corrector_steps,
            seed=cfg.seed * 100003 + i,
            batch_size=cfg.crystal_batch,
            model=model,
            **kw,
        )
        seconds = time.perf_counter() - t0
        s = score(crystals)  # the oracle
        return {
            "valid": s.valid,
            "is_tcm": s.tcm.is_tcm,
            "type_correct": getattr(s.tcm, f"type{cfg.tcm_type}"),
            "band_gap": s.properties["band_gap"],
            "gen_seconds": np.full(rows.size, seconds / rows.size),
        }

    out = rd.stage(name, n_chunks, work, progress=lambda i: bar.update(1))
    bar.close()
    return out


def _pct(est: stats.Estimate) -> str:
    return stats.fmt(est, percent=True)


def run(cfg: EvalGuidanceConfig, out, *, resume: bool = False, force: bool = False) -> dict:
    """Evaluate into `out`; returns the summary (also written as summary.json) with the two
    markdown tables under "tcm_table" and "band_gap_table"."""
    # Everything a user can get wrong is checked before the folder is claimed.
    model = load_checked("crystal_model", cfg.crystal_model, CDOSGEN)
    guide = load_checked("guide_predictor", cfg.guide_predictor, DOS_PREDICTOR)
    tcm_dos, gap_dos = _world_conditions(cfg)
    rd = RunDir(out, dataclasses.asdict(cfg), resume=resume, force=force)
    common = dict(cfg=cfg, model=model, guide=guide, windows={"band_gap": cfg.window})
    tcm = {
        name: _arm_stage(rd, f"tcm_{name}", spec, cond=tcm_dos, **common)
        for name, spec in TCM_ARMS.items()
        if name == "unconditional" or name in cfg.tcm_arms
    }
    gap = {"unconditional": tcm["unconditional"]}
    for name, spec in BAND_GAP_ARMS.items():
        if name not in gap and name in cfg.band_gap_arms:
            gap[name] = _arm_stage(rd, f"band_gap_{name}", spec, cond=gap_dos, **common)

    summary: dict = {
        "crystals": cfg.crystals,
        "steps": cfg.steps,
        "tcm_type": cfg.tcm_type,
        "tcm_conditions": len(tcm_dos),
        "band_gap_window": list(cfg.window),
        "band_gap_conditions": len(gap_dos),
        "scorer": "oracle",
        "tcm": {},
        "band_gap": {},
    }
    base = tcm["unconditional"]["is_tcm"]
    rows = []
    for name, s in tcm.items():
        n = len(s["valid"])
        valid = stats.rate(s["valid"].sum(), n)
        hits = stats.rate(s["is_tcm"].sum(), n)
        typed = stats.rate(s["type_correct"].sum(), n)
        lift = stats.rate_ratio(s["is_tcm"].sum(), n, base.sum(), base.size)
        seconds = float(s["gen_seconds"].sum())
        rows.append(
            [name, n, _pct(valid), _pct(hits), _pct(typed), stats.fmt(lift, digits=2, unit="x")]
        )
        summary["tcm"][name] = {
            "crystals": n,
            "valid": valid.value,
            "valid_ci": valid.ci(),
            "tcm_yield": hits.value,
            "tcm_yield_ci": hits.ci(),
            "type_correct_yield": typed.value,
            "type_correct_yield_ci": typed.ci(),
            "lift": lift.value,
            "lift_ci": lift.ci(),
            "gen_seconds": seconds,
        }
    header = ["arm", "crystals", "valid", "TCM yield", f"Type {cfg.tcm_type} yield", "lift"]
    summary["tcm_table"] = rd.write_table("tcm", header, rows)
    lo, hi = cfg.window
    rows = []
    for name, s in gap.items():
        n = len(s["valid"])
        error = stats.mean(np.abs(s["band_gap"] - cfg.band_gap))  # NaN (invalid) dropped
        inside = (s["band_gap"] >= lo) & (s["band_gap"] <= hi)  # NaN compares False
        hits = stats.rate(inside.sum(), n)
        rows.append([name, n, stats.fmt(error), _pct(hits)])
        summary["band_gap"][name] = {
            "crystals": n,
            "mae_eV": error.value,
            "mae_eV_ci": error.ci(),
            "in_window": hits.value,
            "in_window_ci": hits.ci(),
            "gen_seconds": float(s["gen_seconds"].sum()),
        }
    header = ["arm", "crystals", f"E_BG MAE vs {cfg.band_gap:g} eV", f"in [{lo:g}, {hi:g}] eV"]
    summary["band_gap_table"] = rd.write_table("band_gap", header, rows)
    rd.write_json("summary.json", summary)
    return summary
