"""Stage 2 (CDOSGen) measured against issue 12's goals 0 and 1 (`jaxdos.pipeline.realism`) as a
library job.

`run(EvalCrystalConfig(realism=RealismConfig(...), model="default"), out)` writes
`out/summary.json` and `out/report.md` and returns the report; `python -m
experiments.eval_crystal` is its command line.
"""

import dataclasses
import sys
from pathlib import Path

from jaxdos.chunkstore import write_json
from jaxdos.modeldir import MODEL_FILE
from jaxdos.pipeline.realism import RealismConfig, evaluate, report_markdown, summary_json

__all__ = ["EvalCrystalConfig", "run"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalCrystalConfig:
    """One evaluation.

    Attributes:
        realism: what to measure, and how much (`RealismConfig`, or its `quick` preset).
        model: a CDOSGen model directory, or "default" for the embedded one.
    """

    realism: RealismConfig = dataclasses.field(default_factory=RealismConfig)
    model: str = "default"

    def __post_init__(self):
        if not isinstance(self.realism, RealismConfig):
            raise ValueError(f"realism: expected a RealismConfig, got {self.realism!r}")
        if self.model != "default" and not (Path(self.model) / MODEL_FILE).is_file():
            raise ValueError(f"model: {self.model} is not a model directory (no {MODEL_FILE})")


def _model(spec: str):
    """None for the embedded default, else the model saved in directory `spec`."""
    if spec == "default":
        return None
    from jaxdos.pipeline.models import as_model

    return as_model(spec, "cdosgen")


def run(cfg: EvalCrystalConfig, out, *, log=None) -> str:
    """Evaluate into `out` (created); returns the markdown report.

    Args:
        cfg: the evaluation.
        out: the output folder.
        log: `log(line)` for progress lines (default: standard error).

    Raises:
        ValueError: naming `out` if it exists and is not a folder, before any compute.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder")
    log = log or (lambda line: print(line, file=sys.stderr))
    result = evaluate(cfg.realism, _model(cfg.model), log=log)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": {**dataclasses.asdict(cfg.realism), "model": cfg.model},
        **summary_json(result),
    }
    write_json(out / "summary.json", summary, indent=2)
    report = report_markdown(result)
    (out / "report.md").write_text(report)
    return report
