"""End to end: N guided DOS candidates through rejection, projected to 1 M; the default tcm_screen.

    python -m experiments.bench_end_to_end --quick          # N = 16, 8 steps on CPU
    python -m experiments.bench_end_to_end --n 1048576 --batch 8192     # the GPU goal (<= 10 min)

Part 1 times `run_rejection` (the streamed, sharded production loop: guided Algorithm 2 with the
band-gap prior, classifier guidance and K drawn near the target, decode, acceptance on device,
chunked writes overlapping the next batch) for `--n` proposals of the `tiny` preset with the
`paper` sampling schedule (128 steps, 1 corrector step), target E_BG = 2.0 eV +- 10 %, on all
visible devices. Weights: the embedded `tiny` sampler if it exists, else random init (throughput
does not depend on training; acceptance does, so the accepted count is reported, not compared).
Compile time is measured on a first one-batch run and excluded. The projected time for 1 M
proposals is N_target / (proposals/s); the goal is <= 600 s on one H100. `--quick` runs 8 steps
instead of 128 (128 guided steps cost ~1 s per proposal on a loaded 2-core CPU) and also reports
the projection scaled to 128 steps (the trajectory is one scan, so its cost is linear in steps).

Part 2 runs the default `python -m experiments.tcm_screen` (fresh output folder) as a subprocess and
reports its wall time, if both embedded models (DOS sampler and crystal) exist; otherwise it says
which is missing and times nothing. `--skip-screen` leaves it out.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments import benchio

__all__ = ["main", "time_rejection", "time_tcm_screen"]

TARGET = 1_000_000
GOAL_S = 600.0


def _sampler():
    """(params, model config, K distribution, source): the embedded tiny sampler or random init."""
    import jax
    import numpy as np

    from jaxdos.sampler.checkpoint import load_default
    from jaxdos.sampler.config import ModelConfig
    from jaxdos.sampler.sampling import init_sampler_params
    from jaxdos.sampler.scale import ScaleDistribution

    try:
        m = load_default()
        return m.params, m.config, m.scale_distribution, "embedded tiny checkpoint"
    except FileNotFoundError:
        pass
    mc = ModelConfig.tiny()
    params = init_sampler_params(jax.random.key(0), mc)
    rng = np.random.default_rng(0)
    dist = ScaleDistribution.from_arrays(rng.uniform(0.5, 3.0, 512), rng.uniform(0.0, 4.0, 512))
    return params, mc, dist, "random init (no embedded checkpoint)"


def time_rejection(n: int, batch: int, steps: int, correctors: int) -> dict:
    """Proposals/s of `run_rejection` over `n` proposals (compile excluded)."""
    import jax

    from jaxdos.sampler.config import DOSSamplingConfig
    from jaxdos.sampler.proposal import guided_proposer
    from jaxdos.sampler.rejection import RejectionConfig, run_rejection
    from jaxdos.sampler.targets import Targets

    params, mc, dist, source = _sampler()
    targets = Targets.of(band_gap=2.0)
    sc = DOSSamplingConfig.paper(steps=steps, corrector_steps=correctors)
    proposer = guided_proposer(params, mc, dist, targets, sampling_config=sc)

    def go(total, seed):
        cfg = RejectionConfig(accept=total, proposals=total, batch_size=batch, seed=seed)
        with tempfile.TemporaryDirectory() as out:
            return run_rejection(proposer, targets, cfg, out=out, progress=False)

    t0 = time.perf_counter()
    go(batch, 1)  # compile + one batch
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = go(n, 2)
    seconds = time.perf_counter() - t0
    rate = res.proposals / seconds
    return {
        "weights": source,
        "preset": "tiny",
        "steps": steps,
        "corrector_steps": correctors,
        "batch": batch,
        "devices": jax.device_count(),
        "device_kind": benchio.device_kind(),
        "proposals": res.proposals,
        "accepted": len(res),
        "seconds": seconds,
        "first_batch_seconds": first_s,
        "proposals_per_s": rate,
        "projected_1M_seconds": TARGET / rate,
        "projected_1M_seconds_at_128_steps": TARGET / rate * 128 / steps,
        "goal_1M_seconds": GOAL_S,
    }


def time_tcm_screen(timeout: float) -> dict:
    """Wall time of the default tcm_screen, or why it was not run."""
    from jaxdos.crystal.checkpoint import DEFAULT_DIR as CRYSTAL_DIR
    from jaxdos.modeldir import MODEL_FILE
    from jaxdos.sampler.checkpoint import DEFAULT_DIR as SAMPLER_DIR

    missing = [str(p) for p in (SAMPLER_DIR, CRYSTAL_DIR) if not (p / MODEL_FILE).exists()]
    if missing:
        return {"tcm_screen": "not run", "reason": f"embedded model(s) missing: {missing}"}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "experiments.tcm_screen", "--out", str(Path(out) / "tcm")]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"tcm_screen": "timed out", "timeout_s": timeout}
        seconds = time.perf_counter() - t0
    if proc.returncode:
        return {"tcm_screen": "failed", "stderr_tail": proc.stderr[-1500:]}
    return {"tcm_screen": "ok", "seconds": seconds, "command": "python -m experiments.tcm_screen"}


def main(argv=None):
    p = benchio.parser(
        __doc__, quick="N=16, batch 8, 8 steps (CPU)", out="results/bench_end_to_end.json"
    )
    p.add_argument("--n", type=int, default=TARGET, help="proposals to time")
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--correctors", type=int, default=1)
    p.add_argument("--skip-screen", action="store_true")
    p.add_argument("--screen-timeout", type=float, default=1800.0)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.batch, args.steps = 16, 8, 8
    if args.n < 1 or args.batch < 1:
        raise ValueError(f"--n, --batch: expected >= 1, got {args.n}, {args.batch}")
    row = time_rejection(args.n, args.batch, args.steps, args.correctors)
    at128 = row["projected_1M_seconds_at_128_steps"]
    verdict = "meets" if at128 <= GOAL_S else "misses"
    benchio.summary(
        f"end-to-end rejection tiny/{row['steps']} steps K={row['corrector_steps']} "
        f"B={row['batch']} on {row['devices']}x {row['device_kind']}: {row['proposals']} proposals "
        f"in {row['seconds']:.1f}s = {row['proposals_per_s']:.1f}/s -> 1M in "
        f"{row['projected_1M_seconds']:.3g}s, at 128 steps {at128:.3g}s ({verdict} the "
        f"{GOAL_S:.0f}s goal); "
        f"accepted {row['accepted']} ({row['weights']})"
    )
    screen = {"tcm_screen": "skipped (--skip-screen)"} if args.skip_screen else None
    if screen is None:
        screen = time_tcm_screen(args.screen_timeout)
    if screen.get("tcm_screen") == "ok":
        benchio.summary(f"default tcm_screen: {screen['seconds']:.1f}s wall")
    else:
        reason = f" ({screen['reason']})" if "reason" in screen else ""
        benchio.summary(f"default tcm_screen: {screen['tcm_screen']}{reason}")
    benchio.write_json(args.out, {"rejection": row, "screen": screen})
    return row, screen


if __name__ == "__main__":
    main()
