"""Pipelines on the committed world subset (once `jaxdos/assets/world-v1-subset.npz` exists)."""

from pathlib import Path

import numpy as np
import pytest

from jaxdos.data.budgets import budgets_from_records, neighbour_stats
from jaxdos.data.pipelines import crystal_batches, dos_batches
from jaxdos.data.records import load_records

SUBSET = Path(__file__).resolve().parents[2] / "jaxdos" / "assets" / "world-v1-subset.npz"
pytestmark = pytest.mark.skipif(not SUBSET.exists(), reason="world subset not generated yet")


@pytest.fixture(scope="module")
def world():
    records, _ = load_records(SUBSET, oracle_version=None)  # any oracle version: geometry only
    return records.take(np.arange(min(len(records), 400)))


def test_world_crystal_batches_fill_budgets_without_overflow(world):
    stats = neighbour_stats(world, 7.0, max_neighbors=50)
    budgets = budgets_from_records(
        world, batch_size=16, cutoff=7.0, max_neighbors=50, stats=stats, num_samples=300
    )
    batches = list(crystal_batches(world, budgets, seed=0, edge_counts=stats.edges))
    for b in batches:
        real = b.index[b.crystal.graph_mask]
        assert b.crystal.node_mask.sum() <= budgets.atoms and len(real) <= budgets.graphs - 1
        assert stats.edges[real].sum() <= budgets.edges
    np.testing.assert_array_equal(
        np.sort(np.concatenate([b.index[b.crystal.graph_mask] for b in batches])),
        np.arange(len(world)),
    )
    # 0.99-quantile budgets: the average batch carries most of its B = 16 crystals.
    assert np.mean([b.crystal.graph_mask.sum() for b in batches]) > 0.75 * 16


def test_world_dos_batches_cover_the_split(world):
    batches = list(dos_batches(world, batch_size=64, seed=0))
    idx = np.concatenate([b.index[b.valid] for b in batches])
    np.testing.assert_array_equal(np.sort(idx), np.arange(len(world)))
    assert all(b.tokens.min() >= 0 and b.tokens.max() <= 1025 for b in batches)
