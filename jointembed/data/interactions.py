"""User-item interaction logs (who watched what, when), and the evaluation splits of their per-user histories.

:class:`Interactions` is the flat event log a reader or generator returns; :class:`~jointembed.histories.Histories`
(defined in :mod:`jointembed.histories`, re-exported here) is the same data grouped by user and sorted by time,
the shape every split, baseline and metric in jointembed works on. Four evaluation splits are here:
:func:`leave_last_out`, :func:`temporal_split`, :func:`global_time_split` and :func:`held_out_users`.

Repeated ``(user, item)`` events (re-watches) are kept as they are: every reader and split preserves them, and
:meth:`Interactions.deduplicate` removes them when a protocol needs each pair once. MovieLens has none; in logs
that do, deduplicate before splitting, or a held-out target may also sit in the training history (where
"exclude seen" masking would hide it from the ranking).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from jointembed.histories import Histories, as_int64, check_id_range

if TYPE_CHECKING:
    from jointembed.vocab import Vocabulary

__all__ = [
    "Interactions",
    "Histories",
    "GlobalTimeSplit",
    "HeldOutUsersSplit",
    "global_time_split",
    "held_out_users",
    "leave_last_out",
    "temporal_split",
]


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
        self.users = as_int64("users", self.users)
        self.items = as_int64("items", self.items)
        self.timestamps = as_int64("timestamps", self.timestamps)
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
        check_id_range("users", self.users, self.num_users)
        check_id_range("items", self.items, self.num_items)
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
class GlobalTimeSplit:
    """Result of :func:`global_time_split`; every Histories has one row per user (U rows), empty where unused.

    Attributes:
        train: Watches before ``val_cut``: the training data, and the validation input.
        val: Watches in ``[val_cut, test_cut)``: the validation targets (training + these: the test input).
        test: Watches at or after ``test_cut``: the test targets.
        val_users: ``(U_val,)`` sorted IDs of users with a validation target and a training watch.
        test_users: ``(U_test,)`` sorted IDs of users with a test target and a watch before ``test_cut``.
        val_cut, test_cut: The two cut times (the log's time unit).
        val_users_without_input, test_users_without_input: Users with targets in that stage but no earlier
            watch, left out of it.
        val_new_items, test_new_items: Distinct items among that stage's evaluated targets with no training watch.
    """

    train: Histories
    val: Histories
    test: Histories
    val_users: np.ndarray
    test_users: np.ndarray
    val_cut: int
    test_cut: int
    val_users_without_input: int
    test_users_without_input: int
    val_new_items: int
    test_new_items: int

    def test_input(self) -> Histories:
        """What a test user's ranking starts from: every watch before ``test_cut`` (training + validation)."""
        return self.train.concat_rows(self.val)

    def summary(self) -> str:
        """One line with the cuts, the watches and users of each stage, and who and what was left out."""
        return (
            f"global time split: train {self.train.nnz} watches before t={self.val_cut}; validation "
            f"{self.val.nnz} watches, {self.val_users.size} users ({self.val_users_without_input} left out: no "
            f"earlier watch), {self.val_new_items} target items unseen in training; test {self.test.nnz} watches "
            f"from t={self.test_cut}, {self.test_users.size} users ({self.test_users_without_input} left out), "
            f"{self.test_new_items} target items unseen in training"
        )


def _quantile_cut(times: np.ndarray, quantile: float) -> int:
    """The time of the first watch outside the earliest ``floor(quantile * E)`` of the ``(E,)`` sorted times."""
    return int(times[min(int(quantile * times.size), times.size - 1)])


def global_time_split(
    interactions: Interactions | Histories, val_quantile: float = 0.8, test_quantile: float = 0.9
) -> GlobalTimeSplit:
    """One calendar for everyone: train on the watches before a date, evaluate on the watches after it.

    Unlike the per-user splits, nothing a model trains on happens after anything it is tested on, as when a
    recommender is deployed. The cuts are quantiles of the log's watch times, so they suit any log: with E
    watches sorted by time, a cut at quantile q is the time of watch ``floor(q * E)`` (0-based). A watch exactly
    at a cut time falls after it, so ties never straddle a cut (a tie at the cut moves the boundary earlier).

    - training: watches with ``t < val_cut``;
    - validation targets: each user's watches with ``val_cut <= t < test_cut``, input their training watches;
    - test targets: watches with ``t >= test_cut``, input every earlier watch (training + validation,
      :meth:`GlobalTimeSplit.test_input`), as ``leave_last_out`` feeds its test.

    A user with targets in a stage but no watch before it has no input, and is left out of that stage (counted
    in ``*_users_without_input``): a new user is a cold-start question. Items first watched after ``val_cut``
    stay in the catalogue although training never saw them (counted in ``*_new_items``): a model cannot rank
    them sensibly, and the metrics honestly include that miss. Repeated ``(user, item)`` events across a cut
    would put a target in its own input, where "exclude seen" hides it: deduplicate such logs first.

    Args:
        interactions: The event log, or Histories that carry timestamps.
        val_quantile: Share of the watches (by time) before the validation cut, in (0, 1).
        test_quantile: Share before the test cut, in (``val_quantile``, 1).

    Returns:
        A :class:`GlobalTimeSplit`.

    Raises:
        ValueError: The quantiles are out of range, the histories carry no timestamps, or a cut leaves no
            training watch, no validation target or no test target (the error names the cut and its quantile).
    """
    if not 0.0 < val_quantile < test_quantile < 1.0:
        raise ValueError(f"need 0 < val_quantile < test_quantile < 1, got {val_quantile} and {test_quantile}")
    histories = _histories(interactions)
    if histories.timestamps is None:
        raise ValueError("global_time_split needs watch times: these histories carry no timestamps")
    times = histories.timestamps
    if times.size == 0:
        raise ValueError("global_time_split got an empty log")
    ordered = np.sort(times)
    val_cut, test_cut = _quantile_cut(ordered, val_quantile), _quantile_cut(ordered, test_quantile)
    train = histories.mask(times < val_cut)
    val = histories.mask((times >= val_cut) & (times < test_cut))
    test = histories.mask(times >= test_cut)
    stages = (
        ("training watch", train, f"val_quantile={val_quantile} (cut t={val_cut})"),
        ("validation target", val, f"val_quantile={val_quantile} and test_quantile={test_quantile}"),
        ("test target", test, f"test_quantile={test_quantile} (cut t={test_cut})"),
    )
    for what, part, cause in stages:
        if part.nnz == 0:
            span = f"the watch times run from {ordered[0]} to {ordered[-1]}"
            raise ValueError(f"global_time_split: {cause} leaves no {what} ({span}); choose other quantiles")
    trained = np.bincount(train.items, minlength=histories.num_items) > 0
    counts: dict[str, tuple[np.ndarray, int, int]] = {}
    for name, targets, before in (("val", val, train.lengths()), ("test", test, train.lengths() + val.lengths())):
        has_targets = targets.lengths() > 0
        users = np.flatnonzero(has_targets & (before > 0))
        if users.size == 0:
            raise ValueError(f"global_time_split: no user with a {name} target watched anything before its cut")
        target_items = np.unique(targets.select(users).items)
        counts[name] = (users, int((has_targets & (before == 0)).sum()), int((~trained[target_items]).sum()))
    return GlobalTimeSplit(
        train=train,
        val=val,
        test=test,
        val_users=counts["val"][0],
        test_users=counts["test"][0],
        val_cut=val_cut,
        test_cut=test_cut,
        val_users_without_input=counts["val"][1],
        test_users_without_input=counts["test"][1],
        val_new_items=counts["val"][2],
        test_new_items=counts["test"][2],
    )


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
