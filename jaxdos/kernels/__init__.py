"""DOS kernels: grid, tokeniser, properties (Algorithm 1), metrics, filters, audit statistics."""

from jaxdos.kernels import audit, filters, grid, metrics, properties, tokenizer

__all__ = ["audit", "filters", "grid", "metrics", "properties", "tokenizer"]
