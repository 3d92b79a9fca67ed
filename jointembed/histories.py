"""Per-user histories in CSR layout: the shape every split, baseline and ranking metric in jointembed works on.

:class:`Histories` sits below both the data readers (:mod:`jointembed.data.interactions` builds it from an event
log) and the metrics and baselines that consume it, so neither layer imports the other for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from jointembed.sparse import SparseBatch

if TYPE_CHECKING:
    import scipy.sparse

    from jointembed.data.interactions import Interactions

__all__ = ["Histories"]


def as_int64(name: str, array: np.ndarray | Sequence[int]) -> np.ndarray:
    """``array`` as a 1-D int64 array; ``name`` is what errors call it."""
    array = np.asarray(array)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def check_id_range(name: str, ids: np.ndarray, size: int) -> None:
    """Raise a ``ValueError`` naming the first entry of ``ids`` outside ``[0, size)``."""
    if ids.size == 0:
        return
    bad = (ids < 0) | (ids >= size)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{pos}] = {int(ids[pos])} is out of range: IDs must be in [0, {size})")


@dataclass
class Histories:
    """Each user's items in time order, stored as CSR rows: row ``u`` is ``items[indptr[u]:indptr[u+1]]``.

    Rows are indexed by user ID, so a split's train, validation and test histories line up row for row (users
    without data have empty rows).

    Attributes:
        indptr: ``(U+1,)`` int64 row starts, non-decreasing, ``indptr[0] == 0`` and ``indptr[-1] == nnz``.
        items: ``(nnz,)`` int64 item IDs, oldest first within each row.
        num_items: Catalogue size N; every item is in ``[0, N)``.
        timestamps: ``(nnz,)`` int64 event times aligned with ``items``, or ``None``.
    """

    indptr: np.ndarray
    items: np.ndarray
    num_items: int
    timestamps: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.indptr = as_int64("indptr", self.indptr)
        self.items = as_int64("items", self.items)
        if self.indptr.size == 0 or self.indptr[0] != 0 or self.indptr[-1] != self.items.size:
            raise ValueError(f"indptr must start at 0 and end at nnz={self.items.size}")
        if np.any(np.diff(self.indptr) < 0):
            raise ValueError("indptr must be non-decreasing")
        check_id_range("items", self.items, self.num_items)
        if self.timestamps is not None:
            self.timestamps = as_int64("timestamps", self.timestamps)
            if self.timestamps.size != self.items.size:
                raise ValueError(f"timestamps has {self.timestamps.size} entries, items has {self.items.size}")

    @classmethod
    def from_interactions(cls, interactions: Interactions) -> Histories:
        """Group events by user and sort each user's events by timestamp, ties by position in the log.

        When the log is already in that order, the Histories shares its ``items`` and ``timestamps`` arrays
        instead of copying them.

        Returns:
            Histories with ``interactions.num_users`` rows.
        """
        users, times = interactions.users, interactions.timestamps
        counts = np.bincount(users, minlength=interactions.num_users)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        same_user = users[1:] == users[:-1]
        if np.all((users[1:] > users[:-1]) | (same_user & (times[1:] >= times[:-1]))):  # already in order
            # share the arrays (Histories are never modified in place): no second copy of a large log
            return cls(indptr, interactions.items, interactions.num_items, times)
        order = np.lexsort((times, users))  # lexsort is stable: ties keep log order
        return cls(indptr, interactions.items[order], interactions.num_items, times[order])

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int] | np.ndarray], num_items: int) -> Histories:
        """Build from one sequence of item IDs per user (already in time order)."""
        arrays = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
        lengths = np.array([a.size for a in arrays], dtype=np.int64)
        items = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return cls(np.concatenate([[0], np.cumsum(lengths)]), items, num_items)

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        """Total number of entries over all rows."""
        return int(self.items.size)

    def get(self, user: int) -> np.ndarray:
        """``(L_u,)`` items of row ``user``, oldest first (a view, do not modify)."""
        if not 0 <= user < len(self):
            raise IndexError(f"user {user} is out of range: rows are [0, {len(self)})")
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def lengths(self) -> np.ndarray:
        """``(U,)`` int64 number of entries in each row."""
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        """``(nnz,)`` int64 row (user) of each entry."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def positions(self) -> np.ndarray:
        """``(nnz,)`` int64 position of each entry within its row (0 = oldest)."""
        return np.arange(self.nnz, dtype=np.int64) - np.repeat(self.indptr[:-1], self.lengths())

    def _gather_index(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = as_int64("user_indices", rows)
        check_id_range("user_indices", rows, len(self))
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        starts = np.concatenate([[0], np.cumsum(lengths)])
        index = np.arange(starts[-1], dtype=np.int64) + np.repeat(self.indptr[rows] - starts[:-1], lengths)
        return index, starts

    def select(self, user_indices: np.ndarray | Sequence[int]) -> Histories:
        """The rows ``user_indices`` (in that order, repeats allowed) as a new ``Histories``."""
        index, indptr = self._gather_index(np.asarray(user_indices))
        ts = None if self.timestamps is None else self.timestamps[index]
        return Histories(indptr, self.items[index], self.num_items, ts)

    def mask(self, keep: np.ndarray) -> Histories:
        """Keep the entries where ``keep`` ``(nnz,)`` is True, preserving rows (some may become empty)."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.nnz,):
            raise ValueError(f"keep has shape {keep.shape}, expected ({self.nnz},)")
        counts = np.bincount(self.row_ids()[keep], minlength=len(self))
        ts = None if self.timestamps is None else self.timestamps[keep]
        return Histories(np.concatenate([[0], np.cumsum(counts)]), self.items[keep], self.num_items, ts)

    def to_sparse_batch(self, user_indices: np.ndarray | Sequence[int] | torch.Tensor) -> SparseBatch:
        """The rows ``user_indices`` as a :class:`~jointembed.sparse.SparseBatch` of B bags (no weights).

        Args:
            user_indices: ``(B,)`` row indices.

        Returns:
            SparseBatch with ``values`` ``(sum of lengths,)`` and ``offsets`` ``(B,)``.
        """
        if isinstance(user_indices, torch.Tensor):
            user_indices = user_indices.cpu().numpy()
        index, starts = self._gather_index(np.asarray(user_indices))
        return SparseBatch(torch.from_numpy(self.items[index]), torch.from_numpy(starts[:-1].copy()))

    def to_csr_matrix(self, binary: bool = True) -> scipy.sparse.csr_matrix:
        """``(U, N)`` scipy CSR matrix; ``binary`` sets repeated items to 1 instead of counting them."""
        import scipy.sparse

        data = np.ones(self.nnz, dtype=np.float32)
        matrix = scipy.sparse.csr_matrix((data, self.items, self.indptr), shape=(len(self), self.num_items))
        matrix.sum_duplicates()
        if binary:
            matrix.data[:] = 1.0
        return matrix

    def concat_rows(self, other: Histories) -> Histories:
        """Row-wise union: row ``u`` holds this row's entries followed by ``other``'s row ``u``."""
        if len(other) != len(self) or other.num_items != self.num_items:
            shapes = f"{len(self)}x{self.num_items} and {len(other)}x{other.num_items}"
            raise ValueError(f"cannot concatenate rows of histories shaped {shapes}")
        rows = np.concatenate([self.row_ids(), other.row_ids()])
        order = np.argsort(rows, kind="stable")
        items = np.concatenate([self.items, other.items])[order]
        ts = None
        if self.timestamps is not None and other.timestamps is not None:
            ts = np.concatenate([self.timestamps, other.timestamps])[order]
        return Histories(self.indptr + other.indptr, items, self.num_items, ts)
