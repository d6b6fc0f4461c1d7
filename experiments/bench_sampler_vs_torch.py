"""DOSSampler throughput, JAX (jit) vs the PyTorch reference (eager, and torch.compile if it works).

    python -m experiments.bench_sampler_vs_torch [--quick] [--compile] [--out PATH]

Same weights (the JAX params converted with `experiments.reference.torch_sampler`), same
configuration: guided Algorithm 2 with two property targets, N predictor steps, no corrector,
float32 with matmul precision "highest" on both sides, batch B. The sides run in alternating
rounds (`benchio.alternate`, `--rounds`, default 5); each reports its median and spread, and the
ratio is of the medians. One line per configuration; the JSON (--out) holds the machine record
(`benchio.write_json`: CPU, versions, command, load before and after, quiet or not).
"""

import time

import jax
import jax.numpy as jnp
import torch
from flax import traverse_util

from experiments import benchio
from experiments.reference import torch_sampler as ref
from jaxdos.kernels.grid import N_BINS
from jaxdos.kernels.tokenizer import MASK_ID
from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig
from jaxdos.sampler.guidance import ClassifierGuidance
from jaxdos.sampler.model import init_params
from jaxdos.sampler.regressor import init_regressor
from jaxdos.sampler.sampling import SamplerParams, sample

GUIDE = ClassifierGuidance(targets=(("band_gap", 2.0), ("integrated_dos", 2.0)), gammas=(1.0, 1.0))


def torch_sample(net, reg, stats, log_scale, steps, t_min, gen):
    """Whole guided trajectory with the reference predictor step (torch RNG)."""
    b = log_scale.shape[0]
    tokens = torch.full((b, N_BINS), MASK_ID, dtype=torch.long)
    grid = torch.linspace(1.0, t_min, steps + 1)
    for i in range(steps):
        u = torch.rand(b, N_BINS, generator=gen)
        v = torch.rand(b, N_BINS, generator=gen)
        tokens, _, _ = ref.predictor_step(
            net, reg, stats, tokens, log_scale, float(grid[i]), float(grid[i + 1]),
            i == steps - 1, u, v, GUIDE.targets, GUIDE.gammas,
        )  # fmt: skip
    return tokens


def run(cfg: ModelConfig, batch: int, steps: int, rounds: int, try_compile: bool) -> dict:
    k1, k2 = jax.random.split(jax.random.key(0))
    params = SamplerParams(
        jax.jit(lambda k: init_params(k, cfg))(k1),
        jax.jit(lambda k: init_regressor(k, cfg))(k2),
        jnp.array([1.0, 0.3, 2.0]),
        jnp.array([0.8, 0.2, 1.5]),
    )
    scfg = DOSSamplingConfig(steps=steps, corrector_steps=0)
    scale = jnp.ones((batch,))

    def jax_run():
        with jax.default_matmul_precision("highest"):
            out = sample(params, jax.random.key(1), scale, model_config=cfg,
                         sampling_config=scfg, guidance=GUIDE)  # fmt: skip
        out.block_until_ready()

    t0 = time.perf_counter()
    jax_run()
    compile_s = time.perf_counter() - t0

    torch.set_float32_matmul_precision("highest")
    net, reg = (
        ref.DOSTransformer(cfg).eval(),
        ref.PropertyRegressor(cfg.regressor, cfg.width).eval(),
    )
    flat = lambda p: traverse_util.flatten_dict(p["params"], sep="/")
    net.load_state_dict(ref.state_dict_from_flax(flat(params.diffusion)), strict=True)
    reg.load_state_dict(ref.state_dict_from_flax(flat(params.regressor)), strict=True)
    stats = (torch.tensor([1.0, 0.3, 2.0]), torch.tensor([0.8, 0.2, 1.5]))
    log_scale = torch.zeros(batch)
    gen = torch.Generator().manual_seed(0)
    sides = {
        "jax_jit": jax_run,
        "torch_eager": lambda: torch_sample(net, reg, stats, log_scale, steps, scfg.t_min, gen),
    }
    row = {
        "model": {"layers": cfg.num_layers, "width": cfg.width},
        "batch": batch,
        "steps": steps,
        "guidance": "2 targets",
        "jax_compile_s": compile_s,
        "torch_threads": torch.get_num_threads(),
    }
    if try_compile:
        try:
            cnet = torch.compile(net)
            cnet.embedding_matrix = net.embedding_matrix
            compiled = lambda: torch_sample(cnet, reg, stats, log_scale, steps, scfg.t_min, gen)
            compiled()
            sides["torch_compile"] = compiled
        except Exception as e:  # torch.compile needs a working C++ toolchain on CPU
            row["torch_compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    timed = benchio.alternate(sides, rounds)
    for name, t in timed.items():
        row[f"{name}_cands_per_s"] = batch / t["median_s"]
        row[f"{name}_spread"] = t["spread"]
        row[f"{name}_times_s"] = t["times_s"]
    jax_s, torch_s = timed["jax_jit"]["median_s"], timed["torch_eager"]["median_s"]
    row["ratio_jax_over_torch_eager"] = torch_s / jax_s
    return row


def main(argv=None):
    parser = benchio.parser(
        __doc__,
        quick="one small configuration, < 1 min",
        out="results/bench_sampler_vs_torch.json",
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (>= 1)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: expected >= 1, got {args.rounds}")
    if args.quick:
        configs = [(ModelConfig.tiny(num_layers=2, width=64, cond_dim=32), 4, 4)]
    else:
        configs = [(ModelConfig.tiny(), 16, 16)]
    rows = []
    for cfg, batch, steps in configs:
        row = run(cfg, batch, steps, args.rounds, args.compile)
        rows.append(row)
        extra = (
            f", torch.compile {row['torch_compile_cands_per_s']:.2f}/s"
            if "torch_compile_cands_per_s" in row
            else (f", torch.compile failed ({row['torch_compile_error']})" if args.compile else "")
        )
        benchio.summary(
            f"DOSSampler {cfg.num_layers}x{cfg.width} B={batch} N={steps} guided: "
            f"JAX jit {row['jax_jit_cands_per_s']:.2f} cand/s (spread "
            f"{row['jax_jit_spread']:.0%}) vs torch eager {row['torch_eager_cands_per_s']:.2f} "
            f"cand/s (spread {row['torch_eager_spread']:.0%}) = "
            f"{row['ratio_jax_over_torch_eager']:.2f}x (medians of {args.rounds}){extra}"
        )
    benchio.write_json(args.out, {"device": benchio.device_kind(), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
