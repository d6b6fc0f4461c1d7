"""DOS kernels: grid, tokeniser, properties (Algorithm 1), metrics, filters, tight-binding oracle."""

from jaxdos.kernels import grid, properties, tokenizer

__all__ = ["grid", "properties", "tokenizer"]
