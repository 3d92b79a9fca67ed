"""The cold-start split (item-disjoint cold movies, held-out cold users, warm leave-last-out) and the segment
metrics, checked on a generated world and on a case computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jointembed.data.coldstart import coldstart_split, format_table, segment_metrics
from jointembed.data.movie_world import generate_movie_world
from jointembed.histories import Histories


@pytest.fixture(scope="module")
def world():
    return generate_movie_world(300, 400, seed=3)


def test_cold_movies_never_reach_training_or_inputs(world) -> None:
    split = coldstart_split(world.interactions, cold_fraction=0.2, val_cold_fraction=0.1, no_content=[0, 1], seed=1)
    cold = np.concatenate([split.cold_items, split.val_cold_items])
    assert len(split.cold_items) == 60 and len(split.val_cold_items) == 30
    assert not set(split.cold_items) & set(split.val_cold_items) and not {0, 1} & set(cold)
    w = split.warm
    for histories in (w.train, w.val_targets, w.test_input, w.test_targets, split.cold_user_input):
        assert not np.isin(histories.items, cold).any()
    assert np.isin(split.cold_targets.items, split.cold_items).all() and split.cold_targets.nnz > 0
    assert np.isin(split.val_cold_targets.items, split.val_cold_items).all()
    assert not split.warm_items[cold].any() and split.warm_items.sum() == 300 - 90
    events = np.bincount(world.interactions.items, minlength=300)
    assert split.cold_targets.nnz == events[split.cold_items].sum() - _cold_user_watches(world, split)


def _cold_user_watches(world, split) -> int:
    inter = world.interactions
    return int((np.isin(inter.items, split.cold_items) & np.isin(inter.users, split.cold_users)).sum())


def test_cold_users_are_held_out_with_one_to_five_watches(world) -> None:
    split = coldstart_split(world.interactions, cold_user_fraction=0.25, max_cold_user_watches=5, seed=2)
    users = split.cold_users
    assert len(users) > 50
    assert (split.warm.train.lengths()[users] == 0).all() and (split.warm.test_targets.lengths()[users] == 0).all()
    given = split.cold_user_input.lengths()[users]
    assert given.min() >= 1 and given.max() <= 5 and len(set(given.tolist())) == 5
    assert (split.cold_user_targets.lengths()[users] >= 1).all()
    for user in users[:10]:  # the input is the user's first watches, in time order
        warm_log = np.concatenate([split.cold_user_input.get(user), split.cold_user_targets.get(user)])
        assert len(set(warm_log.tolist())) == len(warm_log)


def test_validation_cold_users_leave_the_test_split_as_it_was(world) -> None:
    plain = coldstart_split(world.interactions, cold_user_fraction=0.1, seed=2)
    split = coldstart_split(world.interactions, cold_user_fraction=0.1, val_cold_user_fraction=0.1, seed=2)
    assert plain.val_cold_users.size == 0
    for name in ("cold_items", "val_cold_items", "cold_users"):
        assert np.array_equal(getattr(plain, name), getattr(split, name)), name
    for name in ("cold_user_input", "cold_user_targets"):
        assert np.array_equal(getattr(plain, name).items, getattr(split, name).items), name
    users = split.val_cold_users
    assert len(users) == len(split.cold_users) and not set(users) & set(split.cold_users)
    assert (split.warm.train.lengths()[users] == 0).all() and (split.warm.test_targets.lengths()[users] == 0).all()
    assert (plain.warm.train.lengths()[users] > 0).any()  # they were warm users before
    given = split.val_cold_user_input.lengths()[users]
    assert given.min() >= 1 and given.max() <= 5 and (split.val_cold_user_targets.lengths()[users] >= 1).all()
    with pytest.raises(ValueError, match="val_cold_user_fraction must be in"):
        coldstart_split(world.interactions, val_cold_user_fraction=1.0)
    with pytest.raises(ValueError, match="cannot hold out"):
        coldstart_split(world.interactions, cold_user_fraction=0.6, val_cold_user_fraction=0.6)


def test_the_split_is_seeded(world) -> None:
    a, b = coldstart_split(world.interactions, seed=5), coldstart_split(world.interactions, seed=5)
    c = coldstart_split(world.interactions, seed=6)
    assert np.array_equal(a.cold_items, b.cold_items) and np.array_equal(a.cold_users, b.cold_users)
    assert not np.array_equal(a.cold_items, c.cold_items)


def test_bad_settings_are_named(world) -> None:
    with pytest.raises(ValueError, match="cold_fraction must be in \\[0, 1\\), got 1.5"):
        coldstart_split(world.interactions, cold_fraction=1.5)
    with pytest.raises(ValueError, match="cannot draw 270 \\+ 0 cold items from the"):
        coldstart_split(world.interactions, cold_fraction=0.9, val_cold_fraction=0.0, no_content=range(100))


class _Fixed:
    def __init__(self, scores: list[float]) -> None:
        self.scores = torch.tensor(scores)

    def score(self, histories: Histories, users: np.ndarray) -> torch.Tensor:
        return self.scores.repeat(len(users), 1)


def test_segment_metrics_by_hand() -> None:
    # 6 items; user 0 watched item 0, targets {3, 5}; only items 2..5 are candidates; k = 2
    inputs = Histories.from_lists([[0], [1]], num_items=6)
    targets = Histories.from_lists([[3, 5], []], num_items=6)
    candidates = np.array([False, False, True, True, True, True])
    scorer = _Fixed([9.0, 8.0, 1.0, 5.0, 4.0, 0.5])  # ranked among candidates: 3, 4, 2, 5
    m = segment_metrics(scorer, inputs, targets, np.array([0, 1]), candidates, k=2)
    assert m["users"] == 1  # user 1 has no target
    assert m["recall@2"] == pytest.approx(0.5) and m["hr@2"] == 1.0
    assert m["ndcg@2"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))
    table = format_table({f"test_coldstart/cold/fixed/{k}": v for k, v in m.items()}, k=2)
    assert "cold" in table and "0.5000" in table


def test_the_world_data_module_sets_how_clear_the_genres_are() -> None:
    from jointembed.data.coldstart import MovieWorldColdStartDataModule

    vague = MovieWorldColdStartDataModule(num_movies=120, num_users=150, genre_accuracy=0.5)
    clear = MovieWorldColdStartDataModule(num_movies=120, num_users=150, genre_accuracy=0.95)
    vague.setup()
    clear.setup()
    assert np.array_equal(vague.interactions.items, clear.interactions.items)  # content never changes watches
    assert vague.item_texts != clear.item_texts


def test_each_model_row_is_compared_with_each_baseline_on_the_same_users() -> None:
    from jointembed.baselines import PopularityRecommender
    from jointembed.data.coldstart import MovieWorldColdStartDataModule

    data = MovieWorldColdStartDataModule(num_movies=120, num_users=300, mean_watches=12)
    data.setup()
    copy = PopularityRecommender().fit(data.cold.warm.test_input)  # the module's own popularity baseline, again
    m = data.coldstart_metrics({"copy": copy}, k=10)
    vs = m["test_coldstart_vs"]
    assert set(vs) == {"warm", "cold", "cold_users"}  # cold_in_all has no baseline
    assert set(vs["warm"]) == {"copy_vs_popularity", "copy_vs_ease", "copy_vs_random"}
    assert "copy_vs_content_profile" in vs["cold"]  # popularity ranks cold movies too
    users = m["test_coldstart/warm/copy/users"]
    for metric in ("recall@10", "ndcg@10"):  # the same rankings: no difference at all
        assert vs["warm"]["copy_vs_popularity"][metric] == {
            "difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0, "users": users
        }  # fmt: skip
    ease = vs["warm"]["copy_vs_ease"]["recall@10"]
    expected = m["test_coldstart/warm/copy/recall@10"] - m["test_coldstart/warm/ease/recall@10"]
    assert ease["difference"] == pytest.approx(expected) and ease["low"] <= expected <= ease["high"]
    assert 0 < vs["cold_users"]["copy_vs_ease"]["ndcg@10"]["p_value"] <= 1
    table = format_table(m, k=10)
    assert "paired difference per user" in table and "copy_vs_popularity" in table
    assert "+0.000 [+0.000, +0.000] p=1.000" in table
    val = data.coldstart_metrics({"copy": copy}, k=10, stage="val", baselines=False)
    assert "val_coldstart/warm/copy/recall@10" in val and "val_coldstart_vs" not in val
