"""Multi-property inverse design (Section 5.1 Table 1, Section 5.3 Table 3, Appendix H
Table 11) as a library job.

For each conditioning setting of Table 1: DOSSampler (prior + guidance + rejection) -> CDOSGen ->
oracle, then +-10 % accuracy and MAE of each targeted property over the generated crystals; the
unconditional and reference-DOS (world test split) baselines go through the same CDOSGen + oracle.
Table 3 conditions CDOSGen on test-split DOS and compares matched pairs with random pairing; the
`sweep` repeats the E_BG = 2.0 setting with that many crystals per DOS (Table 11 layout).
`run(MultiPropertyConfig(...), out)` writes table1/3/11 (.md, .csv) and summary.json into the run
folder `out`; `python -m experiments.multi_property` is its command line.
"""

import dataclasses

import numpy as np
from tqdm import tqdm

from jaxdos.data.world import load_world
from jaxdos.kernels import stats
from jaxdos.kernels.properties import PROPERTY_NAMES, within_tolerance
from jaxdos.pipeline.dos import sample_dos
from jaxdos.pipeline.models import load_checked
from jaxdos.pipeline.rundir import RunDir
from jaxdos.pipeline.screening import (
    CrystalSettings,
    conditioning_estimates,
    crystal_stage,
    metric_cells,
    metric_intervals,
    unique_novel,
)
from jaxdos.sampler.checkpoint import KIND as DOSSAMPLER
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.targets import Targets

__all__ = ["MultiPropertyConfig", "SETTINGS", "run"]

# Table 1: (E_BG, DOS(E_F), N(E_F)); None = not conditioned. The last two rows of the paper are the
# 2-property rows scored with the derived zero target (a gap at E_F implies DOS(E_F) = 0, and a
# metal with DOS(E_F) > 0 has E_BG = 0).
SETTINGS = (
    (2.0, None, None),
    (None, 1.5, None),
    (None, None, 2.0),
    (2.0, None, 2.0),
    (None, 1.5, 2.0),
)
DERIVED = {(2.0, None, 2.0): (2.0, 0.0, 2.0), (None, 1.5, 2.0): (0.0, 1.5, 2.0)}
SHORT = {"band_gap": "E_BG", "dos_at_fermi": "DOS(E_F)", "integrated_dos": "N(E_F)"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiPropertyConfig(CrystalSettings):
    """Settings (recorded in run.json), with the inherited CDOSGen settings.

    Attributes:
        samples: accepted DOS (and crystals, one per DOS) per setting (>= 2).
        proposals: DOSSampler proposal budget per setting (>= samples).
        dos_steps: DOSSampler denoising steps (>= 1; the paper preset is 128).
        dos_batch: DOSSampler proposals per jitted batch (>= 1; rejection stops at a batch end,
            so on CPU a batch near samples / acceptance wastes least).
        sweep: crystals-per-DOS values for the Table 11 sweep on E_BG = 2.0 (empty: skip).
        seed: run seed.
        crystals_per_dos: CDOSGen crystals per DOS in the Table 1/3 settings (default 1 here).
        dos_model: a "dossampler" model directory (None: the embedded default).
    """

    samples: int = 8
    proposals: int = 256
    dos_steps: int = 16
    dos_batch: int = 32
    sweep: tuple[int, ...] = ()
    seed: int = 0
    crystals_per_dos: int = 1
    dos_model: str | None = None

    def __post_init__(self):
        super().__post_init__()
        for name in ("dos_steps", "dos_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.samples < 2:
            raise ValueError(f"samples: expected >= 2, got {self.samples}")
        if self.proposals < self.samples:
            raise ValueError(
                f"proposals: expected >= samples ({self.samples}), got {self.proposals}"
            )
        if any(k < 1 for k in self.sweep):
            raise ValueError(f"sweep: expected values >= 1, got {self.sweep}")


def _pct(rate: stats.Estimate) -> str:
    return stats.fmt(rate, percent=True)


def _row(label, targets, stage) -> list:
    """One Table 1 row; rates and MAEs over valid crystals ("n/a" when none is valid), each with
    its 95 % interval and n (Wilson for rates, bootstrap for MAEs)."""
    valid = stage["valid"]
    hits, maes = [], []
    for name, t in zip(PROPERTY_NAMES, targets, strict=True):
        if t is None or not valid.any():
            hits.append("-" if t is None else "n/a")
            maes.append(hits[-1])
            continue
        v = stage[name][valid]
        hits.append(_pct(stats.rate(within_tolerance(v, t).sum(), v.size)))
        maes.append(stats.fmt(stats.mean(np.abs(v - t))))
    novel = unique_novel(stage)[1]
    return [label, *hits, *maes, _pct(stats.rate(valid.sum(), valid.size)), _pct(novel)]


def _label(targets) -> str:
    parts = [
        f"{SHORT[n]}={t:g}" for n, t in zip(PROPERTY_NAMES, targets, strict=True) if t is not None
    ]
    return ", ".join(parts)


def _sweep_table(rd: RunDir, cfg: MultiPropertyConfig, acc) -> str:
    """Table 11: the E_BG = 2.0 setting with each swept number of crystals per accepted DOS."""
    rows = []
    for k in cfg.sweep:
        sweep_cfg = dataclasses.replace(cfg, crystals_per_dos=k)
        st = crystal_stage(rd, f"sweep_{k}", dos=acc.dos, cfg=sweep_cfg, seed=cfg.seed + 500)
        hit = within_tolerance(st["band_gap"], 2.0) & st["valid"]
        any_hit = np.bincount(st["source"], weights=hit, minlength=len(acc)) > 0
        mae = stats.mean(np.abs(st["band_gap"][st["valid"]] - 2.0))
        hit_rate, dos_rate = stats.rate(hit.sum(), hit.size), stats.rate(any_hit.sum(), len(acc))
        rows.append([k, len(hit), _pct(hit_rate), _pct(dos_rate), stats.fmt(mae)])
    return rd.write_table(
        "table11",
        ["crystals per DOS", "crystals", "±10% E_BG", "DOS with >= 1 hit", "MAE E_BG"],
        rows,
    )


def run(cfg: MultiPropertyConfig, out, *, resume: bool = False, force: bool = False) -> dict:
    sampler = load_checked("dos_model", cfg.dos_model, DOSSAMPLER)  # before the folder is claimed
    cfg.check_crystal_model()
    rd = RunDir(out, dataclasses.asdict(cfg), resume=resume, force=force)
    test = load_world("test")
    ref_idx = np.random.default_rng(cfg.seed).permutation(len(test))[: cfg.samples]
    ref = crystal_stage(rd, "reference_dos", dos=test.dos[ref_idx], cfg=cfg, seed=cfg.seed + 1)
    uncond = crystal_stage(rd, "unconditional", n=cfg.samples, cfg=cfg, seed=cfg.seed + 2)
    stages = {}
    for i, targets in enumerate(SETTINGS):
        tag = "s" + "_".join("x" if t is None else f"{t:g}" for t in targets)
        folder = rd.path / f"dos_{tag}"
        acc = sample_dos(
            Targets.of(**dict(zip(PROPERTY_NAMES, targets, strict=True))),
            accept=cfg.samples,
            proposals=cfg.proposals,
            sampling_config=DOSSamplingConfig(steps=cfg.dos_steps),
            batch_size=cfg.dos_batch,
            sampler=sampler,
            seed=cfg.seed + 10 + i,
            out=folder,
            resume=folder.exists(),
        )
        if len(acc) == 0:
            tqdm.write(f"{_label(targets)}: no DOS accepted within {cfg.proposals} proposals")
            continue
        stages[targets] = crystal_stage(
            rd, f"crystals_{tag}", dos=acc.dos, cfg=cfg, seed=cfg.seed + 100 + i
        )
    header = [
        "conditioning",
        "±10% E_BG",
        "±10% DOS(E_F)",
        "±10% N(E_F)",
        "MAE E_BG",
        "MAE DOS(E_F)",
        "MAE N(E_F)",
        "valid",
        "U.N.",
    ]
    everything = (2.0, 1.5, 2.0)
    rows = [_row("unconditional", everything, uncond), _row("reference DOS", everything, ref)]
    for targets, stage in stages.items():
        rows.append(_row(_label(targets), targets, stage))
    for targets, derived in DERIVED.items():
        if targets in stages:
            rows.append(_row(_label(derived) + " (derived)", derived, stages[targets]))
    table1 = rd.write_table("table1", header, rows)

    valid = ref["valid"]
    cond, gen = test.dos[ref_idx][ref["source"][valid]], ref["oracle_dos"][valid]
    estimates = conditioning_estimates(cond, gen, seed=cfg.seed)
    metrics = {k: (a.value, b.value) for k, (a, b) in estimates.items()}
    table3 = rd.write_table("table3", ["metric", "ours", "random pairing"], metric_cells(estimates))
    tables = {"table1": table1, "table3": table3}
    if cfg.sweep:
        acc = sample_dos(
            Targets.of(band_gap=2.0),
            accept=cfg.samples,
            proposals=cfg.proposals,
            sampling_config=DOSSamplingConfig(steps=cfg.dos_steps),
            batch_size=cfg.dos_batch,
            sampler=sampler,
            seed=cfg.seed + 10,
            out=rd.path / "dos_s2_x_x",
            resume=True,
        )
        if len(acc) == 0:
            tqdm.write(
                f"sweep: no E_BG=2 DOS accepted within {cfg.proposals} proposals; no Table 11"
            )
        else:
            tables["table11"] = _sweep_table(rd, cfg, acc)
    summary = {"metrics_table3": metrics, "metrics_table3_ci": metric_intervals(estimates)}
    rd.write_json("summary.json", summary)
    rd.barrier("multi_property-written")  # no process leaves before process 0 has written
    return tables
