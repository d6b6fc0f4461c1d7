"""DOS kernels: grid, tokeniser, properties (Algorithm 1), metrics, filters, audit statistics, and
the tight-binding DOS oracle."""

from jaxdos.kernels import audit, filters, grid, metrics, oracle, properties, tokenizer

__all__ = ["audit", "filters", "grid", "metrics", "oracle", "properties", "tokenizer"]
