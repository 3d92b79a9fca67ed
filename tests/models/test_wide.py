"""The two-tower's wide part: raw-words affinity and popularity, exact on a hand-worked example, trained with the
deep towers, saved with the folder, and on a small movie world at least as good on cold movies as the words."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from jointembed.encoders.text import ScratchTextEncoder
from jointembed.models.pretrained_two_tower import PretrainedTwoTower
from jointembed.models.two_tower import TwoTowerRecommender
from jointembed.models.wide import WideContent, words_of
from jointembed.sparse import SparseBatch

TEXTS = ["Space War. genres: sci-fi", "Space Monster. genres: sci-fi, horror", "Bank Heist. genres: crime"]


def tiny_model(wide: bool = True, num_items: int = 3) -> TwoTowerRecommender:
    torch.manual_seed(0)
    content = ScratchTextEncoder(num_buckets=64, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=8)
    return TwoTowerRecommender(content, num_items=num_items, id_dim=4, hidden_sizes=[8], wide=wide)


def test_words_are_the_baselines_tokens() -> None:
    assert words_of("Don't Look Now. genres: sci-fi, sci-fi") == ["don't", "look", "now", "genres", "sci", "fi"]


def test_affinity_and_popularity_equal_a_hand_computation() -> None:
    wide = WideContent(idf=True, popularity_min_count=1)
    wide.fit(TEXTS)
    vocabulary = wide.require_fitted()
    assert vocabulary == sorted({w for t in TEXTS for w in words_of(t)})
    # smoothed IDF over 3 texts: "genres" in all 3, "space"/"sci"/"fi" in 2, the rest in 1
    idf = {w: math.log(4 / (1 + sum(w in words_of(t) for t in TEXTS))) + 1 for w in vocabulary}

    def bag(text: str) -> dict[str, float]:
        raw = {w: idf[w] for w in words_of(text)}
        norm = math.sqrt(sum(v * v for v in raw.values()))
        return {w: v / norm for w, v in raw.items()}

    bags = [bag(t) for t in TEXTS]
    center = {w: sum(b.get(w, 0.0) for b in bags) / 3 for w in vocabulary}
    wide.cache_items(TEXTS)
    history = SparseBatch.from_lists([[0], [0, 2]])
    profiles = wide.profiles(history)
    assert profiles.shape == (2, len(vocabulary))
    got = wide.affinity(profiles, wide.item_bags(torch.tensor([1, 2])))
    assert got.shape == (2, 2)

    def dot(a: dict[str, float], b: dict[str, float]) -> float:
        return sum(v * b.get(w, 0.0) for w, v in a.items())

    # the profile is centred on the fitted movies' mean bag
    expected = [[dot(bags[0], bags[1]) - dot(center, bags[1]), dot(bags[0], bags[2]) - dot(center, bags[2])],
                [(dot(bags[0], bags[1]) + dot(bags[2], bags[1])) / 2 - dot(center, bags[1]),
                 (dot(bags[0], bags[2]) + dot(bags[2], bags[2])) / 2 - dot(center, bags[2])]]  # fmt: skip
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        wide.popularity.copy_(torch.arange(len(vocabulary), dtype=torch.float32))
    popularity = wide.popularity_of(wide.bags(["a Space horror", "nothing known"]))
    horror = bag("space horror")
    expected_pop = sum(v * vocabulary.index(w) for w, v in horror.items())
    torch.testing.assert_close(popularity, torch.tensor([expected_pop, 0.0]), rtol=1e-5, atol=1e-6)
    assert torch.allclose(wide.scale(torch.tensor([1, 5])), torch.ones(2))  # the gate starts neutral
    # by default a word of one text alone ("horror") carries no popularity
    strict = WideContent(idf=True)
    strict.fit(TEXTS)
    with torch.no_grad():
        strict.popularity.copy_(torch.arange(len(vocabulary), dtype=torch.float32))
    expected_strict = horror["space"] * vocabulary.index("space")
    torch.testing.assert_close(strict.popularity_of(strict.bags(["a Space horror"])), torch.tensor([expected_strict]))


def test_the_model_scores_as_its_search_rows_and_gradients_reach_the_wide_weights() -> None:
    model = tiny_model()
    model.fit_wide(TEXTS, torch.tensor([True, True, False]))
    assert model.config["wide_vocabulary"] == sorted({w for t in TEXTS[:2] for w in words_of(t)})
    history = SparseBatch.from_lists([[0], [0, 1]])
    ids, keep = torch.tensor([0, 1, 2]), torch.tensor([True, False, False])
    users = model.user_vectors(history)
    vectors, biases = model.items(ids, TEXTS, keep)
    scores = model.scores(users, history, vectors, biases, ids, keep)
    assert scores.shape == (2, 3)
    rows = model.item_rows(vectors.detach(), biases.detach(), TEXTS, keep, ids)
    queries = model.user_queries(history)
    vocabulary_size = len(model.config["wide_vocabulary"])
    assert rows.shape == (3, 8 + 1 + vocabulary_size + 1) and queries.shape == (2, 8 + 1 + vocabulary_size + 1)
    torch.testing.assert_close(queries @ rows.T, scores.detach(), rtol=1e-5, atol=1e-5)
    scores.logsumexp(1).sub(scores[:, 1]).sum().backward()
    for name in ("affinity_weight", "gate", "popularity"):
        grad = getattr(model.wide, name).grad
        assert grad is not None and torch.count_nonzero(grad) > 0, name


def test_without_wide_the_rows_are_vector_and_bias() -> None:
    model = tiny_model(wide=False)
    vectors, biases = model.catalogue(TEXTS, torch.ones(3, dtype=torch.bool))
    assert model.item_rows(vectors, biases, TEXTS, torch.ones(3, dtype=torch.bool)).shape == (3, 9)
    assert "wide" not in dict(model.named_children())  # nothing new in an old model's state


def test_the_folder_round_trip_keeps_scores_and_new_movies_get_their_words(tmp_path: Path) -> None:
    model = tiny_model()
    warm = [True, True, False]
    model.fit_wide(TEXTS, torch.tensor(warm))
    with torch.no_grad():
        model.wide.popularity.normal_()
        model.wide.affinity_weight.copy_(torch.tensor([3.0, 0.5]))
    served = PretrainedTwoTower(model, [1, 2, 3], TEXTS, warm, ["Space War", "Space Monster", "Bank Heist"])
    folder = model.save_pretrained(tmp_path / "m", {"item_keys": [1, 2, 3], "item_texts": TEXTS, "warm": warm,
                                                    "item_titles": served.item_titles})  # fmt: skip
    loaded = PretrainedTwoTower.from_pretrained(folder)
    assert loaded.model.wide.require_fitted() == model.wide.require_fitted()
    for each in (served, loaded):
        each.add_items(["new"], ["Space Opera. genres: sci-fi"], ["Space Opera"])
    before, after = served.recommend([[1], [1, 2]], k=3), loaded.recommend([[1], [1, 2]], k=3)
    assert [[(s.key, round(s.score, 4)) for s in row] for row in before] == [
        [(s.key, round(s.score, 4)) for s in row] for row in after
    ]
    # the new movie's wide row is its bag of words weighted as a movie without ID
    new_bag = torch.from_numpy(loaded.model.wide.bags(["Space Opera. genres: sci-fi"]).toarray()[0])
    torch.testing.assert_close(loaded.rows[3, 9:-1], 3.0 * new_bag)


@pytest.mark.slow
def test_on_a_small_movie_world_cold_ranking_is_at_least_the_words() -> None:
    """Six epochs on a 300-movie world (about 15 s): with the wide part and cold movies left to it
    (``cold_deep=0``), cold movies rank at least as well as the content-profile baseline's bag of words (measured
    0.375 vs 0.312 ± 0.014; with the deep part kept for them, 0.299; without the wide part, 3 epochs, 0.295)."""
    from jointembed.data.coldstart import MovieWorldColdStartDataModule
    from jointembed.tasks.coldstart import ColdStartTask

    L.seed_everything(0)
    torch.set_num_threads(1)
    data = MovieWorldColdStartDataModule(num_movies=300, num_users=600, num_hidden_aspects=0, causal=True,
                                         max_history=50, recent_items=2, batch_size=128)  # fmt: skip
    content = ScratchTextEncoder(num_buckets=512, min_ngram=0, embedding_dim=16, architecture="bag", output_dim=16)
    model = TwoTowerRecommender(content, id_dim=8, hidden_sizes=[32], recent_items=2, wide=True, cold_deep=0.0)
    task = ColdStartTask(model, lr=0.01, num_negatives=64, exclude_seen=True)
    trainer = L.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data)
    m = task.extra_test_metrics()
    key = "test_coldstart/{}/{}/recall@10".format
    assert m[key("cold", "two_tower")] >= m[key("cold", "content_profile")]
    assert m[key("cold", "two_tower")] > 2 * m[key("cold", "random")]
    assert np.isfinite(m[key("cold_users", "two_tower")])


def test_cold_deep_zero_leaves_movies_without_id_to_the_words() -> None:
    model = tiny_model()
    model = TwoTowerRecommender(model.content, num_items=3, id_dim=4, hidden_sizes=[8], wide=True, cold_deep=0.0)
    model.fit_wide(TEXTS, torch.tensor([True, True, False]))
    ids, keep = torch.tensor([0, 1, 2]), torch.tensor([True, False, False])
    vectors, biases = model.items(ids, TEXTS, keep)
    assert torch.count_nonzero(vectors[1:]) == 0 and torch.count_nonzero(vectors[0]) > 0
    torch.testing.assert_close(biases[1:], model.wide.popularity_of(model.wide.bags(TEXTS[1:])))
    new_vectors, new_biases = model.content_items(["Space Opera. genres: sci-fi"])
    assert torch.count_nonzero(new_vectors) == 0
    with pytest.raises(ValueError, match="cold_deep=0.5 leaves cold movies to the wide part: set wide=True"):
        TwoTowerRecommender(model.content, cold_deep=0.5)


def test_a_calibrated_map_places_movies_without_id_in_evaluation_only() -> None:
    model = TwoTowerRecommender(tiny_model().content, num_items=3, id_dim=4, hidden_sizes=[8], wide=True, cold_deep=0.0)
    model.fit_wide(TEXTS, torch.tensor([True, True, False]), torch.tensor([1.0, 4.0, 0.0]))
    wide = model.wide
    assert wide.prior.any() and not wide.calibrated
    with torch.no_grad():
        wide.popularity.normal_()
        wide.prior.copy_(torch.linspace(-1, 1, len(wide.prior)))
        wide.prior_intercept.fill_(0.3)
    ids, keep = torch.tensor([0, 1, 2]), torch.tensor([True, False, False])
    trained = wide.popularity_of(wide.bags(TEXTS))
    model.eval()
    torch.testing.assert_close(model.items(ids, TEXTS, keep)[1][1:], trained[1:])  # not calibrated: as trained
    # warm log counts 0 and log 4 with biases 1 and 3: m = 2 / log 4, c = 1, μ = log 4 / 2
    wide.calibrate(torch.tensor([0.0, math.log(4)]), torch.tensor([1.0, 3.0]), beta=0.5)
    m, mu = 2 / math.log(4), math.log(4) / 2
    torch.testing.assert_close(wide.cold_map, torch.tensor([m, 1.0, mu]))
    prior = wide.bags(TEXTS).toarray() @ wide.prior.numpy() + 0.3
    expected = torch.tensor(m * (mu + 0.5 * (prior - mu)) + 1.0, dtype=torch.float32)
    _, biases = model.items(ids, TEXTS, keep)
    torch.testing.assert_close(biases[1:], expected[1:])
    torch.testing.assert_close(biases[0], trained[0] + model.id_bias.weight[0, 0] + model.content_bias(
        model.content_vectors(TEXTS[:1], ids[:1])).squeeze())  # fmt: skip
    torch.testing.assert_close(model.content_items(TEXTS[1:])[1], expected[1:])  # a new movie alike
    model.train()  # training learns the words' popularity as it is
    torch.testing.assert_close(model.items(ids, TEXTS, keep)[1][1:], trained[1:])
    # a folder saved before the map existed loads uncalibrated
    old = {
        k: v for k, v in model.state_dict().items() if k.split(".")[-1] not in {"cold_map", "prior", "cold_popularity"}
    }
    fresh = TwoTowerRecommender(model.content, num_items=3, id_dim=4, hidden_sizes=[8], wide=True, cold_deep=0.0,
                                wide_vocabulary=wide.require_fitted())  # fmt: skip
    fresh.load_state_dict(old)
    assert not fresh.wide.calibrated and float(fresh.wide.cold_popularity) == 1.0
    with pytest.raises(ValueError, match="two distinct counts"):
        wide.calibrate(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]))


def test_calibration_keeps_the_grid_value_with_the_best_validation_cold_recall() -> None:
    """The grid is scored through rows linear in β; the chosen β, scored the ordinary way, gives its recall."""
    from jointembed.data.coldstart import MovieWorldColdStartDataModule
    from jointembed.tasks.coldstart import COLD_POPULARITY_GRID, ColdStartTask

    L.seed_everything(0)
    data = MovieWorldColdStartDataModule(num_movies=200, num_users=300, num_hidden_aspects=0, causal=True,
                                         max_history=30, batch_size=128)  # fmt: skip
    content = ScratchTextEncoder(num_buckets=256, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=8)
    model = TwoTowerRecommender(content, id_dim=8, hidden_sizes=[16], wide=True, cold_deep=0.0)
    task = ColdStartTask(model, lr=0.01, num_negatives=32, exclude_seen=True)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, datamodule=data)
    recall = task.calibrate_cold()
    assert list(recall) == list(COLD_POPULARITY_GRID)
    assert model.wide.calibrated
    chosen = float(model.wide.cold_popularity)
    assert recall[chosen] == max(recall.values())
    assert len(set(recall.values())) > 1  # β moves the ranking of cold movies
    again = data.coldstart_metrics({"m": task.scorer()}, 10, "val", False, segments=("cold",))
    assert again["val_coldstart/cold/m/recall@10"] == pytest.approx(recall[chosen], abs=1e-9)
    assert list(trainer.callback_metrics) and "val/cold_popularity" in trainer.callback_metrics
    with pytest.raises(ValueError, match=r"no segment \['cold_in_all'\] at stage 'val'"):
        data.coldstart_metrics({"m": task.scorer()}, 10, "val", False, segments=("cold_in_all",))


def test_a_short_history_blends_with_the_movies_log_counts_in_evaluation_only() -> None:
    model = tiny_model()
    model.fit_wide(TEXTS, torch.tensor([True, True, False]), torch.tensor([3.0, 8.0, 0.0]))
    model.wide.item_log_counts.copy_(torch.log(torch.tensor([3.0, 8.0, 1.0])))
    history = SparseBatch.from_lists([[0], [0, 1]])
    ids, keep = torch.tensor([0, 1, 2]), torch.tensor([True, True, False])
    model.eval()
    vectors, biases = model.items(ids, TEXTS, keep)
    rows = model.item_rows(vectors, biases, TEXTS, keep, ids)
    before = model.user_queries(history) @ rows.T
    bias_only = biases.unsqueeze(0)
    model.wide.short_map.copy_(torch.tensor([1.0, 0.25, 2.0]))  # histories of one watch: γ = 1/4, λ = 2
    after = model.user_queries(history) @ model.item_rows(vectors, biases, TEXTS, keep, ids).T
    prior = model.wide.bags(TEXTS).toarray()[2] @ model.wide.prior.numpy() + float(model.wide.prior_intercept)
    log_counts = torch.tensor([math.log(3.0), math.log(8.0), float(prior)])  # the cold movie: its prediction
    expected = 0.25 * (before[0] - bias_only[0]) + bias_only[0] + 2.0 * log_counts
    torch.testing.assert_close(after[0], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after[1], before[1])  # two watches: not short
    model.train()
    assert torch.equal(model.wide.scale(torch.tensor([1])), model.wide.scale(torch.tensor([1])))
    assert not model.wide.short_popularity(torch.tensor([1])).any()  # training: no blend
    with pytest.raises(ValueError, match="need their catalogue IDs"):
        model.item_rows(vectors, biases, TEXTS, keep)


def test_short_history_calibration_keeps_the_best_validation_blend() -> None:
    from jointembed.data.coldstart import MovieWorldColdStartDataModule
    from jointembed.tasks.coldstart import SHORT_HISTORY_GRID, ColdStartTask

    L.seed_everything(0)
    data = MovieWorldColdStartDataModule(num_movies=200, num_users=300, num_hidden_aspects=0, causal=True,
                                         max_history=30, batch_size=128)  # fmt: skip
    content = ScratchTextEncoder(num_buckets=256, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=8)
    task = ColdStartTask(TwoTowerRecommender(content, id_dim=8, hidden_sizes=[16], wide=True, cold_deep=0.0),
                         lr=0.01, num_negatives=32, exclude_seen=True)  # fmt: skip
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, datamodule=data)
    counts = torch.as_tensor(np.asarray(data.item_counts), dtype=torch.float32)
    torch.testing.assert_close(task.model.wide.item_log_counts, torch.log(counts.clamp_min(1.0)))
    recall = task.calibrate_short_histories()
    assert list(recall) == list(SHORT_HISTORY_GRID) and len(set(recall.values())) > 1
    longest, gamma, weight = task.model.wide.short_map.tolist()
    assert longest == 5 and recall[gamma, weight] == max(recall.values())
    again = data.coldstart_metrics({"m": task.scorer()}, 10, "val", False, segments=("cold_users",))
    assert again["val_coldstart/cold_users/m/recall@10"] == pytest.approx(recall[gamma, weight], abs=1e-9)
    assert "val/cold_user_recall@10" in trainer.callback_metrics
