"""The guided DOSSampler as a rejection-loop `Proposer`: prior, guidance and K drawn from targets.

Glue between `targets` (what is wanted) and `sampling` (Algorithm 2): the band-gap prior comes
from `targets.prior_mask`, the guidance from `targets.guidance_for`, and K from the training-set
`ScaleDistribution`, restricted to records whose band gap lies in the target's tolerance interval
when there is a band-gap target (the paper samples K "from the distribution obtained by the
Materials Project dataset"; conditioning it on E_BG keeps K consistent with the gap asked for).
"""

import functools
import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig
from jaxdos.sampler.rejection import Proposer
from jaxdos.sampler.sampling import initial_tokens, sample_from
from jaxdos.sampler.scale import ScaleDistribution
from jaxdos.sampler.targets import Targets, guidance_for, prior_mask

__all__ = ["conditioned_scale_logits", "guided_proposer", "params_digest"]


def conditioned_scale_logits(
    dist: ScaleDistribution, targets: Targets, *, min_matches: int = 16
) -> np.ndarray:
    """`[M]` log-weights: uniform over records within the band-gap target interval.

    With no band-gap target every record counts; with fewer than `min_matches` records inside
    the interval, the `min_matches` nearest ones are used instead.
    """
    bg = np.asarray(dist.band_gap, np.float64)
    gap = targets.get("band_gap")
    if gap is None:
        return np.zeros(bg.shape, np.float32)
    lo, hi = gap.interval
    hit = (bg >= lo) & (bg <= hi)
    if hit.sum() < min_matches:
        hit = np.zeros(bg.shape, bool)
        hit[np.argsort(np.abs(bg - gap.value), kind="stable")[:min_matches]] = True
    return np.where(hit, 0.0, -np.inf).astype(np.float32)


def params_digest(params) -> str:
    """A short content hash of a parameter tree (names the model in a run's settings)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _sample_fn(
    model_config: ModelConfig, sampling_config: DOSSamplingConfig, guidance, prior: bytes
):
    """The proposer's `sample`, one function object per setting: `rejection` caches its jitted
    step by this function, so a second run with the same settings reuses the compilation (a fresh
    closure per `guided_proposer` call recompiled it). `prior` is the `[L]` bool mask's bytes."""
    mask = np.frombuffer(prior, bool)

    def sample(p, key, scale, example_index):
        tokens = initial_tokens(scale.shape[0], mask)
        return sample_from(
            p,
            key,
            tokens,
            jnp.log(scale),
            example_index,
            model_config=model_config,
            sampling_config=sampling_config,
            guidance=guidance,
        )

    return sample


def guided_proposer(
    params,
    model_config: ModelConfig,
    scale_distribution: ScaleDistribution,
    targets: Targets,
    *,
    sampling_config: DOSSamplingConfig | None = None,
    gamma: float = 1.0,
) -> Proposer:
    """A `Proposer` drawing Algorithm 2 samples for `targets`.

    Args:
        params: `SamplerParams` (e.g. from `checkpoint.load_default()`).
        model_config: the network config.
        scale_distribution: training-set K values with their band gaps.
        targets: the validated specification (prior, guidance, K conditioning).
        sampling_config: steps / corrector settings; default `DOSSamplingConfig()`.
        gamma: guidance strength per guided property (0: no guidance).
    """
    sampling_config = DOSSamplingConfig() if sampling_config is None else sampling_config
    guidance = guidance_for(targets, gamma)
    sample = _sample_fn(model_config, sampling_config, guidance, prior_mask(targets).tobytes())

    name = json.dumps(
        {
            "params": params_digest(params),
            "model": model_config.to_dict(),
            "sampling": repr(sampling_config),
            "guidance": repr(guidance),
        },
        sort_keys=True,
    )
    return Proposer(
        sample=sample,
        params=params,
        scales=np.asarray(scale_distribution.scale, np.float32),
        name=name,
        scale_logits=conditioned_scale_logits(scale_distribution, targets),
    )
