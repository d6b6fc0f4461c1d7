"""DOSSampler training gradient against the batch size: does a larger batch fill the cores?

    python -m experiments.bench_sampler_train [--batches 16 32 64] [--rounds 5] [--quick] [--out F]

A jitted `jax.grad` of the λ-DCE loss (`jaxdos.sampler.loss.dce_loss`) at the tiny preset, with
random weights and tokens (speed does not depend on the values), timed at each batch size in
alternating rounds (`benchio.alternate`). Each row gives the median time per call and per
spectrum, XLA's FLOP count of the gradient, and the achieved fraction of the float32 matmul peak
measured in the same run (`experiments.bench_sampler.matmul_peak`). Issue 17's goal for training
is >= 40 % of that peak.
"""

import jax
import jax.numpy as jnp

from experiments import benchio
from experiments.bench_sampler import matmul_peak
from jaxdos.kernels.tokenizer import N_OUTPUT
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.loss import dce_loss
from jaxdos.sampler.model import init_params


def gradient(config: ModelConfig, params, batch: int):
    """(a blocking call of the jitted gradient at `batch`, its XLA FLOP count)."""
    tokens = jax.random.randint(jax.random.key(batch), (batch, 256), 0, N_OUTPUT)
    scale, key = jnp.full(batch, 3.0), jax.random.key(2)
    grad = jax.grad(lambda prm: dce_loss(prm, tokens, scale, key, config=config)[0])
    compiled = jax.jit(grad).lower(params).compile()  # compiled once: timed and costed
    flops = compiled.cost_analysis().get("flops", float("nan"))
    return (lambda: jax.block_until_ready(compiled(params))), flops


def main(argv=None) -> None:
    out = "results/bench_sampler_train.json"
    p = benchio.parser(__doc__, quick="batches 4 8, 3 rounds", out=out)
    p.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    if min(args.batches) < 1 or args.rounds < 1:
        p.error("--batches and --rounds: expected >= 1")
    batches, rounds = ([4, 8], 3) if args.quick else (args.batches, args.rounds)
    config = ModelConfig.tiny()
    params = init_params(jax.random.key(0), config)
    calls, flops = {}, {}
    for b in batches:
        calls[f"B={b}"], flops[b] = gradient(config, params, b)
    peak = matmul_peak()
    times = benchio.alternate(calls, rounds)
    rows = []
    for b in batches:
        t = times[f"B={b}"]
        rate = flops[b] / t["median_s"]
        per = 1e3 * t["median_s"] / b
        rows.append({"batch": b, **t, "ms_per_spectrum": per, "gflop": flops[b] / 1e9,
                     "gflops": rate / 1e9, "peak_fraction": rate / peak})  # fmt: skip
        benchio.summary(
            f"DOSSampler grad, tiny B={b}: {1e3 * t['median_s']:.0f} ms "
            f"(spread {t['spread']:.0%}), {per:.1f} ms per spectrum, "
            f"{rate / 1e9:.0f} GFLOP/s = {rate / peak:.0%} of a {peak / 1e9:.0f} GFLOP/s peak"
        )
    if args.out:
        benchio.write_json(args.out, {"rounds": rounds, "peak_gflops": peak / 1e9, "rows": rows})


if __name__ == "__main__":
    main()
