"""The one guidance variant both stages share: `NoGuidance`, sampling the unguided model.

Both stages express guidance as small frozen types (house style: variants are types, not strings).
Their guided variants differ and stay with their stage: stage 1 (`jaxdos.sampler.guidance`) has
`ClassifierGuidance`, regressor gradients on the logits (Algorithm 2); stage 2
(`jaxdos.crystal.diffusion.guidance`) has `ClassifierFree`, MatterGen's lerp of unconditional and
conditional scores. "No guidance" means the same in both: draw from the model's own
distribution (stage 1: the score network's logits as they are; stage 2: the network called with
`cond=None`, i.e. unconditional generation). So it is one type, defined here on the ground floor
where both stages can import it without importing each other, rather than two classes of the
same name that `isinstance` would tell apart, or a stage-2 alias (`Unconditional`) for the same
idea. Each stage re-exports it beside its own variants.
"""

import dataclasses

__all__ = ["NoGuidance"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoGuidance:
    """Sample the unguided model (stage 1: raw logits; stage 2: unconditional, `cond=None`).

    Field-less and hashable, so it can be a static argument of `jit`; its repr `NoGuidance()` is
    part of the stage-1 proposer's name (run-store identity) and must stay as it is.
    """
