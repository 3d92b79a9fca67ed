"""User-item interaction logs (who watched what, when) and per-user histories in CSR layout.

:class:`Interactions` is the flat event log a reader or generator returns; :class:`Histories` is the same data
grouped by user and sorted by time, the shape every split, baseline and metric in jointembed works on. Three
evaluation splits are here: :func:`leave_last_out`, :func:`temporal_split` and :func:`held_out_users`.

Repeated ``(user, item)`` events (re-watches) are kept as they are: every reader and split preserves them, and
:meth:`Interactions.deduplicate` removes them when a protocol needs each pair once. MovieLens has none; in logs
that do, deduplicate before splitting, or a held-out target may also sit in the training history (where
"exclude seen" masking would hide it from the ranking).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from jointembed.sparse import SparseBatch

if TYPE_CHECKING:
    import scipy.sparse

    from jointembed.vocab import Vocabulary

__all__ = ["Interactions", "Histories", "HeldOutUsersSplit", "leave_last_out", "temporal_split", "held_out_users"]


def _as_int64(name: str, array: np.ndarray | Sequence[int]) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _check_range(name: str, ids: np.ndarray, size: int) -> None:
    if ids.size == 0:
        return
    bad = (ids < 0) | (ids >= size)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{pos}] = {int(ids[pos])} is out of range: IDs must be in [0, {size})")


@dataclass
class Interactions:
    """A log of E user-item events (e.g. watches), with integer IDs ``0..num_users-1`` and ``0..num_items-1``.

    Attributes:
        users: ``(E,)`` int64 user ID of each event.
        items: ``(E,)`` int64 item ID of each event.
        timestamps: ``(E,)`` int64 time of each event (seconds, or any order-preserving integer); ties are
            broken by position in the log.
        num_users: Number of users U (IDs may be unused).
        num_items: Number of items N, the size of the catalogue a model scores.
        item_titles: ``N`` display titles, or ``None``; ``""`` where a title is unknown.
        item_vocab: Maps raw item IDs (e.g. MovieLens movie IDs) to item IDs, or ``None`` when IDs are native.
            Built without pad/OOV tokens, so its IDs are exactly ``0..N-1``.
        user_vocab: Maps raw user IDs to user IDs, or ``None``; likewise without reserved tokens.
        item_genres: ``N`` tuples of genre names, or ``None``.
        ratings: ``(E,)`` float32 explicit rating of each event, or ``None``.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int
    item_titles: list[str] | None = None
    item_vocab: Vocabulary | None = None
    user_vocab: Vocabulary | None = None
    item_genres: list[tuple[str, ...]] | None = None
    ratings: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.users = _as_int64("users", self.users)
        self.items = _as_int64("items", self.items)
        self.timestamps = _as_int64("timestamps", self.timestamps)
        n = self.users.size
        if self.items.size != n or self.timestamps.size != n:
            raise ValueError(
                f"users, items and timestamps must have the same length, got "
                f"{self.users.size}, {self.items.size} and {self.timestamps.size}"
            )
        if self.ratings is not None:
            self.ratings = np.asarray(self.ratings, dtype=np.float32)
            if self.ratings.shape != (n,):
                raise ValueError(f"ratings has shape {self.ratings.shape}, expected ({n},)")
        _check_range("users", self.users, self.num_users)
        _check_range("items", self.items, self.num_items)
        for name, table in (("item_titles", self.item_titles), ("item_genres", self.item_genres)):
            if table is not None and len(table) != self.num_items:
                raise ValueError(f"{name} has {len(table)} entries but num_items is {self.num_items}")
        vocabs = (("item_vocab", self.item_vocab, self.num_items), ("user_vocab", self.user_vocab, self.num_users))
        for name, vocab, size in vocabs:
            if vocab is not None and len(vocab) != size:
                raise ValueError(f"{name} has {len(vocab)} IDs but the data has {size}")

    def __len__(self) -> int:
        return int(self.users.size)

    def item_counts(self) -> np.ndarray:
        """``(N,)`` int64 number of events of each item."""
        return np.bincount(self.items, minlength=self.num_items).astype(np.int64)

    def user_counts(self) -> np.ndarray:
        """``(U,)`` int64 number of events of each user."""
        return np.bincount(self.users, minlength=self.num_users).astype(np.int64)

    def subset(self, mask_or_index: np.ndarray) -> Interactions:
        """The events selected by a boolean mask ``(E,)`` or an index array, with the same ID spaces."""
        ratings = None if self.ratings is None else self.ratings[mask_or_index]
        return replace(
            self,
            users=self.users[mask_or_index],
            items=self.items[mask_or_index],
            timestamps=self.timestamps[mask_or_index],
            ratings=ratings,
        )

    def deduplicate(self, keep: Literal["first", "last"] = "first") -> Interactions:
        """Keep one event per ``(user, item)`` pair: its earliest (``"first"``) or latest (``"last"``) one.

        Events stay in their original log order.
        """
        if keep not in ("first", "last"):
            raise ValueError(f"keep must be 'first' or 'last', got {keep!r}")
        order = np.lexsort((self.timestamps, self.items, self.users))  # stable: ties keep log order
        key = self.users[order] * self.num_items + self.items[order]
        chosen = np.ones(key.size, dtype=bool)
        if keep == "first":
            chosen[1:] = key[1:] != key[:-1]
        else:
            chosen[:-1] = key[1:] != key[:-1]
        return self.subset(np.sort(order[chosen]))

    def to_histories(self) -> Histories:
        """Per-user histories sorted by time; see :meth:`Histories.from_interactions`."""
        return Histories.from_interactions(self)


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
        self.indptr = _as_int64("indptr", self.indptr)
        self.items = _as_int64("items", self.items)
        if self.indptr.size == 0 or self.indptr[0] != 0 or self.indptr[-1] != self.items.size:
            raise ValueError(f"indptr must start at 0 and end at nnz={self.items.size}")
        if np.any(np.diff(self.indptr) < 0):
            raise ValueError("indptr must be non-decreasing")
        _check_range("items", self.items, self.num_items)
        if self.timestamps is not None:
            self.timestamps = _as_int64("timestamps", self.timestamps)
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
        rows = _as_int64("user_indices", rows)
        _check_range("user_indices", rows, len(self))
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


def _histories(data: Interactions | Histories) -> Histories:
    if isinstance(data, Histories):
        return data
    if isinstance(data, Interactions):
        return data.to_histories()
    raise TypeError(f"expected Interactions or Histories, got {type(data).__name__}")


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _split_last(histories: Histories, n: int) -> tuple[Histories, Histories]:
    """Move the last ``n`` entries of every row with at least ``n + 1`` entries into a second Histories."""
    lengths = histories.lengths()
    n_take = np.where(lengths >= n + 1, n, 0)
    is_last = histories.positions() >= np.repeat(lengths - n_take, lengths)
    return histories.mask(~is_last), histories.mask(is_last)


def leave_last_out(interactions: Interactions | Histories, n_holdout: int = 1) -> tuple[Histories, Histories]:
    """Per-user temporal split: each user's last ``n_holdout`` events are the test targets.

    Events are ordered by timestamp, ties by position in the log. A user with fewer than ``n_holdout + 1``
    events keeps all of them in train and has no target, so every test user has a non-empty input history.

    Args:
        interactions: The event log, or histories already in time order.
        n_holdout: Number of events held out per user (>= 1).

    Returns:
        ``(train, test)``: Histories with one row per user (U rows each), ``train`` oldest first.
    """
    _check_count("n_holdout", n_holdout, 1)
    return _split_last(_histories(interactions), n_holdout)


def temporal_split(
    interactions: Interactions | Histories, n_val: int = 1, n_test: int = 1
) -> tuple[Histories, Histories, Histories]:
    """Per-user temporal split into train, validation and test targets.

    The last ``n_test`` events of each user with at least ``n_test + 1`` events become test targets; then, of
    what remains, the last ``n_val`` events of each user with at least ``n_val + 1`` left become validation
    targets. So train always keeps at least one event of a user with any event, and validation targets precede
    test targets in time. Evaluate validation with ``train`` as input, test with ``train`` plus ``val``
    (``train.concat_rows(val)``, which equals the train part of ``leave_last_out(interactions, n_test)``).

    Args:
        interactions: The event log, or histories already in time order.
        n_val: Validation events per user (>= 0; 0 gives empty validation rows).
        n_test: Test events per user (>= 1).

    Returns:
        ``(train, val, test)``: Histories with U rows each.
    """
    _check_count("n_val", n_val, 0)
    _check_count("n_test", n_test, 1)
    rest, test = _split_last(_histories(interactions), n_test)
    if n_val == 0:
        return rest, rest.mask(np.zeros(rest.nnz, dtype=bool)), test
    train, val = _split_last(rest, n_val)
    return train, val, test


@dataclass
class HeldOutUsersSplit:
    """Result of :func:`held_out_users`; every Histories has one row per user (U rows), empty where unused.

    Attributes:
        train: Full histories of the training users; empty rows for held-out users.
        train_users: ``(U_train,)`` sorted IDs of training users with at least one event.
        test_users: ``(U_test,)`` sorted IDs of the held-out test users.
        test_fold_in: Input histories of the test users (what the model sees at test time).
        test_targets: Held-out events of the test users (what it must rank highly).
        val_users, val_fold_in, val_targets: The same for held-out validation users (empty with
            ``val_fraction=0``).
    """

    train: Histories
    train_users: np.ndarray
    test_users: np.ndarray
    test_fold_in: Histories
    test_targets: Histories
    val_users: np.ndarray
    val_fold_in: Histories
    val_targets: Histories


def random_rank_in_rows(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``(nnz,)`` rank of each entry within its row in a random order: ``rows`` ``(nnz,)`` is sorted (row-major
    layout) and ``keys`` ``(nnz,)`` are uniform random numbers that set the order."""
    order = np.lexsort((keys, rows))
    counts = np.bincount(rows) if rows.size else np.zeros(0, dtype=np.int64)
    rank = np.empty(rows.size, dtype=np.int64)
    rank[order] = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return rank


def _target_mask(histories: Histories, n_target: np.ndarray, order: str, rng: np.random.Generator) -> np.ndarray:
    """``(nnz,)`` True for the entries held out: the last (``"time"``) or random ``n_target[u]`` of row u."""
    lengths = histories.lengths()
    if order == "time":
        return histories.positions() >= np.repeat(lengths - n_target, lengths)
    rank = random_rank_in_rows(histories.row_ids(), rng.random(histories.nnz))
    return rank < np.repeat(n_target, lengths)


def held_out_users(
    interactions: Interactions | Histories,
    fraction: float = 0.1,
    *,
    seed: int = 0,
    holdout_fraction: float = 0.2,
    n_holdout: int | None = None,
    order: Literal["time", "random"] = "time",
    val_fraction: float = 0.0,
) -> HeldOutUsersSplit:
    """Strong-generalisation split: some users are unseen in training and are scored from a fold-in history.

    Protocol (after Liang et al., 2018, "Variational Autoencoders for Collaborative Filtering"):

    1. Users with at least 2 events are eligible. A seeded random ``round(fraction * eligible)`` of them
       become test users and the next ``round(val_fraction * eligible)`` validation users.
    2. Every other user is a training user; their whole history is training data.
    3. Each held-out user's events are divided into a fold-in part (the model's input at evaluation) and a
       target part: ``n_holdout`` events if given, else ``max(1, round(holdout_fraction * L))`` of the L
       events (half rounds up), at most ``L - 1`` so the fold-in part is never empty. With ``order="time"``
       the targets are the last events, with ``order="random"`` a seeded random subset.

    Args:
        interactions: The event log, or histories in time order.
        fraction: Share of eligible users held out for testing, in [0, 1).
        seed: Seed of the user choice and of random target choice.
        holdout_fraction: Share of a held-out user's events used as targets, in (0, 1).
        n_holdout: Fixed number of targets per held-out user instead of ``holdout_fraction``.
        order: ``"time"`` holds out the latest events, ``"random"`` a random subset.
        val_fraction: Share of eligible users held out for validation, in [0, 1).

    Returns:
        A :class:`HeldOutUsersSplit` whose Histories all have U rows.
    """
    if not 0.0 <= fraction < 1.0 or not 0.0 <= val_fraction < 1.0 or fraction + val_fraction >= 1.0:
        raise ValueError(f"need 0 <= fraction, val_fraction and their sum < 1, got {fraction} and {val_fraction}")
    if order not in ("time", "random"):
        raise ValueError(f"order must be 'time' or 'random', got {order!r}")
    if n_holdout is None and not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if n_holdout is not None:
        _check_count("n_holdout", n_holdout, 1)
    histories = _histories(interactions)
    lengths = histories.lengths()
    rng = np.random.default_rng(seed)
    eligible = rng.permutation(np.flatnonzero(lengths >= 2))
    n_test = int(fraction * eligible.size + 0.5)
    n_val = int(val_fraction * eligible.size + 0.5)
    test_users, val_users = np.sort(eligible[:n_test]), np.sort(eligible[n_test : n_test + n_val])
    group = np.zeros(len(histories), dtype=np.int8)  # 0 train, 1 test, 2 validation
    group[test_users], group[val_users] = 1, 2
    if n_holdout is not None:
        n_target = np.full(len(histories), n_holdout, dtype=np.int64)
    else:
        n_target = np.maximum(1, np.floor(holdout_fraction * lengths + 0.5).astype(np.int64))
    n_target = np.where(group > 0, np.minimum(n_target, lengths - 1), 0)
    is_target = _target_mask(histories, n_target, order, rng)
    entry_group = np.repeat(group, lengths)
    parts = {
        name: (histories.mask((entry_group == g) & ~is_target), histories.mask((entry_group == g) & is_target))
        for name, g in (("test", 1), ("val", 2))
    }
    return HeldOutUsersSplit(
        train=histories.mask(entry_group == 0),
        train_users=np.flatnonzero((group == 0) & (lengths > 0)),
        test_users=test_users,
        test_fold_in=parts["test"][0],
        test_targets=parts["test"][1],
        val_users=val_users,
        val_fold_in=parts["val"][0],
        val_targets=parts["val"][1],
    )
