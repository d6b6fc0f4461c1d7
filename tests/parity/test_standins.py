"""The pure-torch torch_scatter / torch_sparse stand-ins against plain-loop references."""

import numpy as np
import pytest
from parity_helpers import STANDINS, require_torch

torch = require_torch()
torch_scatter = pytest.importorskip("torch_scatter")
torch_sparse = pytest.importorskip("torch_sparse")

pytestmark = pytest.mark.skipif(
    STANDINS not in __import__("pathlib").Path(torch_scatter.__file__).parents,
    reason="compiled torch_scatter installed; the stand-ins are not in use",
)

_LOOP = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


def _loop_scatter(src, index, dim_size, reduce):
    out = np.zeros((dim_size,) + src.shape[1:], src.dtype)
    for k in range(dim_size):
        rows = src[index == k]
        if len(rows):
            out[k] = _LOOP[reduce](rows, axis=0)
    return out


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_scatter_matches_loop(reduce, rng):
    src = rng.normal(size=(40, 3, 2)).astype(np.float32)
    index = rng.integers(0, 9, size=40)  # dim_size 12 leaves empty slots, which must be 0.
    got = torch_scatter.scatter(
        torch.tensor(src), torch.tensor(index), 0, dim_size=12, reduce=reduce
    )
    np.testing.assert_allclose(got.numpy(), _loop_scatter(src, index, 12, reduce), rtol=1e-6)


def test_scatter_default_dim_size_and_last_dim(rng):
    src = rng.normal(size=(4, 30)).astype(np.float32)
    index = rng.integers(0, 5, size=30)
    got = torch_scatter.scatter_add(torch.tensor(src), torch.tensor(index), dim=-1)
    ref = _loop_scatter(src.T, index, index.max() + 1, "sum").T
    assert got.shape == (4, index.max() + 1)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)


def test_scatter_max_returns_argmax(rng):
    src = torch.tensor(rng.normal(size=20).astype(np.float32))
    index = torch.tensor(rng.integers(0, 4, size=20))
    values, arg = torch_scatter.scatter_max(src, index, dim=0, dim_size=6)
    for k in range(6):
        members = (index == k).nonzero().flatten()
        if len(members):
            best = members[src[members].argmax()]
            assert arg[k] == best and values[k] == src[best]
        else:
            assert arg[k] == 20 and values[k] == 0


def test_segment_coo_and_csr_match_loop(rng):
    index = np.sort(rng.integers(0, 7, size=50))
    src = rng.normal(size=(50, 2)).astype(np.float32)
    got = torch_scatter.segment_coo(torch.tensor(src), torch.tensor(index), dim_size=9)
    np.testing.assert_allclose(got.numpy(), _loop_scatter(src, index, 9, "sum"), rtol=1e-6)
    counts = np.bincount(index, minlength=9)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    got = torch_scatter.segment_csr(torch.tensor(src), torch.tensor(indptr), reduce="sum")
    ref = np.stack([src[a:b].sum(0) for a, b in zip(indptr[:-1], indptr[1:], strict=True)])
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)


def test_segment_csr_integer_counts_like_max_neighbors_mask():
    # ocp_graph_utils sums per-atom neighbour counts per image with integer tensors.
    counts = torch.tensor([3, 0, 5, 2, 2, 1])
    indptr = torch.tensor([0, 2, 2, 6])
    assert torch_scatter.segment_csr(counts, indptr).tolist() == [3, 0, 10]


def test_sparse_tensor_row_select_matches_loop(rng):
    """adj[idx_t] lists, for each edge, every edge into the same target (get_triplets)."""
    num_atoms, num_edges = 6, 30
    idx_s = rng.integers(0, num_atoms, size=num_edges)
    idx_t = rng.integers(0, num_atoms, size=num_edges)
    adj = torch_sparse.SparseTensor(
        row=torch.tensor(idx_t),
        col=torch.tensor(idx_s),
        value=torch.arange(num_edges),
        sparse_sizes=(num_atoms, num_atoms),
    )
    sel = adj[torch.tensor(idx_t)]
    rows, cols, vals = (
        t.numpy() for t in (sel.storage.row(), sel.storage.col(), sel.storage.value())
    )
    ref_rows, ref_vals = [], []
    for e, target in enumerate(idx_t):
        # entries of row `target`, sorted by (col, input order): the stable (row, col) sort.
        members = sorted(np.flatnonzero(idx_t == target), key=lambda j: (idx_s[j], j))
        ref_rows += [e] * len(members)
        ref_vals += members
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(vals, ref_vals)
    np.testing.assert_array_equal(cols, idx_s[ref_vals])
