import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from jointembed.cli import main
from jointembed.data.interactions import Histories
from jointembed.data.recommendation import (
    MovieLensDataModule,
    MovieWorldDataModule,
    MultiTargetExamples,
    TrainExamples,
)
from jointembed.models.pretrained_recommender import PretrainedRecommender
from jointembed.models.recommender import Recommender
from jointembed.tasks.recommendation import RecommendationTask

REPO = Path(__file__).resolve().parents[2]
ROWS = Histories.from_lists([[10, 11, 12, 13], [5], [7, 8]], num_items=20)


def _batch(examples, users, pos):
    batch = examples._batch(np.array(users), np.array(pos))
    return batch["history"].tolist(), batch["target"].tolist()


def test_history_is_every_other_watch_most_recent_kept():
    examples = TrainExamples(ROWS, targets_per_user=None, max_history=None)
    assert _batch(examples, [0, 0, 2], [1, 3, 0]) == ([[10, 12, 13], [10, 11, 12], [8]], [11, 13, 7])
    short = TrainExamples(ROWS, targets_per_user=None, max_history=2)
    assert _batch(short, [0, 0, 0], [3, 0, 2]) == ([[11, 12], [12, 13], [11, 13]], [13, 10, 12])


def test_causal_history_is_the_watches_before_the_target():
    examples = TrainExamples(ROWS, targets_per_user=None, max_history=None, causal=True)
    assert _batch(examples, [0, 0, 2], [2, 1, 1]) == ([[10, 11], [10], [7]], [12, 11, 8])
    assert _batch(TrainExamples(ROWS, None, max_history=1, causal=True), [0], [3]) == ([[12]], [13])
    # every watch but each user's first is a target; the user with one watch gives no example
    assert len(examples) == 3 + 1
    assert len(TrainExamples(ROWS, None, None)) == 4 + 2


def test_random_targets_per_user_are_valid_examples():
    torch.manual_seed(0)
    examples = TrainExamples(ROWS, targets_per_user=50, max_history=None, causal=True)
    assert len(examples) == 2 * 50
    batch = examples.__getitems__(list(range(len(examples))))
    for history, target in zip(batch["history"].tolist(), batch["target"].tolist(), strict=True):
        row = [10, 11, 12, 13] if target >= 10 else [7, 8]
        assert history == row[: row.index(target)] and history


def test_no_user_with_two_watches_is_an_error():
    with pytest.raises(ValueError, match="no user has two or more training watches"):
        TrainExamples(Histories.from_lists([[1], [2]], num_items=3), None, None)


def test_multi_target_examples_split_each_user_into_input_and_targets():
    torch.manual_seed(0)
    rows = Histories.from_lists([list(range(10)), [5], [7, 8], [12, 13, 14, 15, 16]], num_items=20)
    examples = MultiTargetExamples(rows, target_fraction=0.2, max_history=None)
    assert len(examples) == 3  # the user with one watch gives no example
    seen_targets = set()
    for _ in range(30):
        batch = examples.__getitems__([0, 1, 2])
        histories, targets = batch["history"].tolist(), batch["targets"].tolist()
        # round(0.2 * L) targets, at least one and at most L - 1; the rest is the input, in watch order
        assert [len(t) for t in targets] == [2, 1, 1]
        fulls = [list(range(10)), [7, 8], [12, 13, 14, 15, 16]]
        for full, history, target in zip(fulls, histories, targets, strict=True):
            assert sorted(history + target) == full and history == sorted(history)
        seen_targets.update(targets[0])
    assert len(seen_targets) >= 8  # a fresh random choice every time


def test_multi_target_examples_keep_the_most_recent_inputs():
    torch.manual_seed(1)
    examples = MultiTargetExamples(Histories.from_lists([list(range(10))], 10), target_fraction=0.5, max_history=3)
    for _ in range(10):
        batch = examples.__getitems__([0])
        [history], [targets] = batch["history"].tolist(), batch["targets"].tolist()
        rest = sorted(set(range(10)) - set(targets))
        assert len(targets) == 5 and history == rest[-3:]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_multi_target_fraction_out_of_range_is_an_error(fraction):
    with pytest.raises(ValueError, match="target_fraction must be in"):
        MultiTargetExamples(ROWS, fraction, None)
    with pytest.raises(ValueError, match="target_fraction must be in"):
        MovieWorldDataModule(target_fraction=fraction)


def test_multi_target_excludes_one_target_per_example_options():
    with pytest.raises(ValueError, match="cannot be combined with targets_per_user=2"):
        MovieWorldDataModule(target_fraction=0.2, targets_per_user=2)
    with pytest.raises(ValueError, match="causal=True"):
        MovieWorldDataModule(target_fraction=0.2, causal=True)


def _world(**kw):
    args = dict(num_movies=150, num_users=200, mean_watches=15, batch_size=64) | kw
    data = MovieWorldDataModule(**args)
    data.setup("fit")
    return data


def test_leave_last_out_batches_and_counts():
    data = _world()
    s = data.split
    assert data.num_items == 150 and data.item_counts.sum() == s.train.nnz
    for u in s.test_users[:20]:  # the test target is the last watch; its input is every earlier one
        full = data.interactions.to_histories().get(u)
        assert s.test_targets.get(u).tolist() == full[-1:].tolist()
        assert s.test_input.get(u).tolist() == full[:-1].tolist()
    batch = next(iter(data.test_dataloader()))
    assert set(batch) == {"history", "targets", "users"} and len(batch["history"]) == len(batch["targets"])
    assert batch["users"].tolist() == s.test_users[: len(batch["users"])].tolist()
    train = next(iter(data.train_dataloader()))
    assert len(train["history"]) == 64 and train["target"].shape == (64,)


def test_recent_items_add_the_latest_watches_as_user_features():
    data = _world(causal=True, recent_items=3)
    train = next(iter(data.train_dataloader()))
    test = next(iter(data.test_dataloader()))
    for batch in (train, test):
        recent, history = batch["user_features"].tolist(), batch["history"].tolist()
        assert recent == [h[-3:] for h in history]
    assert "user_features" not in next(iter(_world().train_dataloader()))
    # the size of the table those bags index, for a model that leaves num_user_features to the data
    assert data.num_user_features == data.num_items == 150 and _world().num_user_features == 0
    assert MovieWorldDataModule(recent_items=3).num_user_features is None  # not loaded yet
    with pytest.raises(ValueError, match="recent_items must be >= 0, got -1"):
        MovieWorldDataModule(recent_items=-1)


def test_held_out_users_are_unseen_in_training():
    data = _world(protocol="held_out_users", held_out_fraction=0.2)
    s = data.split
    assert s.test_users.size == 40 and s.val_users.size == 40
    assert np.all(s.train.lengths()[s.test_users] == 0) and np.all(s.train.lengths()[s.val_users] == 0)
    assert np.intersect1d(s.test_users, s.val_users).size == 0


def test_baselines_scored_on_the_same_split():
    metrics = _world().baseline_metrics(k=10)
    assert set(metrics) == {
        f"test/baseline_{m}/{k}@10" for m in ("popularity", "ease") for k in ("hr", "recall", "ndcg", "coverage")
    }
    assert metrics["test/baseline_ease/ndcg@10"] > metrics["test/baseline_popularity/ndcg@10"] > 0


def test_baseline_per_user_results_average_to_the_baseline_metrics():
    data = _world()
    metrics = data.baseline_metrics(k=10)
    users, per_user = data.baseline_per_user(k=10)
    assert np.array_equal(users, data.split.test_users) and set(per_user) == {"popularity", "ease"}
    for name, values in per_user.items():
        assert values["hr@10"].shape == values["ndcg@10"].shape == users.shape
        assert set(np.unique(values["hr@10"])) <= {0.0, 1.0}
        for metric in ("hr", "ndcg"):
            assert values[f"{metric}@10"].mean() == pytest.approx(metrics[f"test/baseline_{name}/{metric}@10"])


def test_movielens_module_reads_the_user_path(tmp_path):
    rows = [(u, i, 4, 100 * u + i) for u in range(1, 6) for i in range(1, 5)] + [(1, 1, 5, 999)]  # a re-watch
    (tmp_path / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    data = MovieLensDataModule(path=str(tmp_path))
    data.setup("fit")
    assert data.num_items == 4 and len(data.interactions) == 20  # the re-watch is deduplicated
    assert data.split.test_users.size == 5
    assert sorted(data.user_keys) == [1, 2, 3, 4, 5]  # per-user test results name the file's users


def _fit_and_test(task: RecommendationTask, data: MovieWorldDataModule, epochs: int) -> dict[str, float]:
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=data)
    return trainer.test(task, datamodule=data, verbose=False)[0]


def test_model_beats_popularity_on_a_small_world():
    pl.seed_everything(0)
    data = MovieWorldDataModule(num_movies=300, num_users=600, mean_watches=20, batch_size=128, causal=True)
    task = RecommendationTask(Recommender(300, embedding_dim=16, hidden_sizes=[32]), lr=0.02)
    result = _fit_and_test(task, data, epochs=4)
    assert result["test/ndcg@10"] > result["test/baseline_popularity/ndcg@10"]


def test_multi_target_training_beats_popularity_on_held_out_users():
    pl.seed_everything(0)
    data = MovieWorldDataModule(
        num_movies=300,
        num_users=2000,
        mean_watches=50,
        pool_factor=16,
        protocol="held_out_users",
        held_out_fraction=0.1,
        batch_size=64,
        target_fraction=0.2,
    )
    task = RecommendationTask(
        Recommender(300, embedding_dim=8, hidden_sizes=[]),
        loss="sampled_softmax",
        loss_config={"num_samples": 100},
        lr=0.05,
    )
    result = _fit_and_test(task, data, epochs=5)
    assert result["test/recall@10"] > 1.2 * result["test/baseline_popularity/recall@10"]


@pytest.mark.slow
def test_movie_world_recipe_through_the_cli(tmp_path):
    overrides = [
        "--trainer.max_epochs",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--data.init_args.num_movies",
        "300",
        "--data.init_args.num_users",
        "300",
        # copies the model in its own setup: the CLI must have sized it from the data before the trainer starts
        "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
    ]  # the model's sizes follow num_movies: the recipe leaves them to the data
    assert main(["fit", "--config", str(REPO / "recipes" / "movie_world.yaml"), *overrides]) == 0
    [path] = tmp_path.glob("**/test_metrics.json")
    metrics = json.loads(path.read_text())
    assert {"test/hr@10", "test/ndcg@10", "test/baseline_ease/hr@10"} <= set(metrics)
    recommender = PretrainedRecommender.from_pretrained(path.parent / "pretrained")
    assert recommender.model.num_items == 300 and recommender.model.embedding_dim == 4  # 300 ** 0.25, rounded
    title = [item.title for item in recommender.recommend([0, 1, 2], k=3)][0]
    assert title[-5:-1].isdigit() and title in recommender.item_titles  # generated titles end in "(1994)"


ML100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"


@pytest.mark.slow
@pytest.mark.skipif(not (ML100K / "u.data").exists(), reason=f"MovieLens 100K is not at {ML100K} (never shipped)")
def test_movielens_recipe_on_ml100k(tmp_path):
    overrides = [
        "--data.init_args.path",
        str(ML100K),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
    ]
    assert main(["fit", "--config", str(REPO / "recipes" / "movielens.yaml"), *overrides]) == 0
    [path] = tmp_path.glob("**/test_metrics.json")
    metrics = json.loads(path.read_text())
    # the target: the recipe as shipped (about a minute) beats EASE on HR@10 and NDCG@10 (measured 0.181 and
    # 0.091 against 0.148 and 0.072; random ranking of 1,682 movies gives HR@10 ≈ 0.006)
    assert metrics["test/baseline_ease/hr@10"] > 0.14  # EASE with λ = 100, as in benchmarks/baselines_ml100k.py
    assert metrics["test/hr@10"] > metrics["test/baseline_ease/hr@10"]
    assert metrics["test/ndcg@10"] > metrics["test/baseline_ease/ndcg@10"]
    # the run's pretrained folder answers in raw MovieLens movie IDs: Star Wars, Return of the Jedi, Toy Story
    recommender = PretrainedRecommender.from_pretrained(path.parent / "pretrained")
    assert recommender.recent_items == 2 and "| test/hr@10 |" in (path.parent / "pretrained" / "README.md").read_text()
    watched = [50, 181, 1]
    recommended = recommender.recommend(watched, k=10)
    assert len(recommended) == 10 and not {item.key for item in recommended} & set(watched)
    assert all(isinstance(item.key, int) and item.title.endswith(")") for item in recommended)  # "Title (1977)"
    assert recommender.recommend(["Star Wars (1977)", "181", 1], k=10) == recommended


def test_the_exported_movie_world_model_keeps_each_movies_watches_and_true_aspects(tmp_path):
    data = MovieWorldDataModule(num_movies=40, num_users=60, mean_watches=6, num_hidden_aspects=1)
    task = RecommendationTask(Recommender(None, embedding_dim=4, num_user_features=None), compare_baselines=False)
    task.bind_data(data)  # sets the data up; the export reads the catalogue from it
    folder = task.export_pretrained(tmp_path / "pretrained", catalogue=data)
    metadata = PretrainedRecommender.from_pretrained(folder).item_metadata
    assert list(metadata) == ["watches", "children_adult", "blockbuster_arthouse", "hidden_0"]
    assert metadata["watches"] == data.item_counts.tolist()
    aspects = np.array([metadata[name] for name in data.world.aspect_names]).T
    np.testing.assert_allclose(aspects, data.world.movie_aspects, atol=5e-5)  # kept to 4 decimals
