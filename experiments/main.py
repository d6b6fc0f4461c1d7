"""The installed `jaxdos` command: one subcommand per job, each `python -m experiments.<job>`.

jaxdos tcm-screen --out runs/tcm        (= python -m experiments.tcm_screen --out runs/tcm)
jaxdos <subcommand> --help              (that job's flags)
"""

import importlib
import sys

# subcommand -> experiments module (each has `main(argv)`)
COMMANDS = {
    "design": "design",
    "generate": "generate",
    "sample-dos": "sample_dos",
    "tcm-screen": "tcm_screen",
    "te-translation": "te_translation",
    "multi-property": "multi_property",
    "audit-dos": "audit_dos",
    "eval-crystal": "eval_crystal",
    "eval-guidance": "eval_guidance",
    "make-world": "make_world",
    "load-mp": "load_mp",
    "convert-mattergen": "convert_mattergen",
    "train-sampler": "train_sampler",
    "train-crystal": "train_crystal",
    "train-predictor": "train_predictor",
    "eval-predictor": "eval_predictor",
    "overfit-crystal": "overfit_crystal",
}


def _usage() -> str:
    return "usage: jaxdos {" + ",".join(COMMANDS) + "} [flags]\n" + __doc__


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"jaxdos: error: unknown subcommand {name!r} (one of: {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        raise SystemExit(2)
    module = importlib.import_module(f"experiments.{COMMANDS[name]}")
    sys.argv[0] = f"jaxdos {name}"  # argparse names the subcommand in usage and errors
    code = module.main(rest)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        raise SystemExit(code)  # a job's main that returns its exit status (load-mp, convert)


if __name__ == "__main__":
    main()
