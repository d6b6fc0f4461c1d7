"""Rejection throughput: the streamed, sharded loop vs a naive host loop, same sampler and seed.

    python -m experiments.bench_rejection --quick        # < 1 minute on CPU
    python -m experiments.bench_rejection --batch 256 512 --steps 32 --preset tiny

Figure: proposals/s of `run_rejection` (acceptance and the accepted count on device, the next batch
dispatched before the current one is pulled and written, chunked output). Baseline, measured in the
same run: a plain loop that calls `sampling.sample` per batch, pulls every token to the host and
decodes and tests them with numpy (`acceptance` run eagerly), writing nothing. Both use the same
randomly initialised network (throughput does not depend on training) and the target
E_BG = 2.0 eV ± 10 %; compile time is excluded (one warm-up batch each). Writes JSON.
"""

import time

from experiments import benchio

__all__ = ["main"]


def _setup(preset: str):
    import jax
    import numpy as np

    from jaxdos.sampler.config import ModelConfig
    from jaxdos.sampler.sampling import init_sampler_params
    from jaxdos.sampler.scale import ScaleDistribution

    mc = getattr(ModelConfig, preset)()
    params = init_sampler_params(jax.random.key(0), mc)
    rng = np.random.default_rng(0)
    dist = ScaleDistribution.from_arrays(rng.uniform(0.5, 3.0, 512), rng.uniform(0.0, 4.0, 512))
    return params, mc, dist


def bench(preset: str, batch: int, batches: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdos.kernels.tokenizer import decode
    from jaxdos.sampler.config import DOSSamplingConfig
    from jaxdos.sampler.proposal import guided_proposer
    from jaxdos.sampler.rejection import RejectionConfig, run_rejection
    from jaxdos.sampler.sampling import sample
    from jaxdos.sampler.targets import Targets, acceptance, guidance_for, prior_mask

    params, mc, dist = _setup(preset)
    sc = DOSSamplingConfig.fast(steps=steps)
    targets = Targets.of(band_gap=2.0)
    proposer = guided_proposer(params, mc, dist, targets, sampling_config=sc)
    n = batch * batches

    def streamed(total, seed):
        cfg = RejectionConfig(accept=total, proposals=total, batch_size=batch, seed=seed)
        return run_rejection(proposer, targets, cfg, progress=False)

    streamed(batch, 1)  # compile
    t0 = time.perf_counter()
    res = streamed(n, 2)
    t_stream = time.perf_counter() - t0

    prior = prior_mask(targets)
    guidance = guidance_for(targets)
    scales = np.asarray(dist.scale)

    def naive_batch(b):
        k = jnp.asarray(scales[np.random.default_rng(b).integers(0, scales.size, batch)])
        tokens = sample(
            params,
            jax.random.fold_in(jax.random.key(3), b),
            k,
            model_config=mc,
            sampling_config=sc,
            guidance=guidance,
            prior_mask=prior,
        )
        tokens = np.asarray(tokens)
        dos = np.asarray(decode(jnp.asarray(tokens), k))
        ok, _ = acceptance(targets, jnp.asarray(dos))  # eager, op by op
        return int(np.asarray(ok).sum())

    naive_batch(0)  # compile the sampler
    t0 = time.perf_counter()
    acc = sum(naive_batch(b) for b in range(1, batches + 1))
    t_naive = time.perf_counter() - t0
    return {
        "preset": preset,
        "batch": batch,
        "proposals": n,
        "steps": steps,
        "devices": jax.device_count(),
        "streamed_per_s": n / t_stream,
        "naive_per_s": n / t_naive,
        "ratio": t_naive / t_stream,
        "accepted_streamed": len(res),
        "accepted_naive": acc,
    }


def main(argv=None):
    ap = benchio.parser(
        __doc__, quick="one small configuration (< 1 min)", out="runs/bench_rejection.json"
    )
    ap.add_argument("--preset", default="tiny", choices=("tiny", "paper"))
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.batches, args.steps = [16], 2, 2
    rows = []
    for b in args.batch:
        r = bench(args.preset, b, args.batches, args.steps)
        rows.append(r)
        benchio.summary(
            f"rejection {r['preset']} batch={b} steps={r['steps']} devices={r['devices']}: "
            f"{r['streamed_per_s']:.1f} proposals/s streamed vs {r['naive_per_s']:.1f} naive "
            f"host loop ({r['ratio']:.2f}x)"
        )
    benchio.write_json(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
