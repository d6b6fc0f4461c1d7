"""Pure-torch stand-in for the `torch_sparse.SparseTensor` subset used by GemNetT.get_triplets.

See ``../README.md``: construction from COO (sorted by ``(row, col)``), row selection ``adj[idx]``
and the ``storage`` accessors ``row()``, ``col()``, ``value()``, ``rowptr()``.
"""

import torch

__all__ = ["SparseTensor", "SparseStorage"]


class SparseStorage:
    """COO storage sorted by ``(row, col)``, with a CSR ``rowptr``."""

    def __init__(self, row, col, value, sparse_sizes, is_sorted=False):
        num_rows, num_cols = (int(s) for s in sparse_sizes)
        if not is_sorted and row.numel() > 0:
            # Stable sort: parallel periodic copies of one (row, col) keep their input order.
            perm = torch.argsort(row * num_cols + col, stable=True)
            row, col = row[perm], col[perm]
            value = value[perm] if value is not None else None
        self._row, self._col, self._value = row, col, value
        self._sizes = (num_rows, num_cols)

    def row(self):
        return self._row

    def col(self):
        return self._col

    def value(self):
        return self._value

    def sparse_sizes(self):
        return self._sizes

    def rowptr(self):
        counts = torch.bincount(self._row, minlength=self._sizes[0])
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


class SparseTensor:
    """Minimal ``torch_sparse.SparseTensor``: build from COO, select rows, read the storage."""

    def __init__(self, row=None, col=None, value=None, sparse_sizes=None, is_sorted=False):
        if row is None or col is None:
            raise ValueError("SparseTensor stand-in needs row and col")
        if sparse_sizes is None:
            sparse_sizes = (int(row.max()) + 1, int(col.max()) + 1)
        self.storage = SparseStorage(row, col, value, sparse_sizes, is_sorted)

    @classmethod
    def _from_storage(cls, storage):
        out = cls.__new__(cls)
        out.storage = storage
        return out

    def sparse_sizes(self):
        return self.storage.sparse_sizes()

    def index_select(self, dim, idx):
        """Rows ``idx`` (in that order, repeats allowed) as a new ``[len(idx), C]`` tensor."""
        if dim != 0:
            raise NotImplementedError("only row selection (dim=0) is used by mattergen")
        idx = idx.to(torch.long)
        rowptr = self.storage.rowptr()
        counts = rowptr[idx + 1] - rowptr[idx]
        new_row = torch.repeat_interleave(torch.arange(idx.numel(), device=idx.device), counts)
        # Position of each selected entry in the storage: row start + offset within the row.
        starts = torch.repeat_interleave(rowptr[idx], counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        pos = starts + torch.arange(new_row.numel(), device=idx.device) - first
        value = self.storage.value()
        storage = SparseStorage(
            new_row,
            self.storage.col()[pos],
            value[pos] if value is not None else None,
            (idx.numel(), self.storage.sparse_sizes()[1]),
            is_sorted=True,
        )
        return SparseTensor._from_storage(storage)

    def __getitem__(self, idx):
        if not isinstance(idx, torch.Tensor) or idx.dim() != 1:
            raise NotImplementedError("only adj[1-D index tensor] is used by mattergen")
        return self.index_select(0, idx)

    def to(self, *args, **kwargs):
        s = self.storage
        value = s.value().to(*args, **kwargs) if s.value() is not None else None
        storage = SparseStorage(
            s.row().to(*args, **kwargs), s.col().to(*args, **kwargs), value, s.sparse_sizes(), True
        )
        return SparseTensor._from_storage(storage)
