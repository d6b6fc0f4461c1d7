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

from tqdm import tqdm

from experiments import cli
from jaxdos.pipeline.jobs.te_translation import TranslationConfig, run

__all__ = ["TranslationConfig", "run", "main"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--references", type=int, default=8)
    p.add_argument("--cif", nargs="*", default=(), help="reference CIF files (instead of world)")
    cli.add_crystal_flags(p, TranslationConfig)
    cli.add_model_flags(p, dos=False)
    cli.add_run_flags(p, out="runs/te_translation")
    cli.add_multihost_flags(p)
    a = p.parse_args(argv)
    try:
        cfg = TranslationConfig(
            references=a.references,
            cif=tuple(a.cif),
            **cli.crystal_settings(a),
            seed=a.seed,
            crystal_model=a.crystal_model,
        )
        cli.start_multihost(a)
        result = run(cfg, a.out, resume=a.resume, force=a.force)
    except ValueError as err:
        cli.config_error(p, err)
    if cli.is_main_process():
        tqdm.write(result["table"])


if __name__ == "__main__":
    main()
