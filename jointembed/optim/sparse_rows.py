"""What the sparse optimisers share: choosing the numba or torch path, and merging a gradient's duplicate rows.

A sparse gradient of an embedding table (``nn.EmbeddingBag(sparse=True)``) holds one row per looked-up ID, so an
ID looked up 40 times in a batch has 40 rows. The optimisers update each distinct row once, from the sum of its
rows. Two paths do it with the same arithmetic:

- ``numba``: one compiled kernel merges the duplicates and updates state and weights in one loop over the
  distinct rows (:mod:`jointembed.kernels.numba_rows`), several times faster than the torch path on CPU;
- ``torch``: :func:`coalesce_rows` (a stable sort, then ``embedding_bag`` sums each ID's rows), then gathers,
  updates and scatters the rows with tensor operations; any device and dtype.

``auto`` takes the numba kernel where it applies (numba installed; a CPU, contiguous float32/float64 table) and
the torch path elsewhere. A gradient whose indices are strictly increasing (coalesced, as
:class:`~jointembed.nn.SparseEmbedding`'s numba backward gives) skips the merge on both paths.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from jointembed.kernels import HashTable, load_numba_rows, numba_available

__all__ = [
    "Backend",
    "RowWorkspace",
    "check_backend",
    "check_rows",
    "coalesce_rows",
    "distinct_rows",
    "kernels_for",
    "sparse_parts",
]

Backend = Literal["auto", "numba", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "numba", "torch")


def check_backend(backend: str) -> str:
    """Return ``backend`` if valid and usable here.

    Raises:
        ValueError: An unknown name (the valid ones are listed).
        ModuleNotFoundError: ``"numba"`` asked for where numba is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and not numba_available():
        raise ModuleNotFoundError(
            "backend='numba' needs numba installed (pip install numba) and not turned off (JOINTEMBED_NUMBA=0); "
            "use backend='auto' or 'torch'"
        )
    return backend


def kernels_for(backend: str, param: torch.Tensor, grad: torch.Tensor) -> ModuleType | None:
    """The numba kernels module if ``backend`` allows it and it can update ``param`` from ``grad`` in place,
    else ``None`` (use the torch path).

    Raises:
        ValueError: ``backend="numba"`` for a table the kernels cannot update (the reason is named).
    """
    if backend == "torch" or (backend == "auto" and not numba_available()):
        return None
    reason = _kernel_refusal(param, grad)
    if reason is None:
        return load_numba_rows()
    if backend == "numba":
        raise ValueError(f"backend='numba' cannot update this parameter: {reason}; use backend='auto' or 'torch'")
    return None


def _kernel_refusal(param: torch.Tensor, grad: torch.Tensor) -> str | None:
    if param.device.type != "cpu":
        return f"it is on {param.device}, the kernels run on the CPU"
    if param.dtype not in (torch.float32, torch.float64) or grad.dtype != param.dtype:
        return f"it is {param.dtype} with a {grad.dtype} gradient, the kernels take float32 or float64"
    if not param.is_contiguous():
        return "it is not contiguous"
    return None


def sparse_parts(param: torch.Tensor, grad: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(nnz,)`` row indices and ``(nnz, D)`` row values of a sparse gradient (``D``: a row's elements).

    Raises:
        ValueError: A gradient that is not indexed by row (``sparse_dim != 1``).
    """
    if grad.sparse_dim() != 1:
        raise ValueError(f"{name} needs sparse gradients indexed by row (sparse_dim 1), got {grad.sparse_dim()}")
    values = grad._values()
    return grad._indices()[0], values.reshape(values.shape[0], math.prod(values.shape[1:]))


def check_rows(distinct: int, param: torch.Tensor) -> None:
    """Raise if a numba kernel refused a gradient (returned -1) for an index outside ``param``'s rows.

    Raises:
        IndexError: The gradient indexes rows outside ``[0, param.shape[0])``; no row was updated.
    """
    if distinct < 0:
        raise IndexError(
            f"the sparse gradient indexes rows outside [0, {param.shape[0]}) of a parameter of shape "
            f"{tuple(param.shape)}; no row was updated"
        )


def distinct_rows(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch path's distinct rows and their summed gradients: ``indices`` and ``values`` themselves when the
    indices are strictly increasing (already coalesced; autograd does not keep a sparse gradient's
    ``is_coalesced`` flag, so the order is checked), else :func:`coalesce_rows`."""
    if bool((indices[1:] > indices[:-1]).all()):
        return indices, values
    return coalesce_rows(indices, values)


def coalesce_rows(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the rows of equal indices (the torch path; any device).

    Args:
        indices: ``(nnz,)`` int64 row indices, duplicates allowed.
        values: ``(nnz, D)`` one row per index.

    Returns:
        ``(U,)`` the distinct indices, sorted, and ``(U, D)`` each one's summed rows (in order of appearance).
    """
    sorted_rows, order = torch.sort(indices, stable=True)
    rows, counts = torch.unique_consecutive(sorted_rows, return_counts=True)
    # embedding_bag sums bags of rows in one pass; ~2x faster than index_add_, ~3x than coalesce() on CPU.
    starts = counts.cumsum(0) - counts
    return rows, F.embedding_bag(order, values, starts, mode="sum")


class RowWorkspace:
    """Scratch space of the numba kernels, kept between steps so a step allocates (and page-faults in) nothing:
    the distinct rows and their summed gradients (``nnz`` and ``nnz × D``) and an empty hash table; all grow to
    the largest gradient seen, batch-sized, never table-sized."""

    def __init__(self) -> None:
        self._rows = np.empty(0, np.int64)
        self._table = HashTable()
        self._grads: dict[tuple[np.dtype, int], np.ndarray] = {}

    def get(self, nnz: int, dim: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
        """``(nnz,)`` int64 rows, ``(nnz, dim)`` gradients of ``dtype``, and the hash table's keys and slots."""
        if self._rows.size < nnz:
            self._rows = np.empty(nnz, np.int64)
        grad = self._grads.get((dtype, dim))
        if grad is None or grad.shape[0] < nnz:
            grad = self._grads[(dtype, dim)] = np.empty((nnz, dim), dtype)
        return self._rows[:nnz], grad[:nnz], *self._table.at_least(nnz)
