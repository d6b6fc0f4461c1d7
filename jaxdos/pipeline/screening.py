"""The screening jobs' stage runner: generate + score crystals in resumable chunks.

A chunk generates crystals (for a slice of the conditioning DOS, or unconditionally), scores them
right away (the oracle, or the learned predictor of `CrystalSettings.scorer`), and is written
atomically as one chunk of the run folder's stage
(`jaxdos.pipeline.rundir.RunDir.stage`), so a killed run loses at most the chunk in progress.
Chunk i is seeded by `seed * 100003 + i` alone, so neither a resume nor the process count changes
a result. In a multi-host run each process generates its share of the chunks (or, with
`across_processes`, all processes generate every chunk together and process 0 scores and writes
it) and process 0 alone builds the structures for the uniqueness / novelty check.
"""

import dataclasses
import functools
import time

import numpy as np
from tqdm import tqdm

from jaxdos.crystal.checkpoint import KIND as CDOSGEN
from jaxdos.data.world import load_world
from jaxdos.kernels import stats
from jaxdos.kernels.pairing import METRIC_ROWS, conditioning_estimates, derangement
from jaxdos.kernels.properties import PROPERTY_NAMES
from jaxdos.pipeline.crystals import (
    DEFAULT_CORRECTOR_STEPS,
    DEFAULT_STEPS,
    DEFAULT_TYPE_TEMPERATURE,
    generate_crystals,
)
from jaxdos.pipeline.guided import check_tcm, check_window
from jaxdos.pipeline.models import load_checked
from jaxdos.pipeline.rundir import RunDir
from jaxdos.pipeline.score import ORACLE, score, uniqueness_novelty
from jaxdos.predictor.checkpoint import KIND as DOS_PREDICTOR
from jaxdos.structures import Crystals, to_structures

__all__ = [
    "CrystalSettings",
    "crystal_stage",
    "METRIC_ROWS",
    "conditioning_estimates",
    "conditioning_metrics",
    "derangement",
    "metric_cells",
    "metric_intervals",
    "unique_novel",
    "training_structures",
]

_CRYSTAL_FIELDS = Crystals._fields
# CrystalSettings window field -> the property it guides (`jaxdos.kernels.properties` names)
_WINDOW_FIELDS = {f"guide_{name}": name for name in PROPERTY_NAMES}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrystalSettings:
    """The CDOSGen settings every experiment shares (its config inherits them; all in run.json).

    Attributes:
        crystals_per_dos: crystals generated per conditioning DOS (>= 1).
        cfg_scale: classifier-free guidance strength (>= 0; MatterGen/paper 2.0).
        steps: CDOSGen sampler steps (>= 2; MatterGen 1000).
        corrector_steps: Langevin corrector iterations per step (0..10; MatterGen 1).
        type_temperature: atom types drawn from softmax(logits / T) (> 0; MatterGen 1, the
            pipeline's default `DEFAULT_TYPE_TEMPERATURE`).
        crystal_batch: crystals per jitted CDOSGen batch (>= 1).
        crystal_model: a "cdosgen" model directory (None: the embedded default); loaded and
            checked by `check_crystal_model` before a run folder is claimed.
        scorer: None or "oracle" (the world's tight-binding oracle), or a "dos_predictor" model
            directory (`jaxdos.predictor`, e.g. trained on MP records); checked with the model.
            The scores' source is recorded in run.json (this field) and in each stage's
            `scorer` column.
        guide_predictor: None, or a "dos_predictor" model directory that guides each conditioned
            crystal towards its conditioning DOS (`generate_crystals(guide_predictor=...)`,
            on top of classifier-free guidance), or into the `guide_*` windows and towards
            `guide_tcm` when any is set;
            unconditional crystals (a screen's baseline) are never guided. Use a different
            predictor than `scorer`, or the scores measure the guide, not the crystals.
        guide_strength: that guidance's strength (>= 0).
        guide_band_gap, guide_dos_at_fermi, guide_integrated_dos: None, or a window (lo, hi) of
            E_BG (eV), DOS(E_F) (states/eV/atom) or N(E_F) (states/atom) that `guide_predictor`
            pulls the predicted property into (`generate_crystals(guide_windows=...)`); finite,
            lo <= hi, and only with `guide_predictor`.
        guide_tcm: None, or 1 / 2: `guide_predictor` also pulls the predicted DOS towards TCM
            Type 1 / 2 (`generate_crystals(guide_tcm=...)`); only with `guide_predictor`.
    """

    crystals_per_dos: int = 4
    cfg_scale: float = 2.0
    steps: int = DEFAULT_STEPS
    corrector_steps: int = DEFAULT_CORRECTOR_STEPS
    type_temperature: float = DEFAULT_TYPE_TEMPERATURE
    crystal_batch: int = 32
    crystal_model: str | None = None
    scorer: str | None = None
    guide_predictor: str | None = None
    guide_strength: float = 1.0
    guide_band_gap: tuple[float, float] | None = None
    guide_dos_at_fermi: tuple[float, float] | None = None
    guide_integrated_dos: tuple[float, float] | None = None
    guide_tcm: int | None = None

    def __post_init__(self):
        for name in ("crystals_per_dos", "crystal_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.steps < 2:
            raise ValueError(f"steps: expected >= 2, got {self.steps}")
        if not 0 <= self.corrector_steps <= 10:
            raise ValueError(f"corrector_steps: expected 0..10, got {self.corrector_steps}")
        if not np.isfinite(self.type_temperature) or self.type_temperature <= 0:
            raise ValueError(
                f"type_temperature: expected a finite value > 0, got {self.type_temperature}"
            )
        if not np.isfinite(self.cfg_scale) or self.cfg_scale < 0:
            raise ValueError(f"cfg_scale: expected a finite value >= 0, got {self.cfg_scale}")
        if not np.isfinite(self.guide_strength) or self.guide_strength < 0:
            raise ValueError(
                f"guide_strength: expected a finite value >= 0, got {self.guide_strength}"
            )
        check_tcm("guide_tcm", self.guide_tcm)
        for name in (*_WINDOW_FIELDS, "guide_tcm"):
            if getattr(self, name) is None:
                continue
            if name != "guide_tcm":
                # Canonical (lo, hi) floats, whatever sequence the caller gave (a flag's list).
                object.__setattr__(self, name, check_window(name, getattr(self, name)))
            if self.guide_predictor is None:
                raise ValueError(
                    f"{name}: needs guide_predictor (--guide-predictor), the DOS predictor "
                    "that measures the property it guides"
                )

    def guide_windows(self) -> dict[str, tuple[float, float]]:
        """{property: (lo, hi)} of the `guide_*` windows that are set (empty: none)."""
        return {
            prop: getattr(self, name)
            for name, prop in _WINDOW_FIELDS.items()
            if getattr(self, name) is not None
        }

    def check_crystal_model(self):
        """The CDOSGen model of these settings, loaded once (the scorer checked too);
        ValueError names `crystal_model` or `scorer`."""
        self.scorer_model()
        self.guide_model()
        return load_checked("crystal_model", self.crystal_model, CDOSGEN)

    def guide_model(self):
        """None, or the guiding predictor; ValueError names `guide_predictor`."""
        if self.guide_predictor is None:
            return None
        return load_checked("guide_predictor", self.guide_predictor, DOS_PREDICTOR)

    def scorer_model(self):
        """None for the oracle, else the predictor model; ValueError names `scorer`."""
        if self.scorer is None or self.scorer == ORACLE:
            return None
        return load_checked("scorer", self.scorer, DOS_PREDICTOR)


@functools.lru_cache(maxsize=1)
def training_structures():
    """The world's training split as Structures (the novelty reference)."""
    return to_structures(load_world("train").crystals)


def crystal_stage(
    rd: RunDir,
    name: str,
    *,
    cfg: CrystalSettings,
    seed: int,
    dos=None,
    n: int | None = None,
    across_processes: bool = False,
) -> dict:
    """Generate crystals (conditioned on `dos` rows, or `n` unconditional ones) and score them.

    `across_processes`: each chunk is one `generate_crystals(across_processes=True)` call on every
    device of every process (a collective `RunDir.stage`; the chunks and results are the same);
    False: each process its own chunks on its own devices. The same in a single-process run.

    Returns the concatenated
    arrays of all chunks (crystal fields, `source` DOS index, `oracle_dos`, properties, TCM
    verdicts) plus `crystals_per_second` (per process-second of generation; with
    `across_processes`, per second of the calls spanning processes), `unique` and `novel`
    fractions (NaN on processes other than 0, which do not report them).
    """
    if dos is not None:
        per_chunk = max(1, cfg.crystal_batch // cfg.crystals_per_dos)
        total = len(dos)
    else:
        per_chunk = cfg.crystal_batch
        total = n
    n_chunks = -(-total // per_chunk)
    model = cfg.check_crystal_model()  # once, not per chunk: one denoiser, one compile
    scorer = cfg.scorer_model()
    guide = cfg.guide_model()
    mine = rd.my_chunks(n_chunks, collective=across_processes)
    bar = tqdm(total=len(mine), desc=name, unit="chunk", disable=not rd.main)

    def work(i):
        rows = np.arange(i * per_chunk, min((i + 1) * per_chunk, total))
        t0 = time.perf_counter()
        if dos is not None:
            crystals, source = generate_crystals(
                dos[rows],
                crystals_per_dos=cfg.crystals_per_dos,
                cfg_scale=cfg.cfg_scale,
                steps=cfg.steps,
                corrector_steps=cfg.corrector_steps,
                type_temperature=cfg.type_temperature,
                seed=seed * 100003 + i,
                batch_size=cfg.crystal_batch,
                model=model,
                guide_predictor=guide,
                guide_strength=cfg.guide_strength,
                guide_windows=cfg.guide_windows(),
                guide_tcm=cfg.guide_tcm,
                across_processes=across_processes,
            )
            source = rows[source]
        else:
            crystals, source = generate_crystals(
                num_samples=rows.size,
                steps=cfg.steps,
                corrector_steps=cfg.corrector_steps,
                type_temperature=cfg.type_temperature,
                seed=seed * 100003 + i,
                batch_size=cfg.crystal_batch,
                model=model,
                across_processes=across_processes,
            )
        seconds = time.perf_counter() - t0
        if across_processes and not rd.main:
            return None  # process 0 scores and writes the chunk (every process holds it whole)
        s = score(crystals, scorer=scorer)
        m = len(source)
        return {
            **crystals._asdict(),
            "source": source,
            "gen_seconds": np.full(m, seconds / m),
            "valid": s.valid,
            "reason": s.reason,
            "oracle_dos": s.dos,
            **s.properties,
            **{
                k: getattr(s.tcm, k)
                for k in ("is_tcm", "type1", "type2", "gap_below", "bandwidth", "dos_fermi")
            },
        }

    out = rd.stage(
        name, n_chunks, work, progress=lambda i: bar.update(1), collective=across_processes
    )
    bar.close()
    out["crystals_per_second"] = len(out["source"]) / max(out["gen_seconds"].sum(), 1e-9)
    if not rd.main:
        out["unique"] = out["novel"] = float("nan")
        return out
    crystals = Crystals(*(out[f] for f in _CRYSTAL_FIELDS))
    # Only valid crystals: to_structures rejects the singular cells some generated ones have.
    generated = to_structures(crystals.take(np.asarray(out["valid"], bool)))
    out["unique"], out["novel"] = uniqueness_novelty(generated, training_structures())
    return out


def conditioning_metrics(cond: np.ndarray, gen: np.ndarray, seed: int = 0) -> dict:
    """{metric: (matched mean, random-pairing mean)} of `conditioning_estimates` (NaN for < 2)."""
    return {k: (a.value, b.value) for k, (a, b) in conditioning_estimates(cond, gen, seed).items()}


def metric_cells(estimates: dict) -> list[list[str]]:
    """Table 3 / 5 rows `[metric, matched, random]`, each cell `value [lo, hi] (n=...)`."""
    return [[k, stats.fmt(a), stats.fmt(b)] for k, (a, b) in estimates.items()]


def metric_intervals(estimates: dict) -> dict:
    """{metric: [matched ci, random ci]}: the JSON twin of `conditioning_metrics`."""
    return {k: [a.ci(), b.ci()] for k, (a, b) in estimates.items()}


def unique_novel(stage: dict) -> tuple[stats.Estimate, stats.Estimate]:
    """The stage's unique and novel fractions as rates over its valid crystals (their n), with
    Wilson intervals; NaN (not reported) on processes other than 0."""
    n = int(stage["valid"].sum())
    out = []
    for frac in (stage["unique"], stage["novel"]):
        if np.isnan(frac):
            out.append(stats.Estimate(frac, frac, frac, n))
        else:
            out.append(stats.rate(round(frac * n), n))
    return out[0], out[1]
