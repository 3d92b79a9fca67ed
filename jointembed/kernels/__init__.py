"""Compiled CPU kernels for sparse rows (numba), loaded only when used.

:mod:`jointembed.kernels.numba_rows` merges the rows of a step's repeated IDs and updates optimiser state and
weights in one pass over the distinct rows; :mod:`jointembed.optim` and :class:`~jointembed.nn.SparseEmbedding`
use it on CPU where numba is installed and fall back to tensor operations elsewhere, with the same results.
:mod:`jointembed.kernels.numba_top_k` finds the exact top k of a few queries in one pass over a table
(:func:`~jointembed.search.backends.exact_top_k`).
Importing numba takes ~0.3 s and each kernel compiles on its first call (then it is cached on disk), so nothing
here imports numba until a kernel is needed. ``JOINTEMBED_NUMBA=0`` in the environment turns the kernels off
(the torch paths run instead), e.g. to compare the two or to rule the kernels out.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType

import numpy as np

__all__ = ["HashTable", "load_numba_rows", "load_numba_top_k", "numba_available"]


@functools.cache
def numba_available() -> bool:
    """Whether numba is installed and not turned off by ``JOINTEMBED_NUMBA=0`` (checked once, without importing
    it)."""
    return os.environ.get("JOINTEMBED_NUMBA", "1") != "0" and importlib.util.find_spec("numba") is not None


@functools.cache
def load_numba_rows() -> ModuleType:
    """The compiled kernels module (imports numba; call only if :func:`numba_available`)."""
    from jointembed.kernels import numba_rows

    return numba_rows


@functools.cache
def load_numba_top_k() -> ModuleType:
    """The compiled exact top-k scan (imports numba; call only if :func:`numba_available`)."""
    from jointembed.kernels import numba_top_k

    return numba_top_k


class HashTable:
    """The kernels' scratch hash table from IDs to slots, kept by its user between steps (so a step allocates
    and page-faults in nothing) and grown to a power of two of at least ``2 nnz`` entries; each kernel leaves it
    empty (keys all -1). Batch-sized, never table-sized: 4 MB for 82k lookups. One table serves one thread:
    a module or optimiser stepped from two threads at once would need one each."""

    def __init__(self) -> None:
        self.keys = np.empty(0, np.int64)
        self.slots = np.empty(0, np.int64)

    def at_least(self, nnz: int) -> tuple[np.ndarray, np.ndarray]:
        """``keys`` (all -1) and ``slots`` of at least ``2 nnz`` entries each."""
        if self.keys.size < 2 * nnz:
            capacity = 1 << max(4, (2 * nnz - 1).bit_length())
            self.keys, self.slots = np.full(capacity, -1, np.int64), np.empty(capacity, np.int64)
        return self.keys, self.slots
