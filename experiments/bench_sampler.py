"""Benchmark of the guided DOSSampler: candidates/s, MFU and the guidance-gradient share.

    python -m experiments.bench_sampler [--quick] [--out results/bench_sampler.json]

For each (preset, batch size) it times a whole jitted trajectory (`sampling.sample`, N steps) with
classifier guidance and, in the same run, the unguided trajectory as the baseline (alternating
rounds, medians: `benchio.alternate`, `--rounds`); the guidance
share of step time is 1 - t_unguided / t_guided. Random-init weights (timing does not depend on
them). MFU = model FLOP/s / peak, where the peak is measured in the same run as the best float32
matmul throughput of this device (so on CPU it is "fraction of achievable matmul throughput").

FLOPs per trajectory (forward only; the guidance backward is counted as 2x its forward):
    per NFE and sequence, L = 256 bins, D width, n layers, V' = 1026 classes, F = mlp_ratio:
      network  = n (8 L D^2 + 4 F L D^2 + 4 L^2 D) + 2 L D V'
      guidance = 3 (2 L V' D + 2 L D p + 2 (L p) h + 2 h^2)      (p, h: regressor proj, hidden)
    trajectory = B N (1 + K) (network + guidance)  (K corrector steps; none after the last step)
"""

import time

import jax
import jax.numpy as jnp

from experiments import benchio
from jaxdos.kernels.tokenizer import N_OUTPUT
from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig
from jaxdos.sampler.guidance import ClassifierGuidance, NoGuidance
from jaxdos.sampler.sampling import init_sampler_params, sample

L = 256
GUIDE = ClassifierGuidance(targets=(("band_gap", 2.0), ("integrated_dos", 2.0)), gammas=(1.0, 1.0))


def flops_per_nfe(cfg: ModelConfig, guided: bool) -> float:
    """Model FLOPs of one network evaluation (+ guidance) for one sequence (module docstring)."""
    d, n, f = cfg.width, cfg.num_layers, cfg.mlp_ratio
    net = n * (8 * L * d * d + 4 * f * L * d * d + 4 * L * L * d) + 2 * L * d * N_OUTPUT
    p, h = cfg.regressor.proj_dim, cfg.regressor.hidden
    guide = 3 * (2 * L * N_OUTPUT * d + 2 * L * d * p + 2 * L * p * h + 2 * h * h)
    return net + (guide if guided else 0)


def matmul_peak(n: int = 1024, reps: int = 5) -> float:
    """Best float32 matmul FLOP/s over a few repetitions (the MFU denominator)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def sampler_fn(params, cfg, scfg, guidance, batch):
    """A blocking whole-trajectory call (a fresh key each call), compiled on its first call."""
    scale = jnp.ones((batch,))
    calls = iter(range(1 << 30))

    def run():
        key = jax.random.key(next(calls))
        out = sample(params, key, scale, model_config=cfg, sampling_config=scfg, guidance=guidance)
        out.block_until_ready()

    return run


def bench(preset: str, batch: int, steps: int, correctors: int, rounds: int, peak: float) -> dict:
    cfg = getattr(ModelConfig, preset)()
    params = init_sampler_params(jax.random.key(0), cfg)
    scfg = DOSSamplingConfig(steps=steps, corrector_steps=correctors)
    timed = benchio.alternate(
        {
            "guided": sampler_fn(params, cfg, scfg, GUIDE, batch),
            "unguided": sampler_fn(params, cfg, scfg, NoGuidance(), batch),
        },
        rounds,
    )
    t_guided, t_plain = timed["guided"]["median_s"], timed["unguided"]["median_s"]
    nfe = steps + (steps - 1) * correctors
    flops = batch * nfe * flops_per_nfe(cfg, guided=True)
    return {
        "preset": preset,
        "batch": batch,
        "steps": steps,
        "corrector_steps": correctors,
        "nfe": nfe,
        "bf16": cfg.bf16,
        "guided_s": t_guided,
        "unguided_s": t_plain,
        "guided_spread": timed["guided"]["spread"],
        "unguided_spread": timed["unguided"]["spread"],
        "guided_candidates_per_s": batch / t_guided,
        "unguided_candidates_per_s": batch / t_plain,
        "guidance_share": 1.0 - t_plain / t_guided,
        "gflop_per_trajectory": flops / 1e9,
        "mfu": flops / t_guided / peak,
        "peak_gflops": peak / 1e9,
        "device": benchio.device_kind(),
    }


def main(argv=None):
    p = benchio.parser(
        __doc__, quick="< 1 minute on CPU (few steps, small B)", out="results/bench_sampler.json"
    )
    p.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (>= 1)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds: expected >= 1, got {args.rounds}")
    if args.quick:
        plan = [("tiny", 4, 4, 1), ("tiny", 16, 4, 1), ("paper", 2, 2, 0)]
    else:
        plan = [("tiny", b, 32, 1) for b in (8, 32, 128)] + [("paper", b, 8, 1) for b in (4, 16)]
    peak = matmul_peak()
    rows = []
    for preset, batch, steps, corr in plan:
        row = bench(preset, batch, steps, corr, args.rounds, peak)
        rows.append(row)
        benchio.summary(
            f"{preset:5s} B={batch:4d} N={steps} K={corr}: guided "
            f"{row['guided_candidates_per_s']:.2f}"
            f" cand/s (spread {row['guided_spread']:.0%}) vs unguided "
            f"{row['unguided_candidates_per_s']:.2f} (ratio "
            f"{row['guided_candidates_per_s'] / row['unguided_candidates_per_s']:.2f}), guidance "
            f"share {100 * row['guidance_share']:.0f}%, MFU {100 * row['mfu']:.1f}% of "
            f"{row['peak_gflops']:.0f} GFLOP/s measured matmul peak"
        )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
