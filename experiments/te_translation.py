"""Crystal-to-crystal translation for thermoelectric-like materials (paper Section 6.2, Table 5).

reference crystals (TE-like in the world's test split, or --cif files) -> their oracle DOS
    -> CDOSGen (--crystals-per-dos per reference) -> oracle DOS of each generated crystal
    -> cosine, Pearson, JS, E_BG MAE, DOS(E_F) MAE, TE-filter pass rate
against the random-pairing baseline of Section 5.3 (each generated DOS scored against another
reference's DOS). Every cell carries its 95 % interval and n (`jaxdos.kernels.stats`: bootstrap
for the means, Wilson for the rates); summary.json has them under the `*_ci` keys.

python -m experiments.te_translation [--references 8] [--crystals-per-dos 4] [--cif a.cif ...]

Multi-host (docs/multihost.md): every process runs the same command with its own --process-id and
a shared --out; each process generates and scores its share of the crystal chunks, and process 0
writes the tables, structures and figures (the same as a single-process run with the same seed):

    python -m experiments.te_translation --out runs/te --coordinator 127.0.0.1:12345 \\
        --num-processes 2 --process-id 0 &
    python -m experiments.te_translation --out runs/te --coordinator 127.0.0.1:12345 \\
        --num-processes 2 --process-id 1
"""

import argparse
import dataclasses

import numpy as np
from pymatgen.core import Structure
from tqdm import tqdm

from experiments import cli
from experiments.rundir import RunDir
from experiments.screening import (
    CrystalSettings,
    conditioning_estimates,
    crystal_stage,
    derangement,
    metric_cells,
    metric_intervals,
    plot_dos_pairs,
    unique_novel,
    write_structures,
)
from jaxdos.data.world import load_world
from jaxdos.kernels import stats
from jaxdos.kernels.filters import screen_te
from jaxdos.pipeline.score import score

__all__ = ["TranslationConfig", "run", "main"]

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
    rd = RunDir(out, dataclasses.asdict(cfg), resume=resume, force=force)
    refs, names = reference_dos(cfg)
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
    if rd.main:
        write_structures(rd.path / "structures", stage, valid)
        plot_dos_pairs(rd.path / "translation.png", stage, valid, title="reference vs translated")
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--references", type=int, default=8)
    p.add_argument("--cif", nargs="*", default=(), help="reference CIF files (instead of world)")
    cli.add_crystal_flags(p, TranslationConfig)
    cli.add_run_flags(p, out="runs/te_translation")
    cli.add_multihost_flags(p)
    a = p.parse_args(argv)
    try:
        cfg = TranslationConfig(
            references=a.references,
            cif=tuple(a.cif),
            **cli.crystal_settings(a),
            seed=a.seed,
        )
        cli.start_multihost(a)
        result = run(cfg, a.out, resume=a.resume, force=a.force)
    except ValueError as err:
        p.error(str(err))
    if cli.is_main_process():
        tqdm.write(result["table"])


if __name__ == "__main__":
    main()
