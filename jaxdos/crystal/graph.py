"""CDOSGen's periodic graph: the ground floor's neighbour list (`jaxdos.neighbors`).

The builder, its static budgets and the grow-and-retry rule moved to `jaxdos/neighbors.py` so that
the DOS predictor (`jaxdos.predictor`) shares them without importing stage 2; this module keeps
the names stage 2 and its tests import.
"""

from jaxdos.neighbors import (
    GraphConfig,
    GraphStats,
    PeriodicGraph,
    build_graph,
    build_graph_checked,
    build_graph_jit,
    grow_budgets,
    image_offsets,
    presize_budgets,
    retry_on_overflow,
)

__all__ = [
    "GraphConfig",
    "GraphStats",
    "PeriodicGraph",
    "build_graph",
    "build_graph_jit",
    "build_graph_checked",
    "grow_budgets",
    "presize_budgets",
    "retry_on_overflow",
    "image_offsets",
]
