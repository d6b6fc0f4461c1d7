"""Profile one DOS-sampler step: XLA cost analysis, where the time goes, and levers, in one run.

    python -m experiments.profile_sampler --quick            # tiny, B=8 (CPU, < 1 minute idle)
    python -m experiments.profile_sampler --preset paper --batch 256 --trace /tmp/trace

What it measures (all in the same process, best of `--repeats` after a compile call):
1. XLA's `cost_analysis()` of the compiled guided step (`sampling.sampler_step`, predictor + one
   corrector) and of its parts: the score network forward (`model.log_probs`), the guided logits
   (forward + regressor + its gradient w.r.t. the logits); compared with the analytic FLOP formula
   that `bench_sampler` uses for MFU (`flops_per_nfe`).
2. Time of those parts, so the share of the network, of the guidance gradient and of the
   sampling arithmetic (draws, ranks for the corrector) in one step is known.
3. Levers, before/after in this run: bfloat16 matmuls (`ModelConfig.bf16`) vs float32; the whole
   trajectory as one `lax.scan` (`sample_from` under one jit) vs a host loop of jitted steps;
   `jax.nn.dot_product_attention` vs a hand-written einsum-softmax attention at the model's shapes.
   (Donation is not measurable on CPU: XLA:CPU ignores donated buffers.)
Optionally writes a `jax.profiler` trace (`--trace DIR`, open with TensorBoard / Perfetto).
"""

import argparse
import dataclasses
import json
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.bench_sampler import GUIDE, flops_per_nfe
from jaxdos.kernels.grid import N_BINS
from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig
from jaxdos.sampler.model import log_probs
from jaxdos.sampler.sampling import (
    SamplerState,
    guided_step_logits,
    init_sampler_params,
    initial_tokens,
    sample_from,
    sampler_step,
)

__all__ = ["main"]


def _best(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def _cost(jitted, *args) -> dict:
    c = jitted.lower(*args).compile().cost_analysis()
    c = c[0] if isinstance(c, list | tuple) else c
    return {"flops": float(c.get("flops", 0.0)), "bytes": float(c.get("bytes accessed", 0.0))}


def _setup(cfg: ModelConfig, batch: int):
    params = init_sampler_params(jax.random.key(0), cfg)
    tokens = jax.random.randint(jax.random.key(3), (batch, N_BINS), 0, 1025)
    tokens = jnp.where(jax.random.uniform(jax.random.key(4), (batch, N_BINS)) < 0.5, 1025, tokens)
    log_scale = jnp.zeros(batch)
    ex_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(5), i))(jnp.arange(batch))
    return params, tokens.astype(jnp.int32), log_scale, ex_keys


def _jitted_step(cfg, scfg, ex_keys, log_scale, prior):
    """One guided predictor (+ corrector) step `(params, tokens, i) -> tokens`, jitted."""

    def step(p, x, i):
        state = sampler_step(
            p,
            SamplerState(x),
            i,
            ex_keys,
            log_scale,
            prior,
            model_config=cfg,
            sampling_config=scfg,
            guidance=GUIDE,
        )
        return state.tokens

    return jax.jit(step)


def parts(cfg: ModelConfig, batch: int, steps: int, repeats: int) -> dict:
    """Cost analysis and times of the network, the guided logits and the whole step."""
    params, tokens, log_scale, ex_keys = _setup(cfg, batch)
    t = jnp.full((batch,), 0.5)
    scfg = DOSSamplingConfig(steps=steps, corrector_steps=1)
    fwd = jax.jit(partial(log_probs, config=cfg))
    guided = jax.jit(
        lambda p, x, ls, tt: guided_step_logits(p, x, ls, tt, model_config=cfg, guidance=GUIDE)[0]
    )
    prior = jnp.zeros((batch, N_BINS), bool)
    step = _jitted_step(cfg, scfg, ex_keys, log_scale, prior)
    i0 = jnp.int32(0)
    out = {
        "cost_forward": _cost(fwd, params.diffusion, tokens, log_scale, t),
        "cost_guided_logits": _cost(guided, params, tokens, log_scale, t),
        "cost_step": _cost(step, params, tokens, i0),
        "t_forward": _best(lambda: fwd(params.diffusion, tokens, log_scale, t), repeats),
        "t_guided_logits": _best(lambda: guided(params, tokens, log_scale, t), repeats),
        "t_step": _best(lambda: step(params, tokens, i0), repeats),
    }
    out["analytic_flops_forward"] = batch * flops_per_nfe(cfg, guided=False)
    out["analytic_flops_guided"] = batch * flops_per_nfe(cfg, guided=True)
    out["analytic_flops_step"] = 2 * out["analytic_flops_guided"]  # predictor + 1 corrector
    return out


def lever_bf16(cfg: ModelConfig, batch: int, steps: int, repeats: int) -> dict:
    """Whole guided trajectory, float32 vs bfloat16 matmuls (same weights).

    The two variants are timed alternately (f32, bf16, f32, ...) so that a load change on a shared
    machine biases neither.
    """
    scfg = DOSSamplingConfig(steps=steps, corrector_steps=1)
    calls = {}
    for name, flag in (("f32", False), ("bf16", True)):
        c = dataclasses.replace(cfg, bf16=flag)
        params, _, log_scale, _ = _setup(c, batch)
        run = jax.jit(
            lambda p, k, x, c=c, ls=log_scale: sample_from(
                p, k, x, ls, jnp.arange(batch), model_config=c, sampling_config=scfg, guidance=GUIDE
            )
        )
        x0 = initial_tokens(batch)
        calls[name] = lambda run=run, p=params, x0=x0: run(p, jax.random.key(1), x0)
        jax.block_until_ready(calls[name]())  # compile
    res = {name: float("inf") for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            res[name] = min(res[name], time.perf_counter() - t0)
    return res


def lever_scan(cfg: ModelConfig, batch: int, steps: int, repeats: int) -> dict:
    """One jitted `lax.scan` trajectory vs a Python loop over a jitted step (host dispatch each)."""
    params, _, log_scale, ex_keys = _setup(cfg, batch)
    scfg = DOSSamplingConfig(steps=steps, corrector_steps=1)
    prior = jnp.zeros((batch, N_BINS), bool)
    scan = jax.jit(
        lambda p, x: sample_from(
            p,
            jax.random.key(5),
            x,
            log_scale,
            jnp.arange(batch),
            model_config=cfg,
            sampling_config=scfg,
            guidance=GUIDE,
        )
    )
    step = _jitted_step(cfg, scfg, ex_keys, log_scale, prior)
    x0 = initial_tokens(batch)

    def loop():
        x = x0
        for i in range(steps):
            x = step(params, x, jnp.int32(i))
        return x

    return {"scan": _best(lambda: scan(params, x0), repeats), "host_loop": _best(loop, repeats)}


def lever_attention(cfg: ModelConfig, batch: int, repeats: int) -> dict:
    """`jax.nn.dot_product_attention` vs einsum-softmax at `[B, L, H, Dh]` (forward only)."""
    h, dh = cfg.num_heads, cfg.width // cfg.num_heads
    q, k, v = (jax.random.normal(jax.random.key(i), (batch, N_BINS, h, dh)) for i in range(3))

    def einsum_attn(q, k, v):
        s = jnp.einsum("blhd,bmhd->bhlm", q, k) / np.sqrt(dh)
        return jnp.einsum("bhlm,bmhd->blhd", jax.nn.softmax(s, axis=-1), v)

    fused = jax.jit(jax.nn.dot_product_attention)
    plain = jax.jit(einsum_attn)
    err = float(jnp.max(jnp.abs(fused(q, k, v) - plain(q, k, v))))
    return {
        "dot_product_attention": _best(lambda: fused(q, k, v), repeats),
        "einsum_softmax": _best(lambda: plain(q, k, v), repeats),
        "max_abs_diff": err,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny, B=8, 4 steps")
    p.add_argument("--preset", default="tiny", choices=("tiny", "paper"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--trace", default=None, help="write a jax.profiler trace of one trajectory")
    p.add_argument("--out", default="results/profile_sampler.json")
    a = p.parse_args(argv)
    if a.quick:
        a.batch, a.steps, a.repeats = 8, 4, 2
    cfg = getattr(ModelConfig, a.preset)()
    r = {
        "preset": a.preset,
        "batch": a.batch,
        "steps": a.steps,
        "device": jax.devices()[0].device_kind,
    }
    r["parts"] = pp = parts(cfg, a.batch, a.steps, a.repeats)
    print(
        f"step {a.preset} B={a.batch}: XLA {pp['cost_step']['flops'] / 1e9:.2f} GFLOP "
        f"(analytic {pp['analytic_flops_step'] / 1e9:.2f}), "
        f"{pp['cost_step']['bytes'] / 1e6:.0f} MB "
        f"accessed; time step {1e3 * pp['t_step']:.1f} ms = 2 x guided logits "
        f"{1e3 * pp['t_guided_logits']:.1f} ms (network forward {1e3 * pp['t_forward']:.1f} ms)"
    )
    r["bf16"] = lb = lever_bf16(cfg, a.batch, a.steps, a.repeats)
    print(
        f"lever bf16: trajectory f32 {lb['f32']:.3f}s vs bf16 {lb['bf16']:.3f}s "
        f"(x{lb['f32'] / lb['bf16']:.2f})"
    )
    r["scan"] = ls = lever_scan(cfg, a.batch, a.steps, a.repeats)
    print(
        f"lever scan: one-jit scan {ls['scan']:.3f}s vs host loop of jitted steps "
        f"{ls['host_loop']:.3f}s (x{ls['host_loop'] / ls['scan']:.2f})"
    )
    r["attention"] = la = lever_attention(cfg, a.batch, a.repeats)
    print(
        f"lever attention: dot_product_attention {1e3 * la['dot_product_attention']:.2f} ms vs "
        f"einsum-softmax {1e3 * la['einsum_softmax']:.2f} ms "
        f"(x{la['einsum_softmax'] / la['dot_product_attention']:.2f}; "
        f"max diff {la['max_abs_diff']:.1e})"
    )
    if a.trace:
        params, _, log_scale, _ = _setup(cfg, a.batch)
        scfg = DOSSamplingConfig(steps=a.steps, corrector_steps=1)
        run = jax.jit(
            lambda p, x: sample_from(
                p,
                jax.random.key(5),
                x,
                log_scale,
                jnp.arange(a.batch),
                model_config=cfg,
                sampling_config=scfg,
                guidance=GUIDE,
            )
        )
        x0 = initial_tokens(a.batch)
        run(params, x0).block_until_ready()
        with jax.profiler.trace(a.trace):
            run(params, x0).block_until_ready()
        print(f"trace written to {a.trace}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1))
    return r


if __name__ == "__main__":
    main()
