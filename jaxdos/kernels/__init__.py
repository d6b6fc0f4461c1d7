"""DOS kernels: grid, tokeniser, properties (Algorithm 1), metrics, filters, audit statistics, the
tight-binding DOS oracle, and the 95 % intervals every reported number carries."""

from jaxdos.kernels import audit, filters, grid, metrics, oracle, properties, stats, tokenizer

__all__ = ["audit", "filters", "grid", "metrics", "oracle", "properties", "stats", "tokenizer"]
