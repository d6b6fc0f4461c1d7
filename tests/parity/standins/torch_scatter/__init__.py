"""Pure-torch stand-in for the subset of ``torch_scatter`` that mattergen 1.0.3 uses.

See ``../README.md``. Semantics match torch_scatter 2.1: empty segments give 0 for every reduction,
a 1-D ``index`` is broadcast along ``dim``, ``dim_size`` defaults to ``index.max() + 1``.
"""

import torch

__all__ = [
    "scatter",
    "scatter_add",
    "scatter_sum",
    "scatter_mean",
    "scatter_max",
    "scatter_min",
    "scatter_mul",
    "segment_coo",
    "segment_csr",
]

_REDUCE = {"sum": "sum", "add": "sum", "mean": "mean", "max": "amax", "min": "amin", "mul": "prod"}


def _broadcast(index: torch.Tensor, src: torch.Tensor, dim: int) -> torch.Tensor:
    # torch_scatter's `broadcast`: a lower-rank index addresses `dim` and is expanded to src.
    if index.dim() == 1:
        shape = [1] * src.dim()
        shape[dim] = -1
        index = index.view(shape)
    while index.dim() < src.dim():
        index = index.unsqueeze(-1)
    return index.expand_as(src)


def scatter(src, index, dim=-1, out=None, dim_size=None, reduce="sum"):
    """Reduce ``src`` into slots ``index`` along ``dim``; empty slots are 0."""
    if reduce not in _REDUCE:
        raise ValueError(f"reduce must be one of {sorted(_REDUCE)}, got {reduce!r}")
    dim = dim % src.dim()
    index = _broadcast(index, src, dim)
    if out is None:
        if dim_size is None:
            dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
        shape = list(src.shape)
        shape[dim] = dim_size
        out = src.new_zeros(shape)
        include_self = False
    else:
        # torch_scatter accumulates into a user-provided `out` (sum semantics).
        include_self = True
    return out.scatter_reduce(dim, index, src, _REDUCE[reduce], include_self=include_self)


def scatter_add(src, index, dim=-1, out=None, dim_size=None):
    return scatter(src, index, dim, out, dim_size, "sum")


scatter_sum = scatter_add


def scatter_mean(src, index, dim=-1, out=None, dim_size=None):
    return scatter(src, index, dim, out, dim_size, "mean")


def scatter_mul(src, index, dim=-1, out=None, dim_size=None):
    return scatter(src, index, dim, out, dim_size, "mul")


def _scatter_arg(src, index, dim, dim_size, reduce):
    dim = dim % src.dim()
    values = scatter(src, index, dim, None, dim_size, reduce)
    full = _broadcast(index, src, dim)
    hit = src == values.gather(dim, full)
    # argmax convention of torch_scatter: position along `dim`, src.size(dim) for empty slots.
    pos = torch.arange(src.size(dim), device=src.device).view(
        [-1 if d == dim else 1 for d in range(src.dim())]
    )
    pos = torch.where(hit, pos.expand_as(src), src.size(dim))
    arg = torch.full_like(values, src.size(dim), dtype=torch.long)
    arg = arg.scatter_reduce(dim, full, pos, "amin", include_self=True)
    return values, arg


def scatter_max(src, index, dim=-1, out=None, dim_size=None):
    if out is not None:
        raise NotImplementedError("scatter_max(out=...) is not used by mattergen")
    return _scatter_arg(src, index, dim, dim_size, "max")


def scatter_min(src, index, dim=-1, out=None, dim_size=None):
    if out is not None:
        raise NotImplementedError("scatter_min(out=...) is not used by mattergen")
    return _scatter_arg(src, index, dim, dim_size, "min")


def segment_coo(src, index, out=None, dim_size=None, reduce="sum"):
    """Reduce along ``index.dim() - 1`` for a sorted ``index`` (sortedness only affects speed)."""
    if out is not None:
        raise NotImplementedError("segment_coo(out=...) is not used by mattergen")
    return scatter(src, index, index.dim() - 1, None, dim_size, reduce)


def segment_csr(src, indptr, out=None, reduce="sum"):
    """Reduce ``src[indptr[i]:indptr[i + 1]]`` into slot ``i`` (1-D ``indptr``, leading dim)."""
    if out is not None:
        raise NotImplementedError("segment_csr(out=...) is not used by mattergen")
    if indptr.dim() != 1:
        raise NotImplementedError("only 1-D indptr is used by mattergen")
    counts = indptr[1:] - indptr[:-1]
    index = torch.repeat_interleave(torch.arange(counts.numel(), device=src.device), counts)
    start = int(indptr[0]) if indptr.numel() else 0
    part = src.narrow(0, start, index.numel())
    return scatter(part, index, 0, None, counts.numel(), reduce)
