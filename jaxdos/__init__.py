"""jaxdos: DOS-intermediated crystal generation in JAX/Flax.

Data flow: experiments -> jaxdos.pipeline -> {sampler, crystal, data} -> kernels.
The two generative stages (sampler, crystal) never import each other. Ground floor beside kernels:
`jaxdos.modeldir`, the one on-disk format of every model.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
