import numpy as np
import pytest
import torch

from jointembed.baselines import EASE, PopularityRecommender, RandomRecommender
from jointembed.data.interactions import Histories, leave_last_out
from jointembed.data.movie_world import generate_movie_world
from jointembed.metrics.ranking import evaluate_rankings


def test_ease_matches_direct_numpy():
    rows = [[0, 1], [1, 2, 3], [0, 2], [3], [0, 1, 2, 3], [1, 1]]  # the repeated 1 counts once
    train = Histories.from_lists(rows, num_items=4)
    x = np.zeros((6, 4))
    for u, items in enumerate(rows):
        x[u, items] = 1.0
    lam = 2.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(4))
    b = np.eye(4) - p @ np.diag(1.0 / np.diag(p))
    model = EASE(l2=lam).fit(train)
    torch.testing.assert_close(model.weights, torch.tensor(b, dtype=torch.float32), atol=1e-6, rtol=1e-5)
    assert torch.all(torch.diagonal(model.weights) == 0)
    scores = model.score(train, [1, 3])
    torch.testing.assert_close(scores, torch.tensor(x[[1, 3]] @ b, dtype=torch.float32), atol=1e-6, rtol=1e-5)


def test_ease_refuses_huge_catalogue():
    with pytest.raises(ValueError, match="embedding recommender"):
        EASE(max_items=100).fit(Histories.from_lists([[0]], num_items=101))


def test_popularity_scores_are_counts():
    train = Histories.from_lists([[0, 2], [2], [2, 1], [1]], num_items=4)
    model = PopularityRecommender().fit(train)
    assert model.score(train, [0, 1]).tolist() == [[1, 2, 3, 0]] * 2
    assert model.recommend(train, [0, 1], k=2).tolist() == [[1, 3], [1, 0]]  # seen items excluded


def test_baselines_beat_random_on_a_movie_world():
    world = generate_movie_world(num_movies=300, num_users=400, mean_watches=20, seed=0)
    train, test = leave_last_out(world.interactions)
    users = np.flatnonzero(test.lengths() > 0)
    results = {}
    for name, model in (("random", RandomRecommender()), ("pop", PopularityRecommender()), ("ease", EASE(50.0))):
        top = model.fit(train).recommend(train, users, k=10)
        results[name] = evaluate_rankings(top, test, world.interactions.num_items, users=users)["ndcg@10"]
    assert results["pop"] > 2 * results["random"]
    assert results["ease"] > results["pop"]


def test_content_profile_by_hand():
    from jointembed.baselines import ContentProfileRecommender

    texts = ["red apple", "green apple", "red car", "children's film"]
    model = ContentProfileRecommender(texts).fit(Histories.from_lists([[0, 1], [2]], 4))
    scores = model.score(Histories.from_lists([[0], [2, 3]], 4), [0, 1])
    # user 0 watched "red apple": profile = its bag minus the mean bag of items 0-2, item 0 scores 2·(√½·(√½ - √2/3))
    assert scores[0].tolist() == pytest.approx([1 / 3, 0.0, 0.0, 0.0], abs=1e-6)
    assert scores[1, 3] == pytest.approx(0.5, abs=1e-6)  # "children's" is one word, shared only with item 3
    with pytest.raises(ValueError, match="4 texts but the histories have 5 items"):
        model.fit(Histories.from_lists([[0]], 5))


def test_content_popularity_by_hand():
    from jointembed.baselines import ContentPopularityRecommender

    texts = ["alpha", "beta", "gamma", "alpha", "delta"]  # item 3 is cold and shares item 0's only word
    train = Histories.from_lists([[0, 0, 2], [0, 1, 2]], 5)  # watches: item 0 three times, 1 once, 2 twice
    model = ContentPopularityRecommender(texts, l2=1e-6).fit(train)
    scores = model.score(train, [0, 1])
    assert torch.equal(scores[0], scores[1])
    assert scores[0, :3].tolist() == pytest.approx(np.log1p([3, 1, 2]).tolist(), abs=1e-4)
    assert scores[0, 3] == scores[0, 0]
    assert scores[0, 4] == pytest.approx(np.log1p([3, 1, 2]).mean(), abs=1e-4)  # no known word: the intercept
    with pytest.raises(ValueError, match="at least two watched movies"):
        ContentPopularityRecommender(texts).fit(Histories.from_lists([[0, 0]], 5))
