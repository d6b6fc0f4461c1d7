"""Does stage 2 work? Issue 12's goals 0 and 1 for a CDOSGen model, scored by the world's oracle.

Every number is a `stats.Estimate`: value, 95 % interval and n.

Goal 0, CDOSGen makes the world's crystals (`samples` unconditional crystals):
- valid: `score`'s validity (the oracle accepts the crystal), over all generated crystals.
- framework match, over the valid crystals: `StructureMatcher().fit_anonymous` to any of the
  `representatives` first world training crystals of each (family tag, atom count) with the same
  atom count (world files without family tags group by reduced anonymous formula instead); the
  reference rate is the same check on the world's test split.
- metal fraction (oracle band gap == 0) and band-gap quantiles 10 / 50 / 90 % (metals count as 0
  eV), valid generated crystals against the world's training split.
- too many elements: crystals with more distinct elements than any world training crystal has,
  over the valid crystals, against the same count on the test split (a composition no
  decoration rule of the world makes, whatever the geometry).
- odd electron count: crystals whose cell holds an odd number of valence electrons (the oracle's
  element table), over the valid crystals, against the training split. The oracle's bands are
  spin-degenerate, so such a cell always has a part-filled band: it is a metal whatever its
  geometry.

Goal 1, CDOSGen follows its DOS:
- cosine between the oracle DOS of a crystal generated from one of the first `pairs` world
  test-split DOS and that DOS, against a fixed derangement of the same crystals
  (`pairing.conditioning_estimates`), over the pairs whose crystal is valid.
- TCM yield (type 1 or 2, over all crystals) with `tcm_dos_per` crystals per TCM-like world DOS
  (`filters.screen_tcm` on every split: the DOS are only conditions), against the
  unconditional crystals, and the lift (`stats.rate_ratio`).

The unconditional crystals are one pool of max(samples, TCM crystals): goal 0 reads its first
`samples`, the TCM baseline all of them (a larger `samples` narrows the lift's interval).
"""

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.data.world import SPLITS, load_world_tagged
from jaxdos.kernels import stats
from jaxdos.kernels.filters import screen_tcm
from jaxdos.kernels.oracle_params import element_table
from jaxdos.kernels.pairing import conditioning_estimates
from jaxdos.pipeline.crystals import DEFAULT_STEPS, DEFAULT_TYPE_TEMPERATURE, generate_crystals
from jaxdos.pipeline.score import score
from jaxdos.structures import to_structures

__all__ = [
    "RealismConfig",
    "world_representatives",
    "framework_match",
    "species_counts",
    "electron_counts",
    "evaluate",
    "summary_json",
    "report_markdown",
]

QUANTILES = (0.1, 0.5, 0.9)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RealismConfig:
    """Sizes and sampler settings of one evaluation.

    Attributes:
        samples: unconditional crystals for goal 0 and the TCM baseline (>= 1; the baseline has at
            least as many as there are TCM-conditioned crystals).
        pairs: world test-split DOS, one crystal each, for the cosine check (>= 2).
        tcm_dos: TCM-like world DOS to condition on (>= 1; None: all of them).
        tcm_dos_per: crystals per TCM-like DOS (>= 1).
        steps: CDOSGen predictor-corrector steps (>= 2).
        cfg_scale: classifier-free guidance strength (finite, >= 0).
        type_temperature: `CrystalSamplingConfig.type_temperature` (1: MatterGen's sampler;
            default the pipeline's, `DEFAULT_TYPE_TEMPERATURE`).
        seed: run seed.
        representatives: world training crystals per (family, atom count) for the framework check.
        world: a world file (default: the packaged subset).
    """

    samples: int = 96
    pairs: int = 64
    tcm_dos: int | None = None
    tcm_dos_per: int = 4
    steps: int = DEFAULT_STEPS
    cfg_scale: float = 2.0
    type_temperature: float = DEFAULT_TYPE_TEMPERATURE
    seed: int = 0
    representatives: int = 2
    world: str | None = None

    def __post_init__(self):
        for name, low in (("samples", 1), ("pairs", 2), ("tcm_dos_per", 1), ("steps", 2)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: expected >= {low}, got {getattr(self, name)}")
        if self.representatives < 1:
            raise ValueError(f"representatives: expected >= 1, got {self.representatives}")
        if self.tcm_dos is not None and self.tcm_dos < 1:
            raise ValueError(f"tcm_dos: expected >= 1 (or all), got {self.tcm_dos}")
        if not math.isfinite(self.cfg_scale) or self.cfg_scale < 0:
            raise ValueError(f"cfg_scale: expected a finite value >= 0, got {self.cfg_scale}")
        if not (math.isfinite(self.type_temperature) and self.type_temperature > 0):
            raise ValueError(f"type_temperature: expected > 0, got {self.type_temperature}")
        if self.world is not None and not Path(self.world).is_file():
            raise ValueError(f"world: no such file {self.world}")

    @classmethod
    def quick(cls, **overrides) -> "RealismConfig":
        """A smoke-test preset: 4 crystals per measurement, 3 sampler steps."""
        return cls(
            **{"samples": 4, "pairs": 4, "tcm_dos": 1, "tcm_dos_per": 4, "steps": 3, **overrides}
        )


def species_counts(crystals) -> np.ndarray:
    """`[M]` distinct elements of each crystal."""
    z, n = np.asarray(crystals.atomic_numbers), np.asarray(crystals.num_atoms)
    return np.array([np.unique(z[i, : n[i]]).size for i in range(n.size)], np.int64)


def electron_counts(crystals) -> np.ndarray:
    """`[M]` valence electrons per cell of each crystal (the oracle's element table; padding
    atoms are Z = 0, which has none)."""
    valence = element_table().valence[np.asarray(crystals.atomic_numbers)]
    return np.rint(valence.sum(axis=1)).astype(np.int64)


def world_representatives(
    structures: list[Structure], families=None, per_group: int = 2
) -> dict[int, list[Structure]]:
    """The first `per_group` structures of each (family tag, atom count), keyed by atom count.

    Without `families`, structures group by reduced anonymous formula (and atom count).
    """
    counts: dict[tuple, int] = defaultdict(int)
    out: dict[int, list[Structure]] = defaultdict(list)
    for i, s in enumerate(structures):
        tag = s.composition.anonymized_formula if families is None else str(families[i])
        if counts[tag, len(s)] < per_group:
            counts[tag, len(s)] += 1
            out[len(s)].append(s)
    return dict(out)


def framework_match(
    structures: list[Structure], representatives: dict[int, list[Structure]]
) -> np.ndarray:
    """`[M]` bool: structure i fits (`fit_anonymous`) a representative with its atom count."""
    matcher = StructureMatcher()
    return np.array(
        [
            any(matcher.fit_anonymous(s, r) for r in representatives.get(len(s), ()))
            for s in structures
        ],
        bool,
    )


def _gap_rows(gen_gap: np.ndarray, world_gap: np.ndarray) -> dict:
    return {
        f"band_gap_q{round(100 * q)}_eV": (stats.quantile(gen_gap, q), stats.quantile(world_gap, q))
        for q in QUANTILES
    }


def evaluate(
    cfg: RealismConfig,
    model: CDOSGenModel | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Goals 0 and 1 for `model` (default: the embedded CDOSGen).

    Returns:
        {"goal0": {row: (generated, world)}, "goal1": {row: (conditioned, baseline)},
        "seconds": {stage: wall seconds}}: `stats.Estimate`s, None where a row has no second
        column.

    Raises:
        ValueError: naming the setting, before any crystal is generated, when the world has fewer
            test-split or TCM-like DOS than asked for.
    """
    log = log or (lambda _: None)
    world, split, family = load_world_tagged(cfg.world)
    train, test = (np.flatnonzero(split == SPLITS[s]) for s in ("train", "test"))
    tcm_rows = np.flatnonzero(screen_tcm(world.dos).is_tcm)
    if cfg.pairs > test.size:
        raise ValueError(f"pairs: at most {test.size} (the world's test split), got {cfg.pairs}")
    if cfg.tcm_dos is not None and cfg.tcm_dos > tcm_rows.size:
        raise ValueError(
            f"tcm_dos: at most {tcm_rows.size} (TCM-like world DOS), got {cfg.tcm_dos}"
        )
    if tcm_rows.size == 0:
        raise ValueError("tcm_dos: the world has no TCM-like DOS to condition on")
    tcm_rows = tcm_rows[: cfg.tcm_dos]
    n_tcm = tcm_rows.size * cfg.tcm_dos_per
    seconds, t0 = {}, time.perf_counter()
    gen = dict(steps=cfg.steps, model=model, type_temperature=cfg.type_temperature)

    def lap(name: str) -> None:
        nonlocal t0
        seconds[name] = time.perf_counter() - t0
        log(f"{name}: {seconds[name]:.1f} s")
        t0 = time.perf_counter()

    pool, _ = generate_crystals(None, num_samples=max(cfg.samples, n_tcm), seed=cfg.seed, **gen)
    pool_scores = score(pool)
    lap("unconditional crystals")
    pair_dos = world.dos[test[: cfg.pairs]]
    paired, _ = generate_crystals(pair_dos, cfg_scale=cfg.cfg_scale, seed=cfg.seed + 1, **gen)
    pair_scores = score(paired)
    tcm_dos = world.dos[tcm_rows]
    tcm, _ = generate_crystals(
        tcm_dos, crystals_per_dos=cfg.tcm_dos_per, cfg_scale=cfg.cfg_scale, seed=cfg.seed + 2, **gen
    )
    tcm_hits = score(tcm).tcm.is_tcm
    lap("conditioned crystals")

    valid = pool_scores.valid[: cfg.samples]
    kept = pool.take(np.flatnonzero(valid))
    train_crystals, test_crystals = world.take(train).crystals, world.take(test).crystals
    generated = to_structures(kept)
    train_structures = to_structures(train_crystals)
    reps = world_representatives(
        train_structures, None if family is None else family[train], cfg.representatives
    )
    match = framework_match(generated, reps)
    world_match = framework_match(to_structures(test_crystals), reps)
    lap("framework check")

    gap = pool_scores.properties["band_gap"][: cfg.samples][valid]
    world_gap = world.band_gap[train]
    most = species_counts(train_crystals).max()
    many = species_counts(kept) > most
    world_many = species_counts(test_crystals) > most
    odd = electron_counts(kept) % 2 == 1
    world_odd = electron_counts(train_crystals) % 2 == 1
    goal0 = {
        "valid": (stats.rate(valid.sum(), valid.size), None),
        "framework_match": (
            stats.rate(match.sum(), match.size),
            stats.rate(world_match.sum(), world_match.size),
        ),
        "metal_fraction": (
            stats.rate((gap == 0).sum(), gap.size),
            stats.rate((world_gap == 0).sum(), world_gap.size),
        ),
        **_gap_rows(gap, world_gap),
        "too_many_elements": (
            stats.rate(many.sum(), many.size),
            stats.rate(world_many.sum(), world_many.size),
        ),
        "odd_electrons": (
            stats.rate(odd.sum(), odd.size),
            stats.rate(world_odd.sum(), world_odd.size),
        ),
    }
    ok = pair_scores.valid
    cosine = conditioning_estimates(pair_dos[ok], pair_scores.dos[ok], seed=cfg.seed)["cosine"]
    base = pool_scores.tcm.is_tcm
    goal1 = {
        "dos_cosine": cosine,
        "tcm_yield": (stats.rate(tcm_hits.sum(), n_tcm), stats.rate(base.sum(), base.size)),
        "tcm_lift": (stats.rate_ratio(tcm_hits.sum(), n_tcm, base.sum(), base.size), None),
    }
    return {"goal0": goal0, "goal1": goal1, "seconds": seconds}


COLUMNS = {"goal0": ("generated", "world"), "goal1": ("conditioned", "baseline")}
TITLES = {
    "goal0": "Goal 0: unconditional CDOSGen vs the world (framework: test split; rest: train)",
    "goal1": "Goal 1: conditioned CDOSGen (cosine: matched vs shuffled; TCM: vs unconditional)",
}


def _json(est: stats.Estimate | None):
    return None if est is None else {"value": est.value, **est.ci()}


def summary_json(result: dict) -> dict:
    """`evaluate`'s result as JSON-ready dicts: every value with its lo, hi and n."""
    out = {"seconds": result["seconds"]}
    for goal, cols in COLUMNS.items():
        out[goal] = {
            row: dict(zip(cols, map(_json, pair), strict=True))
            for row, pair in result[goal].items()
        }
    return out


def _cell(row: str, est: stats.Estimate | None) -> str:
    if est is None:
        return "-"
    if row.endswith("_lift"):
        return stats.fmt(est, digits=2, unit="x")
    if row.startswith("band_gap") or row == "dos_cosine":
        return stats.fmt(est, digits=2 if row.startswith("band_gap") else 3)
    return stats.fmt(est, percent=True)


def report_markdown(result: dict) -> str:
    """One markdown table per goal, each cell `value [lo, hi] (n=...)`."""
    parts = []
    for goal, (a, b) in COLUMNS.items():
        lines = [f"### {TITLES[goal]}", "", f"| metric | {a} | {b} |", "|---|---|---|"]
        lines += [
            f"| {row} | {_cell(row, x)} | {_cell(row, y)} |" for row, (x, y) in result[goal].items()
        ]
        parts.append("\n".join(lines))
    took = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    return "\n\n".join(parts) + f"\n\nWall time: {took}.\n"
