"""Data: crystal prototypes, the offline world, MP-style loaders, grain pipelines."""

from jaxdos.data.budgets import (
    CrystalBudgets,
    NeighbourStats,
    budgets_from_records,
    neighbour_counts,
    neighbour_stats,
)
from jaxdos.data.mp import MP_ORACLE_VERSION, LoadReport, load_mp_dir, parse_mp_file
from jaxdos.data.pipelines import (
    CrystalGraphBatch,
    DosBatch,
    crystal_batches,
    dos_batches,
)
from jaxdos.data.records import Records, load_records, save_records
from jaxdos.data.world import load_world

__all__ = [
    "Records",
    "load_records",
    "save_records",
    "MP_ORACLE_VERSION",
    "LoadReport",
    "load_mp_dir",
    "parse_mp_file",
    "CrystalBudgets",
    "budgets_from_records",
    "neighbour_counts",
    "neighbour_stats",
    "NeighbourStats",
    "CrystalGraphBatch",
    "DosBatch",
    "crystal_batches",
    "dos_batches",
    "load_world",
]
