"""The predictor against the oracle on the world's test split, like the paper's Table 7, as a
library job.

`run(EvalPredictorConfig(model=DIR), out)` predicts the DOS of every test crystal with the model
and with a composition-only baseline (`--baseline DIR`, or one trained here on the model's own
training data, `baseline_steps` steps, under `out/baseline`), compares both with the oracle's DOS
stored in the records (`jaxdos.predictor.evaluate.table7`: MAE, MSE, R^2, W1, cosine and the
property MAEs, each with its bootstrap 95 % interval), times crystals/s of each predictor and of
the oracle (on `throughput` test crystals), and writes `out/summary.json` and `out/report.md`.
`python -m experiments.eval_predictor` is its command line.
"""

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from jaxdos.chunkstore import write_json
from jaxdos.data.world import load_world
from jaxdos.kernels import stats
from jaxdos.kernels.oracle import oracle_dos
from jaxdos.modeldir import MODEL_FILE
from jaxdos.pipeline.writers import markdown_table
from jaxdos.predictor import fit
from jaxdos.predictor.checkpoint import DOSPredictorModel
from jaxdos.predictor.config import CompositionConfig
from jaxdos.predictor.evaluate import ROWS, table7
from jaxdos.predictor.predict import predict_dos

__all__ = ["EvalPredictorConfig", "run"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalPredictorConfig:
    """One evaluation.

    Attributes:
        model: a "dos_predictor" model directory.
        baseline: a composition-baseline model directory, or None to train one here.
        baseline_steps: training steps of that baseline.
        world: a world file (None: the packaged subset); its test split is evaluated.
        max_crystals: cap on the test crystals (0: all).
        throughput: test crystals the oracle is timed on.
        seed: bootstrap and baseline seed.
    """

    model: str
    baseline: str | None = None
    baseline_steps: int = 2000
    world: str | None = None
    max_crystals: int = 0
    throughput: int = 64
    seed: int = 0

    def __post_init__(self):
        for name in ("model", "baseline"):
            d = getattr(self, name)
            if d is not None and not (Path(d) / MODEL_FILE).is_file():
                raise ValueError(f"{name}: {d} is not a model directory (no {MODEL_FILE})")
        if self.world is not None and not Path(self.world).is_file():
            raise ValueError(f"world: {self.world} is not a file")
        if self.baseline_steps < 1:
            raise ValueError(f"baseline_steps: expected >= 1, got {self.baseline_steps}")
        for name in ("max_crystals", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.throughput < 1:
            raise ValueError(f"throughput: expected >= 1, got {self.throughput}")


def _timed_predict(crystals, model) -> tuple[np.ndarray, float]:
    predict_dos(crystals.take(np.arange(min(1, len(crystals.num_atoms)))), model)  # compile
    t0 = time.perf_counter()
    dos = predict_dos(crystals, model)
    return dos, len(crystals.num_atoms) / max(time.perf_counter() - t0, 1e-9)


def _baseline(cfg: EvalPredictorConfig, model: DOSPredictorModel, out: Path, log):
    if cfg.baseline is not None:
        return DOSPredictorModel.load(cfg.baseline)
    source = model.meta.get("source", "world")
    records = None if source == "world" else source
    train = fit.predictor_train_config(steps=cfg.baseline_steps, seed=cfg.seed, log_every=100)
    job = fit.PredictorFitConfig(model=CompositionConfig(), train=train, records=records)
    log(f"training the composition baseline on {source} ({cfg.baseline_steps} steps)")
    return DOSPredictorModel.load(fit.run(job, out / "baseline", log=log))


def run(cfg: EvalPredictorConfig, out, *, log=None) -> str:
    """Evaluate into `out` (created); returns the markdown report.

    Raises:
        ValueError: naming `out` if it exists and is not a folder, before any compute.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder")
    log = log or (lambda line: print(line, file=sys.stderr))
    test = load_world("test", cfg.world)
    if cfg.max_crystals:
        test = test.take(np.arange(min(cfg.max_crystals, len(test))))
    model = DOSPredictorModel.load(cfg.model)
    out.mkdir(parents=True, exist_ok=True)
    baseline = _baseline(cfg, model, out, log)
    crystals = test.crystals
    columns = {}
    for name, m in (("predictor", model), ("composition baseline", baseline)):
        dos, rate = _timed_predict(crystals, m)
        columns[name] = {"table": table7(dos, test.dos, seed=cfg.seed), "crystals_per_s": rate}
        log(f"{name}: {rate:.1f} crystals/s")
    sub = crystals.take(np.arange(min(cfg.throughput, len(test))))
    oracle_dos(*(f[:1] for f in sub))  # compile
    t0 = time.perf_counter()
    oracle_dos(*sub)
    oracle_rate = len(sub.num_atoms) / max(time.perf_counter() - t0, 1e-9)

    header = ["metric", *columns]
    rows = [[k, *(stats.fmt(c["table"][k]) for c in columns.values())] for k in ROWS]
    rows.append(["crystals/s", *(f"{c['crystals_per_s']:.1f}" for c in columns.values())])
    report = (
        f"# DOS predictor vs the oracle on the world test split (n={len(test)})\n\n"
        + markdown_table(header, rows)
        + f"\n\nOracle (tight-binding): {oracle_rate:.1f} crystals/s on {len(sub.num_atoms)} "
        "crystals. Means over crystals with bootstrap 95 % intervals.\n"
    )
    summary = {
        "config": dataclasses.asdict(cfg),
        "n": len(test),
        "oracle_crystals_per_s": oracle_rate,
        **{
            name: {
                "crystals_per_s": c["crystals_per_s"],
                **{k: {"value": e.value, **e.ci()} for k, e in c["table"].items()},
            }
            for name, c in columns.items()
        },
    }
    write_json(out / "summary.json", summary, indent=2)
    (out / "report.md").write_text(report)
    return report
