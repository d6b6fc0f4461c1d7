"""Crystal-to-crystal translation for thermoelectric-like materials (paper Section 6.2,
Table 5) as a library job.

reference crystals (TE-like in the world's test split, or CIF files) -> their oracle DOS
    -> CDOSGen (crystals_per_dos per reference) -> oracle DOS of each generated crystal
    -> cosine, Pearson, JS, E_BG MAE, DOS(E_F) MAE, TE-filter pass rate
against the random-pairing baseline of Section 5.3. `run(TranslationConfig(...), out)` writes
table5.md / .csv, summary.json, structures/ (every crystal,
`_hit` in the name of TE-filter passes) and translation.png into the run folder `out`;
`python -m experiments.te_translation` is its command line.
"""

import dataclasses

import numpy as np
from pymatgen.core import Structure

from jaxdos.data.world import load_world
from jaxdos.kernels import stats
from jaxdos.kernels.filters import screen_te
from jaxdos.pipeline.rundir import RunDir
from jaxdos.pipeline.score import score
from jaxdos.pipeline.screening import (
    CrystalSettings,
    conditioning_estimates,
    crystal_stage,
    derangement,
    metric_cells,
    metric_intervals,
    unique_novel,
)
from jaxdos.pipeline.writers import plot_dos_pairs, write_every_structure

__all__ = ["TranslationConfig", "reference_dos", "run"]

ROW_NAMES = {"band_gap": "E_BG MAE", "dos_at_fermi": "DOS(E_F) MAE", "integrated_dos": "N(E_F) MAE"}


def _pct(rate: stats.Estimate) -> str:
    return stats.fmt(rate, percent=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TranslationConfig(CrystalSettings):
    """Settings (recorded in run.json), with the inherited CDOSGen settings.

    Attributes:
        references: TE-like reference crystals taken from the world's test split (>= 2).
        cif: user CIF files used as references instead (each <= 20 atoms).
        seed: run seed.
    """

    references: int = 8
    cif: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not self.cif and self.references < 2:
            raise ValueError(f"references: expected >= 2, got {self.references}")


def reference_dos(cfg: TranslationConfig) -> tuple[np.ndarray, list[str]]:
    """`[R, 256]` oracle DOS of the references and their names."""
    if cfg.cif:
        structures = [Structure.from_file(p) for p in cfg.cif]
        s = score(structures)
        bad = [p for p, ok in zip(cfg.cif, s.valid, strict=True) if not ok]
        if bad:
            raise ValueError(f"cif: the oracle cannot score {bad}: {list(s.reason[~s.valid])}")
        return s.dos, [s.composition.reduced_formula for s in structures]
    test = load_world("test")
    te = screen_te(test.dos, test.dos)  # a TE-like DOS passes the filter against itself
    idx = np.flatnonzero(np.asarray(te.passed))
    if idx.size < 2:
        raise ValueError(
            f"references: the world's test split has {idx.size} TE-like crystals; pass --cif"
        )
    idx = np.random.default_rng(cfg.seed).permutation(idx)[: cfg.references]
    return test.dos[idx], [str(i) for i in test.ids[idx]]


def run(cfg: TranslationConfig, out, *, resume: bool = False, force: bool = False) -> dict:
    refs, names = reference_dos(cfg)
    cfg.check_crystal_model()  # before the folder is claimed
    rd = RunDir(out, dataclasses.asdict(cfg), resume=resume, force=force)
    stage = crystal_stage(rd, "crystals", dos=refs, cfg=cfg, seed=cfg.seed)
    stage["conditioning"] = refs
    valid = stage["valid"]
    cond = refs[stage["source"][valid]]
    gen = stage["oracle_dos"][valid]
    estimates = conditioning_estimates(cond, gen, seed=cfg.seed)
    metrics = {k: (a.value, b.value) for k, (a, b) in estimates.items()}
    te = np.asarray(screen_te(gen, cond).passed)
    perm = derangement(len(refs), np.random.default_rng(cfg.seed + 1))
    te_random = np.asarray(screen_te(gen, refs[perm[stage["source"][valid]]]).passed)
    rows = [[ROW_NAMES.get(k, k), *cells] for k, *cells in metric_cells(estimates)]
    n = len(valid)  # an invalid crystal fails the TE filter: rates are over all crystals
    passed, passed_random = stats.rate(te.sum(), n), stats.rate(te_random.sum(), n)
    valid_rate = stats.rate(valid.sum(), n)
    rows.append(["TE-filter pass rate", _pct(passed), _pct(passed_random)])
    rows.append(["valid crystals", _pct(valid_rate), "-"])
    table = rd.write_table("table5", ["metric", "translation", "random pairing"], rows)
    if rd.main:  # every crystal, TE-filter passes tagged `_hit`; the figure shows them first
        hits = np.zeros(n, bool)
        hits[valid] = te
        write_every_structure(rd.path / "structures", stage, ["hit" if h else "" for h in hits])
        order = np.lexsort((np.arange(n), ~valid, ~hits))
        plot_dos_pairs(rd.path / "translation.png", stage, order, title="reference vs translated")
    unique, novel = unique_novel(stage)
    summary = {
        "references": names,
        "metrics": metrics,
        "metrics_ci": metric_intervals(estimates),
        "te_pass": float(te.sum() / n),
        "te_pass_ci": passed.ci(),
        "te_pass_random": float(te_random.sum() / n),
        "te_pass_random_ci": passed_random.ci(),
        "valid": valid_rate.value,
        "valid_ci": valid_rate.ci(),
        "crystals": n,
        "unique": stage["unique"],
        "unique_ci": unique.ci(),
        "novel": stage["novel"],
        "novel_ci": novel.ci(),
    }
    rd.write_json("summary.json", summary)
    rd.barrier("te_translation-written")  # no process leaves before process 0 has written
    return {"table": table, **summary}
