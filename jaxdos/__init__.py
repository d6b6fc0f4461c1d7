"""jaxdos: DOS-intermediated crystal generation in JAX/Flax.

Data flow: experiments -> jaxdos.pipeline -> {sampler, crystal, predictor, data} -> kernels.
The two generative stages (sampler, crystal) and the crystal -> DOS predictor never import each
other; what they share sits on the ground floor beside kernels: `typing` (the dimension legend),
`sharding`, `guidance` (NoGuidance), `structures` (the crystal layer), `neighbors` (the periodic
neighbour list), `modeldir` (the one model format), `training` (the one training core) and
`chunkstore` (atomic resumable chunks).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
