import numpy as np
import pytest

from jointembed.data.interactions import (
    Histories,
    Interactions,
    held_out_users,
    leave_last_out,
    random_rank_in_rows,
    temporal_split,
)


def _log() -> Interactions:
    # user 0: items 5, 3, 1 at t = 30, 10, 20 -> time order 3, 1, 5
    # user 1: one event; user 2: none; user 3: items 2, 4 tied at t=7 -> log order 2, 4, then 0 at t=9
    return Interactions(
        users=np.array([0, 0, 3, 1, 0, 3, 3]),
        items=np.array([5, 3, 2, 4, 1, 4, 0]),
        timestamps=np.array([30, 10, 7, 1, 20, 7, 9]),
        num_users=4,
        num_items=6,
    )


def _rows(h: Histories) -> list[list[int]]:
    return [h.get(u).tolist() for u in range(len(h))]


def test_histories_sorted_by_time_ties_by_log_order():
    h = _log().to_histories()
    assert _rows(h) == [[3, 1, 5], [4], [], [2, 4, 0]]
    assert h.lengths().tolist() == [3, 1, 0, 3]
    assert h.timestamps.tolist() == [10, 20, 30, 1, 7, 7, 9]
    assert h.positions().tolist() == [0, 1, 2, 0, 0, 1, 2]


def test_leave_last_out():
    train, test = leave_last_out(_log())
    assert _rows(train) == [[3, 1], [4], [], [2, 4]]
    assert _rows(test) == [[5], [], [], [0]]
    train2, test2 = leave_last_out(_log(), n_holdout=2)
    assert _rows(train2) == [[3], [4], [], [2]]
    assert _rows(test2) == [[1, 5], [], [], [4, 0]]


def test_temporal_split_val_before_test():
    train, val, test = temporal_split(_log(), n_val=1, n_test=1)
    assert _rows(train) == [[3], [4], [], [2]]
    assert _rows(val) == [[1], [], [], [4]]
    assert _rows(test) == [[5], [], [], [0]]
    assert _rows(train.concat_rows(val)) == _rows(leave_last_out(_log())[0])
    _, val0, _ = temporal_split(_log(), n_val=0)
    assert val0.nnz == 0 and len(val0) == 4


def test_held_out_users_partitions_events():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, size=600)
    log = Interactions(users, rng.integers(0, 30, size=600), rng.integers(0, 1000, size=600), 50, 30)
    split = held_out_users(log, fraction=0.2, seed=1, holdout_fraction=0.25, val_fraction=0.1)
    assert split.test_users.size == 10 and split.val_users.size == 5
    assert not set(split.test_users) & set(split.val_users)
    assert not set(split.test_users) & set(split.train_users)
    total = split.train.nnz + split.test_fold_in.nnz + split.test_targets.nnz
    assert total + split.val_fold_in.nnz + split.val_targets.nnz == 600
    full = log.to_histories()
    for u in split.test_users:
        length = full.lengths()[u]
        n_target = max(1, int(0.25 * length + 0.5))
        assert split.test_targets.get(u).tolist() == full.get(u)[length - n_target :].tolist()  # the latest
        assert split.test_fold_in.get(u).tolist() == full.get(u)[: length - n_target].tolist()
        assert split.train.get(u).size == 0
    again = held_out_users(log, fraction=0.2, seed=1, holdout_fraction=0.25, val_fraction=0.1)
    assert np.array_equal(again.test_users, split.test_users)


def test_held_out_users_random_targets():
    log = Interactions(np.zeros(10, dtype=np.int64), np.arange(10), np.arange(10), num_users=2, num_items=10)
    split = held_out_users(log, fraction=0.5, seed=3, n_holdout=4, order="random")
    assert split.test_users.tolist() == [0]
    targets = split.test_targets.get(0)
    assert targets.size == 4
    fold_in = split.test_fold_in.get(0)
    assert sorted(targets.tolist() + fold_in.tolist()) == list(range(10))
    assert fold_in.tolist() == sorted(fold_in.tolist())  # kept in time order


def test_deduplicate():
    log = Interactions([0, 0, 0, 1], [2, 2, 3, 2], [5, 1, 3, 0], num_users=2, num_items=4)
    assert log.deduplicate("first").timestamps.tolist() == [1, 3, 0]
    assert log.deduplicate("last").timestamps.tolist() == [5, 3, 0]


def test_interactions_validation():
    with pytest.raises(ValueError, match=r"items\[1\] = 7 is out of range"):
        Interactions([0, 0], [1, 7], [0, 0], num_users=1, num_items=3)
    with pytest.raises(ValueError, match="same length"):
        Interactions([0], [1, 2], [0, 0], num_users=1, num_items=3)
    with pytest.raises(ValueError, match="item_titles has 1 entries"):
        Interactions([0], [1], [0], num_users=1, num_items=3, item_titles=["a"])


def test_random_rank_in_rows_is_a_permutation_of_each_row():
    rows = np.array([0, 0, 0, 2, 2, 3])
    keys = np.array([0.9, 0.1, 0.5, 0.3, 0.2, 0.7])
    assert random_rank_in_rows(rows, keys).tolist() == [2, 0, 1, 1, 0, 0]
    assert random_rank_in_rows(np.zeros(0, dtype=np.int64), np.zeros(0)).tolist() == []
