"""DOS kernels: grid, tokeniser, properties (Algorithm 1), metrics and matched-vs-random pairing,
filters, audit statistics, the tight-binding DOS oracle, and the 95 % intervals every reported
number carries."""

from jaxdos.kernels import (
    audit,
    filters,
    grid,
    metrics,
    oracle,
    pairing,
    properties,
    stats,
    tokenizer,
)

__all__ = [
    "audit",
    "filters",
    "grid",
    "metrics",
    "oracle",
    "pairing",
    "properties",
    "stats",
    "tokenizer",
]
