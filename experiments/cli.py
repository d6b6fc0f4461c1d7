"""Flags every long-running experiment command shares: its results folder and the multi-host start.

    add_run_flags(parser, out="runs/name")   # --out, --resume, --force, --seed
    add_crystal_flags(parser, settings)      # --crystals-per-dos, --guidance, --steps,
                                             # --corrector-steps, --type-temperature,
                                             # --crystal-batch, --scorer,
                                             # --guide-predictor, --guide-strength,
                                             # --guide-band-gap, --guide-dos-at-fermi,
                                             # --guide-integrated-dos (LO HI each),
                                             # --guide-tcm {1,2}
    crystal_settings(args)                   # those flags as keyword arguments
    add_model_flags(parser)                  # --dos-model, --crystal-model (model directories)
    add_sampling_flags(parser)               # DOSSampler options: --unmask-order, --temperature,
                                             # --final-argmax, --top-p, --noise-length
    sampling_config(args)                    # a DOSSamplingConfig of those (and --steps), or None
    add_multihost_flags(parser)              # --coordinator, --num-processes, --process-id,
                                             # --auto-cluster
    start_multihost(args)                    # validate them and start jax.distributed

`start_multihost` must run before anything touches a JAX backend: `jax.distributed.initialize`
refuses to start once devices exist. See docs/multihost.md for the launch commands.
"""

import argparse

__all__ = [
    "add_run_flags",
    "add_crystal_flags",
    "crystal_settings",
    "add_model_flags",
    "add_sampling_flags",
    "sampling_config",
    "add_multihost_flags",
    "start_multihost",
    "check_local_devices",
    "check_splits_over_devices",
    "is_main_process",
]


def add_run_flags(
    parser: argparse.ArgumentParser, *, out: str, force: bool = True, seed: int = 0
) -> None:
    """--out (default `out`), --resume, --seed (default `seed`) and, if `force`, --force."""
    parser.add_argument("--out", default=out, help=f"output folder (default {out})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    if force:
        parser.add_argument("--force", action="store_true", help="overwrite the run in --out")
    parser.add_argument("--seed", type=int, default=seed, help=f"run seed (default {seed})")


# CrystalSettings field -> (flag, type, help[, more argparse keywords]); the flag is the field name
# except --guidance, which kept its name when the field became `cfg_scale` (stage 1's `gamma` is a
# different knob).
_CRYSTAL_FLAGS = {
    "crystals_per_dos": ("--crystals-per-dos", int, "CDOSGen crystals per DOS"),
    "cfg_scale": ("--guidance", float, "classifier-free guidance scale of CDOSGen (cfg_scale)"),
    "steps": ("--steps", int, "CDOSGen sampler steps (MatterGen: 1000)"),
    "corrector_steps": (
        "--corrector-steps",
        int,
        "Langevin corrector iterations per CDOSGen step (MatterGen: 1)",
    ),
    "type_temperature": (
        "--type-temperature",
        float,
        "CDOSGen atom types drawn from softmax(logits / T) (MatterGen: 1)",
    ),
    "crystal_batch": ("--crystal-batch", int, "crystals per jitted CDOSGen batch"),
    "scorer": (
        "--scorer",
        str,
        "'oracle' (the world's tight-binding oracle) or a dos_predictor model directory "
        "(jaxdos train-predictor)",
    ),
    "guide_predictor": (
        "--guide-predictor",
        str,
        "a dos_predictor model directory that guides each conditioned crystal towards its DOS, "
        "or into the --guide-band-gap / --guide-dos-at-fermi / --guide-integrated-dos windows "
        "and towards --guide-tcm",
    ),
    "guide_strength": ("--guide-strength", float, "strength of --guide-predictor's guidance"),
    **{
        f"guide_{name}": (
            f"--guide-{name.replace('_', '-')}",
            float,
            f"guide the predicted {text} into [LO, HI] (needs --guide-predictor)",
            {"nargs": 2, "metavar": ("LO", "HI")},
        )
        for name, text in (
            ("band_gap", "E_BG (eV)"),
            ("dos_at_fermi", "DOS(E_F) (states/eV/atom)"),
            ("integrated_dos", "N(E_F) (states/atom)"),
        )
    },
    "guide_tcm": (
        "--guide-tcm",
        int,
        "guide the predicted DOS towards TCM Type 1 or 2 (a smooth surrogate of the paper's "
        "criteria; needs --guide-predictor)",
        {"choices": (1, 2)},
    ),
}


def add_crystal_flags(parser: argparse.ArgumentParser, defaults) -> None:
    """The `jaxdos.pipeline.screening.CrystalSettings` fields as flags, defaults from `defaults`."""
    for name, (flag, kind, text, *more) in _CRYSTAL_FLAGS.items():
        value = getattr(defaults, name)
        shown = ("oracle" if name == "scorer" else "none") if value is None else value
        parser.add_argument(
            flag, dest=name, type=kind, default=value, help=f"{text} ({shown})", **dict(*more)
        )


def crystal_settings(args: argparse.Namespace) -> dict:
    """The parsed `add_crystal_flags` values, as keyword arguments of a config (a window's
    [LO, HI] list as a tuple)."""
    return {
        name: tuple(v) if isinstance(v := getattr(args, name), list) else v
        for name in _CRYSTAL_FLAGS
    }


def add_model_flags(
    parser: argparse.ArgumentParser,
    *,
    dos: bool = True,
    crystal: bool = True,
    dest: str = "dos_model",
) -> None:
    """--dos-model DIR (a "dossampler" model) and --crystal-model DIR (a "cdosgen" one, e.g. a
    converted MatterGen); unset: the embedded defaults. `dest` keeps an older field name
    (`checkpoint`), whose `--checkpoint` flag stays an alias of --dos-model."""
    if dos:
        names = ("--dos-model",) if dest == "dos_model" else ("--checkpoint", "--dos-model")
        parser.add_argument(
            *names, dest=dest, metavar="DIR", help="DOSSampler model directory (default: embedded)"
        )
    if crystal:
        parser.add_argument(
            "--crystal-model",
            metavar="DIR",
            help="CDOSGen model directory, e.g. a converted MatterGen (default: embedded)",
        )


def config_error(parser: argparse.ArgumentParser, err: ValueError):
    """Exit with `err` as a one-line usage error, its leading config fields ("cfg_scale: ...",
    "band_gap, dos_ef: ...") replaced by the flags that set them ("--guidance: ...")."""
    msg = str(err)
    head, sep, rest = msg.partition(":")
    flags = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}
    fields = [f.strip() for f in head.split(",")]
    if sep and all(f in flags for f in fields):
        msg = f"{', '.join(flags[f] for f in fields)}:{rest}"
    parser.error(msg.splitlines()[0] if msg else msg)


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    """The DOSSampler's sampling options beside Algorithm 2 (`DOSSamplingConfig`); unset flags keep
    its defaults, which are Algorithm 2."""
    parser.add_argument(
        "--unmask-order", choices=("random", "confidence"), help="DOSSampler unmasking order"
    )
    parser.add_argument(
        "--temperature", type=float, help="DOSSampler draw temperature (0: arg-max)"
    )
    parser.add_argument("--final-argmax", action="store_true", help="arg-max at the last step")
    parser.add_argument("--top-p", type=float, help="DOSSampler nucleus mass")
    parser.add_argument(
        "--noise-length", type=float, help="correlation length (bins) of the draws' noise"
    )


def sampling_config(args: argparse.Namespace):
    """`DOSSamplingConfig` of the `add_sampling_flags` flags and `--steps` that were given, or None
    when none was (callers then keep their own default). ValueError names a bad value."""
    from jaxdos.sampler.config import DOSSamplingConfig

    kw = {
        name: getattr(args, name)
        for name in ("steps", "unmask_order", "temperature", "top_p", "noise_length")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "final_argmax", False):
        kw["final_argmax"] = True
    return DOSSamplingConfig(**kw) if kw else None


def add_multihost_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `jaxdos.sharding.initialize_distributed` (all absent: single process)."""
    group = parser.add_argument_group(
        "multi-host",
        "every process runs the same command with its own --process-id (or set "
        "JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID); --out must be shared",
    )
    group.add_argument("--coordinator", help="host:port of process 0")
    group.add_argument("--num-processes", type=int, help="number of processes")
    group.add_argument("--process-id", type=int, help="this process's id, in [0, num-processes)")
    group.add_argument(
        "--auto-cluster",
        action="store_true",
        help="let JAX detect SLURM / Open MPI / TPU pod settings",
    )


def start_multihost(args: argparse.Namespace) -> bool:
    """Validate the multi-host flags and start the runtime; True if this run is multi-process.

    Raises:
        ValueError: naming the flag that is missing or out of range (before any compute).
    """
    from jaxdos import sharding

    return sharding.initialize_distributed(
        args.coordinator, args.num_processes, args.process_id, auto=args.auto_cluster
    )


def check_local_devices(devices: int | None) -> None:
    """--devices picks the first N devices of the global list, i.e. process 0's in a multi-host run.

    Raises:
        ValueError: naming `devices` when it is given in a multi-process run.
    """
    import jax

    if devices is not None and jax.process_count() > 1:
        raise ValueError("devices: --devices selects local devices; omit it in multi-host runs")


def check_splits_over_devices(flag: str, value: int | None) -> None:
    """A training batch split over every device of every process must divide evenly.

    Raises:
        ValueError: naming `flag` when `value` (None: not given) is no multiple of the count.
    """
    import jax

    if value is not None and value % jax.device_count():
        raise ValueError(
            f"{flag}: {value} is not a multiple of the {jax.device_count()} devices of this run "
            "(every device of every process)"
        )


def is_main_process() -> bool:
    """True on process 0, the one that prints the results (always true in a single-process run)."""
    import jax

    return jax.process_index() == 0
