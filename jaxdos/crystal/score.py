"""`GemNetTDenoiser` as a `ScoreFn`, and generation with graph-budget regrowth on overflow.

The sampler and trainer only know `score_fn(params, batch, t, cond, key)`. This module binds the
network: its graph-overflow flag and statistics are returned as `ScoreWithDiagnostics`, the sampler
ORs / max-accumulates them over the trajectory, and `generate_with_model` re-runs the whole batch
with grown budgets if anything overflowed (never a silently truncated graph).
"""

import dataclasses
import functools

from jaxdos.crystal.denoiser import GemNetTDenoiser
from jaxdos.crystal.diffusion.guidance import ClassifierFree
from jaxdos.crystal.diffusion.losses import ScoreFn, ScoreWithDiagnostics
from jaxdos.crystal.generate import Generated, generate
from jaxdos.crystal.graph import GraphConfig, retry_on_overflow
from jaxdos.typing import PyTree

__all__ = ["denoiser_score_fn", "generate_with_model"]


@functools.lru_cache(maxsize=64)
def denoiser_score_fn(model: GemNetTDenoiser) -> ScoreFn:
    """A hashable, cached score function for `model` (so jitted samplers are reused)."""

    def score_fn(params, batch, t, cond, key):
        del key  # the network is deterministic (dropout 0)
        out, diag = model.apply(params, batch, t, cond, mutable=["diagnostics"])
        d = diag["diagnostics"]
        return ScoreWithDiagnostics(out, d["graph_overflow"][0], d["graph_stats"][0])

    return score_fn


def generate_with_model(
    model: GemNetTDenoiser, params: PyTree, *, max_tries: int = 4, **kwargs
) -> tuple[Generated, GemNetTDenoiser]:
    """`generate` with the network; re-runs with grown graph budgets until nothing overflows.

    Args:
        model: the denoiser (its `config.graph` budgets are the starting point).
        params: its parameters.
        max_tries: budget increases before giving up.
        **kwargs: passed to `jaxdos.crystal.generate.generate` (key, num_atoms, dos, config, ...).

    Returns:
        (the generated batch, the model actually used: reuse it to keep the grown budgets).

    Raises:
        RuntimeError: if the budgets still overflow after `max_tries` increases.
    """

    def run(graph: GraphConfig):
        m = model
        if graph != model.config.graph:
            m = model.clone(config=dataclasses.replace(model.config, graph=graph))
        gen = generate(denoiser_score_fn(m), params, **kwargs)
        cfg = gen.config.guidance
        # Classifier-free guidance runs the network on the batch twice (conditional + not).
        doubled = isinstance(cfg, ClassifierFree) and cfg.cfg_scale != 0.0
        return (gen, m), gen.overflow, gen.stats, gen.batch.num_nodes * (2 if doubled else 1)

    result, _ = retry_on_overflow(run, model.config.graph, max_tries)
    return result
