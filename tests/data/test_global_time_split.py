from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest

import jointembed.data.recommendation as recommendation
from jointembed.baselines import EASE
from jointembed.data.interactions import Histories, Interactions, global_time_split
from jointembed.data.movielens import read_movielens
from jointembed.data.recommendation import MovieLensDataModule, MovieWorldDataModule
from jointembed.metrics.ranking import ndcg_at_k
from jointembed.models.recommender import Recommender
from jointembed.tasks.recommendation import RecommendationTask

# (user, item, time), in no particular order; times 1..10, one watch each
EVENTS = [(0, 0, 1), (1, 4, 3), (0, 1, 2), (3, 1, 5), (1, 5, 4), (0, 2, 6), (2, 7, 7), (1, 6, 8), (0, 3, 9), (2, 0, 10)]


def _log(events, num_users: int = 4, num_items: int = 8) -> Interactions:
    users, items, times = (np.array(column) for column in zip(*events, strict=True))
    return Interactions(users, items, times, num_users=num_users, num_items=num_items)


def _rows(histories: Histories) -> list[list[int]]:
    return [histories.get(u).tolist() for u in range(len(histories))]


def test_each_stage_holds_the_watches_between_its_cuts():
    # 10 watches: quantile 0.5 cuts at watch 5 (t=6), 0.8 at watch 8 (t=9)
    s = global_time_split(_log(EVENTS), val_quantile=0.5, test_quantile=0.8)
    assert (s.val_cut, s.test_cut) == (6, 9)
    assert _rows(s.train) == [[0, 1], [4, 5], [], [1]]
    assert _rows(s.val) == [[2], [6], [7], []]
    assert _rows(s.test) == [[3], [], [0], []]
    assert _rows(s.test_input()) == [[0, 1, 2], [4, 5, 6], [7], [1]]  # training + validation, in time order
    # user 2's first watch is a validation target: no input there, so only test evaluates them (input: that watch)
    assert s.val_users.tolist() == [0, 1] and s.val_users_without_input == 1
    assert s.test_users.tolist() == [0, 2] and s.test_users_without_input == 0
    # items 2 and 6 (validation) and 3 (test) were never watched in training; item 0 (test) was
    assert (s.val_new_items, s.test_new_items) == (2, 1)
    assert "1 left out: no earlier watch" in s.summary()


def test_histories_in_time_order_split_like_the_log():
    log = _log(EVENTS)
    a, b = global_time_split(log, 0.5, 0.8), global_time_split(log.to_histories(), 0.5, 0.8)
    for name in ("train", "val", "test"):
        assert _rows(getattr(a, name)) == _rows(getattr(b, name))


def test_a_watch_exactly_at_a_cut_falls_after_it():
    # 8 watches; quantile 0.5 is watch 4, at t=2, as are watches 2 and 3: all three are validation targets
    events = [(0, 0, 1), (1, 1, 1), (0, 2, 2), (1, 3, 2), (0, 4, 2), (1, 5, 3), (0, 6, 4), (1, 7, 4)]
    s = global_time_split(_log(events, num_users=2), val_quantile=0.5, test_quantile=0.75)
    assert (s.val_cut, s.test_cut) == (2, 4)
    assert _rows(s.train) == [[0], [1]]
    assert _rows(s.val) == [[2, 4], [3, 5]]
    assert _rows(s.test) == [[6], [7]]  # both at the test cut t=4


def test_users_without_an_earlier_watch_are_left_out_of_test():
    # user 1 watches only after the test cut: a new user, not a ranking question this split asks
    events = [(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4), (1, 4, 6), (0, 6, 7), (1, 5, 8)]
    s = global_time_split(_log(events, num_users=2), val_quantile=0.5, test_quantile=0.7)
    assert (s.val_cut, s.test_cut) == (4, 6)
    assert _rows(s.test) == [[6], [4, 5]]
    assert s.test_users.tolist() == [0] and s.test_users_without_input == 1
    assert s.test_new_items == 1  # item 6, counted only among evaluated users' targets


def test_histories_without_times_are_an_error():
    with pytest.raises(ValueError, match="no timestamps"):
        global_time_split(Histories.from_lists([[0, 1], [2, 3]], num_items=4))


@pytest.mark.parametrize("quantiles", [(0.0, 0.5), (0.5, 0.5), (0.9, 0.8), (0.5, 1.0)])
def test_quantiles_out_of_order_are_an_error(quantiles):
    with pytest.raises(ValueError, match=r"0 < val_quantile < test_quantile < 1"):
        global_time_split(_log(EVENTS), *quantiles)


def test_a_cut_that_leaves_a_stage_empty_names_its_quantile():
    same_time = [(u, u, 7) for u in range(4)]  # everything at once: nothing is before any cut
    with pytest.raises(ValueError, match=r"val_quantile=0.5 \(cut t=7\) leaves no training watch"):
        global_time_split(_log(same_time), 0.5, 0.8)
    # ties from watch 4 on: both cuts land on t=5, nothing lies between them
    tied = [(0, 0, 1), (0, 1, 1), (1, 2, 1), (1, 3, 1)] + [(u % 2, 4 + u, 5) for u in range(4)]
    with pytest.raises(ValueError, match=r"val_quantile=0.5 and test_quantile=0.8 leaves no validation target"):
        global_time_split(_log(tied), 0.5, 0.8)
    # the only test target belongs to a user who watched nothing before it
    alone = [(0, 0, 1), (0, 1, 2), (1, 2, 3)]
    with pytest.raises(ValueError, match="no user with a test target watched anything before its cut"):
        global_time_split(_log(alone, num_users=2), 0.34, 0.67)


def test_data_module_serves_the_global_split_and_fits_baselines_on_the_test_input(monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(recommendation, "rank_zero_info", lines.append)
    data = MovieWorldDataModule(num_movies=150, num_users=200, mean_watches=15, protocol="global_time")
    data.setup("fit")
    expected = global_time_split(data.interactions, 0.8, 0.9)
    s = data.split
    assert lines == [expected.summary()]
    assert _rows(s.train) == _rows(s.val_input) == _rows(expected.train)
    assert _rows(s.val_targets) == _rows(expected.val) and _rows(s.test_targets) == _rows(expected.test)
    assert _rows(s.test_input) == _rows(expected.test_input())
    assert np.array_equal(s.val_users, expected.val_users) and np.array_equal(s.test_users, expected.test_users)
    assert data.item_counts.sum() == s.train.nnz  # the item table's counts come from training watches only
    # EASE learns from training + validation watches (all a test user's input), not from training alone
    users, per_user = data.baseline_per_user(k=10)
    rows = s.test_targets.select(users)
    for fit_on, same in ((s.test_input, True), (s.train, False)):
        top = np.asarray(EASE(l2=data.ease_l2).fit(fit_on).recommend(s.test_input, users, k=10))
        assert np.array_equal(np.asarray(ndcg_at_k(top, rows, 10, per_user=True)), per_user["ease"]["ndcg@10"]) == same


@pytest.mark.parametrize("time_split", [(0.9, 0.8), (0.0, 0.5), (0.5,)])
def test_data_module_rejects_bad_time_splits(time_split):
    with pytest.raises(ValueError, match="time_split"):
        MovieWorldDataModule(protocol="global_time", time_split=time_split)


def test_model_trains_and_is_tested_under_the_global_split():
    pl.seed_everything(0)
    data = MovieWorldDataModule(num_movies=300, num_users=600, mean_watches=20, batch_size=128, causal=True,
                                protocol="global_time", time_split=(0.6, 0.8))  # fmt: skip
    task = RecommendationTask(Recommender(300, embedding_dim=16, hidden_sizes=[32]), lr=0.02)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, datamodule=data)
    result = trainer.test(task, datamodule=data, verbose=False)[0]
    assert result["test/ndcg@10"] > result["test/baseline_popularity/ndcg@10"]


ML100K = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens" / "ml-100k"


@pytest.mark.skipif(not (ML100K / "u.data").exists(), reason=f"MovieLens 100K is not at {ML100K} (never shipped)")
def test_ml100k_default_cuts():
    # counted once by hand from u.data: 100,000 ratings, 80 % before 1998-03-07 (t=889237269)
    s = global_time_split(read_movielens(ML100K).deduplicate(), 0.8, 0.9)
    assert (s.train.nnz, s.val.nnz, s.test.nnz) == (79_999, 10_001, 10_000)
    assert (s.val_cut, s.test_cut) == (889_237_269, 891_382_309)
    assert (s.val_users.size, s.val_users_without_input) == (81, 116)
    assert (s.test_users.size, s.test_users_without_input) == (90, 76)
    data = MovieLensDataModule(path=str(ML100K), protocol="global_time")
    data.setup("fit")
    assert np.array_equal(data.split.test_users, s.test_users)
