"""The two-tower cold-start task on a tiny movie world: it trains, writes the warm / cold / cold-user table, and
its exported folder ranks warm and cold movies together exactly as the test scored them, and takes new movies
from their content alone."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from jointembed.data.coldstart import MovieWorldColdStartDataModule
from jointembed.encoders.text import ScratchTextEncoder
from jointembed.errors import CheckpointError, UnknownItemError
from jointembed.models.pretrained_two_tower import PretrainedTwoTower
from jointembed.models.two_tower import TwoTowerRecommender
from jointembed.tasks.coldstart import ColdStartTask


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ColdStartTask, MovieWorldColdStartDataModule, Path]:
    L.seed_everything(0)
    data = MovieWorldColdStartDataModule(num_movies=300, num_users=500, num_hidden_aspects=0, causal=True,
                                         max_history=50, recent_items=2, batch_size=128)  # fmt: skip
    content = ScratchTextEncoder(num_buckets=512, min_ngram=0, embedding_dim=16, architecture="bag", output_dim=16)
    model = TwoTowerRecommender(content, id_dim=8, hidden_sizes=[32], recent_items=2, history_content=True)
    task = ColdStartTask(model, lr=0.01, num_negatives=64, taste_weight=0.5)
    task.bind_data(data)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data)
    folder = task.export_pretrained(tmp_path_factory.mktemp("model") / "pretrained")
    return task, data, folder


def test_the_table_has_every_segment_and_baseline(trained) -> None:
    task, data, _ = trained
    extra = task.extra_test_metrics()
    keys = ["warm/two_tower", "warm/ease", "warm/popularity", "cold/two_tower", "cold/random",
            "cold/popularity_oracle", "cold/content_profile", "cold/popularity_from_content", "cold_in_all/two_tower",
            "cold_users/two_tower", "cold_users/ease"]  # fmt: skip
    for key in keys:
        assert f"test_coldstart/{key}/recall@10" in extra, key
    assert "cold_users" in extra["coldstart_table"]
    random_cold = extra["test_coldstart/cold/random/recall@10"]
    assert 0 < random_cold < 0.3  # 60 cold movies, 10 slots: about 1/6


def test_a_checkpoint_loads_without_the_recipe(trained, tmp_path: Path) -> None:
    task, _, _ = trained
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = ColdStartTask.load_from_checkpoint(tmp_path / "last.ckpt")
    assert loaded.model.num_items == task.model.num_items and loaded.lr == task.lr
    for key, value in task.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    (tmp_path / "bare.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="bare.ckpt"):
        ColdStartTask.load_from_checkpoint(tmp_path / "bare.ckpt")


def test_the_folder_ranks_warm_and_cold_movies_as_the_test_scored_them(trained) -> None:
    task, data, folder = trained
    served = PretrainedTwoTower.from_pretrained(folder)
    assert served.warm.sum() == task.warm.sum() and len(served.item_keys) == 300
    split = data.cold
    user = int(split.warm.test_users[0])
    history = split.warm.test_input.get(user).tolist()
    got = served.recommend(history, k=15)
    scores = task.scorer().score(split.warm.test_input, np.array([user]))[0]
    scores[history] = float("-inf")
    expected = torch.topk(scores, 15).indices.tolist()
    assert [s.key for s in got] == expected
    assert np.allclose([s.score for s in got], scores[expected].numpy(), atol=1e-4)
    everything = served.recommend(history, k=300 - len(set(history)))
    cold = {int(i) for i in split.cold_items}
    assert cold & {s.key for s in everything}  # cold movies compete in the same ranking


def test_new_movies_come_from_content_alone(trained) -> None:
    _, data, folder = trained
    served = PretrainedTwoTower.from_pretrained(folder)
    text = data.item_texts[int(data.cold.cold_items[0])]
    served.add_items(["new-1"], [text], ["A New Movie"])
    assert served.item_id("A New Movie") == 300 and not bool(served.warm[300])
    cold = int(data.cold.cold_items[0])
    assert torch.allclose(served.vectors[300], served.vectors[cold], atol=1e-5)  # same content, same place
    # Several at once (embedded longest first) land where each alone does, in the order given.
    texts = [data.item_texts[int(i)] for i in data.cold.cold_items[:5]][::-1] + ["a short one"]
    served.add_items([f"batch-{i}" for i in range(6)], texts)
    alone = torch.cat([served.model.content_items([t])[0] for t in texts])
    torch.testing.assert_close(served.vectors[301:307], alone, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="is empty: a cold movie is placed by its content alone"):
        served.add_items(["new-2"], ["  "])
    with pytest.raises(ValueError, match="already in the catalogue"):
        served.add_items(["new-1"], ["x"])
    with pytest.raises(UnknownItemError, match="history 0: movie 'nope' is neither a key nor a title"):
        served.recommend(["nope"], k=3)
    warm_movie = int(torch.nonzero(served.warm)[0])
    with pytest.warns(UserWarning, match="1 movie\\(s\\) the model never saw are left out"):
        served.recommend([warm_movie, cold], k=3)
    with pytest.raises(ValueError, match="has no movie the model saw in training"):
        served.recommend([cold], k=3)


def test_the_collaborative_filtering_recommender_gets_the_same_table_without_cold_movies() -> None:
    from jointembed.models.recommender import Recommender
    from jointembed.tasks.recommendation import RecommendationTask

    L.seed_everything(0)
    data = MovieWorldColdStartDataModule(num_movies=200, num_users=300, causal=True, max_history=50, batch_size=128)
    task = RecommendationTask(Recommender(None, embedding_dim=8, hidden_sizes=[16]), lr=0.01)
    task.bind_data(data)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data)
    extra = task.extra_test_metrics()
    assert "test_coldstart/warm/cf_recommender/recall@10" in extra
    assert "test_coldstart/cold_users/cf_recommender/recall@10" in extra
    assert not any("cold/cf_recommender" in key or "cold_in_all/cf" in key for key in extra)
    assert extra["test_coldstart/cold/random/recall@10"] > 0


def test_recent_watches_must_agree_between_model_and_data() -> None:
    data = MovieWorldColdStartDataModule(num_movies=100, num_users=100, recent_items=2)
    content = ScratchTextEncoder(**ScratchTextEncoder.tiny_config())
    task = ColdStartTask(TwoTowerRecommender(content, recent_items=0))
    with pytest.raises(ValueError, match="embeds the 0 latest watches .* but the data adds 2"):
        task.bind_data(data)


ML100K = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens" / "ml-100k"


@pytest.mark.slow
@pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason=f"{ML100K} is not present (MovieLens development copy)")
def test_movielens_coldstart_recipe_places_unwatched_movies_from_content(tmp_path: Path) -> None:
    """Five epochs of the recipe (about 35 s): cold movies, never watched in training, are ranked well above
    chance from their title, genres and year, and warm ranking stays well above popularity."""
    import json

    from jointembed.cli import main

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "movielens_coldstart.yaml"
    args = ["fit", "--config", str(recipe), "--data.init_args.path", str(ML100K), "--trainer.max_epochs", "5",
            "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    [metrics_file] = tmp_path.glob("*/version_0/test_metrics.json")
    m = json.loads(metrics_file.read_text())
    key = "test_coldstart/{}/{}/recall@10".format
    assert m[key("cold", "two_tower")] > 2 * m[key("cold", "random")]  # measured 0.163 vs 0.059
    assert m[key("warm", "two_tower")] > m[key("warm", "popularity")] + 0.05  # measured 0.224 vs 0.104
    served = PretrainedTwoTower.from_pretrained(metrics_file.parent / "pretrained")
    assert len(served.recommend([50, 181, 1], k=10)) == 10  # Star Wars, Return of the Jedi, Toy Story


def test_a_movie_without_content_or_watches_is_reported_and_never_recommended(trained, tmp_path: Path) -> None:
    import json
    import shutil

    _, data, folder = trained
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    cold = int(data.cold.cold_items[0])
    config["item_texts"][cold] = ""
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="1 movie\\(s\\) were never watched in training and have no content"):
        served = PretrainedTwoTower.from_pretrained(copy)
    assert torch.count_nonzero(served.vectors[cold]) == 0
    assert cold not in served.catalogue_index()


def test_a_history_of_the_wrong_type_is_named_not_read_letter_by_letter() -> None:
    content = ScratchTextEncoder(num_buckets=64, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=8)
    model = TwoTowerRecommender(content, num_items=3, id_dim=4, hidden_sizes=[8])
    served = PretrainedTwoTower(model, [1, 2, 3], ["space war", "space monster", "bank heist"], [True] * 3,
                                ["Star Wars", "Alien", "Heat"])  # fmt: skip
    with pytest.raises(TypeError, match=r"got the string 'Star Wars': pass \['Star Wars'\] for a history of that one"):
        served.recommend("Star Wars", k=1)
    with pytest.raises(TypeError, match=r"history_keys must be a list of item keys or titles .* got NoneType None"):
        served.recommend(None, k=1)
    with pytest.raises(TypeError, match=r"histories must be a list of histories .* got one history: pass \[history\]"):
        served.user_vectors(["Star Wars"])
    with pytest.raises(ValueError, match=r"^k must be >= 1, got 0$"):
        served.recommend(["Star Wars"], k=0)
    assert len(served.recommend(["Star Wars"], k=2)) == 2


def test_seen_candidates_marks_a_users_own_movies_but_never_its_target() -> None:
    from jointembed.sparse import SparseBatch
    from jointembed.tasks.coldstart import seen_candidates

    history = SparseBatch.from_lists([[3, 5], [7], [5, 9]])
    candidates = torch.tensor([1, 3, 5, 7, 8])
    column = torch.tensor([4, 0, 2])  # targets 8, 1 and 5 (the third user's target is in its history)
    expected = torch.tensor([[False, True, True, False, False],
                             [False, False, False, True, False],
                             [False, False, False, False, False]])  # fmt: skip
    assert torch.equal(seen_candidates(history, candidates, column), expected)
