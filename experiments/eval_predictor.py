"""Evaluate a DOS predictor against the oracle on the world's test split (the paper's Table 7).

    python -m experiments.eval_predictor --model DIR --out DIR [--baseline DIR]
        [--baseline-steps 2000] [--world FILE] [--max-crystals 0] [--throughput 64] [--seed 0]

MAE, MSE, R^2, Wasserstein distance and cosine of the spectra and the MAEs of E_BG, DOS(E_F) and
N(E_F), each with its bootstrap 95 % interval, side by side with a composition-only MLP baseline
(`--baseline`, or trained here on the model's training data), and crystals/s beside the oracle's.
Writes OUT/summary.json and OUT/report.md and prints the report.
"""

import argparse

from experiments import cli
from jaxdos.pipeline.jobs.eval_predictor import EvalPredictorConfig, run

__all__ = ["main"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="a dos_predictor model directory")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--baseline", default=None, help="a composition-baseline model directory")
    p.add_argument(
        "--baseline-steps", type=int, default=2000, help="steps of a baseline trained here"
    )
    p.add_argument("--world", default=None, help="world file (default: the packaged subset)")
    p.add_argument("--max-crystals", type=int, default=0, help="cap the test crystals (0: all)")
    p.add_argument("--throughput", type=int, default=64, help="crystals the oracle is timed on")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        cfg = EvalPredictorConfig(
            model=a.model,
            baseline=a.baseline,
            baseline_steps=a.baseline_steps,
            world=a.world,
            max_crystals=a.max_crystals,
            throughput=a.throughput,
            seed=a.seed,
        )
        report = run(cfg, a.out)
    except ValueError as err:
        cli.config_error(p, err)
    print(report)
    print(f"results in {a.out}/ (summary.json, report.md)")


if __name__ == "__main__":
    main()
