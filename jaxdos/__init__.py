"""jaxdos: DOS-intermediated crystal generation in JAX/Flax.

Data flow: experiments -> jaxdos.pipeline -> {sampler, crystal, data} -> kernels.
The two generative stages (sampler, crystal) never import each other.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
