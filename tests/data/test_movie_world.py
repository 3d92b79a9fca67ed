import numpy as np
import pytest
import torch

from jointembed.data.interactions import held_out_users
from jointembed.data.movie_world import ASPECT_NAMES, MOVIE_WORLD_PRESETS, generate_movie_world
from jointembed.metrics.ranking import recall_at_k, topk_from_scorer


def _mean_watched_aspect(world, aspect: int) -> np.ndarray:
    h = world.interactions.to_histories()
    sums = np.bincount(h.row_ids(), weights=world.movie_aspects[h.items, aspect], minlength=len(h))
    return sums / np.maximum(h.lengths(), 1)


def test_deterministic_by_seed():
    a = generate_movie_world(seed=3)
    b = generate_movie_world(seed=3)
    c = generate_movie_world(seed=4)
    for name in ("users", "items", "timestamps"):
        assert np.array_equal(getattr(a.interactions, name), getattr(b.interactions, name))
    assert np.array_equal(a.movie_aspects, b.movie_aspects)
    assert not np.array_equal(a.interactions.items, c.interactions.items)


def test_shapes_and_contents():
    world = generate_movie_world(**MOVIE_WORLD_PRESETS["tiny"], num_hidden_aspects=3)
    x = world.interactions
    assert (x.num_items, x.num_users) == (200, 300)
    assert world.movie_aspects.shape == (200, 5) and world.movie_aspects.dtype == np.float32
    assert world.user_tastes.shape == (300, 5) and world.user_tastes.dtype == np.float32
    assert world.popularity.shape == (200,) and np.isclose(world.popularity.sum(), 1.0)
    assert world.aspect_names == (*ASPECT_NAMES, "hidden_0", "hidden_1", "hidden_2")
    assert x.item_titles[123].endswith(")") and len(set(x.item_titles)) == 200  # generated, unique
    assert x.item_genres is not None and world.content.years.shape == (200,)
    h = x.to_histories()
    assert h.lengths().min() >= 3 and h.lengths().max() <= 50  # min_watches, num_movies // 4
    for u in range(0, 300, 37):  # distinct movies; timestamps are the watch order
        assert len(set(h.get(u).tolist())) == h.get(u).size
        assert h.timestamps[h.indptr[u] : h.indptr[u + 1]].tolist() == list(range(h.get(u).size))


def test_mid_size_long_tail_and_planted_structure():
    world = generate_movie_world(num_movies=20_000, num_users=10_000, mean_watches=30, seed=0)
    counts = np.sort(world.interactions.item_counts())[::-1]
    assert counts[:200].sum() / counts.sum() > 0.25  # the top 1% of movies get over a quarter of the watches
    for aspect in (0, 1):  # children-leaning users watch children-leaning movies, and so on
        corr = np.corrcoef(world.user_tastes[:, aspect], _mean_watched_aspect(world, aspect))[0, 1]
        assert corr > 0.5
    # blockbusters (negative aspect 1) are the popular ones
    assert np.corrcoef(world.movie_aspects[:, 1], np.log(world.popularity))[0, 1] < -0.3


def test_temperature_controls_taste_strength():
    def corr(temperature: float) -> float:
        world = generate_movie_world(num_movies=2_000, num_users=1_000, temperature=temperature, seed=1)
        return np.corrcoef(world.user_tastes[:, 0], _mean_watched_aspect(world, 0))[0, 1]

    assert corr(0.5) > corr(1.0) > corr(100.0)
    assert abs(corr(100.0)) < 0.2


def _true_score_vs_popularity_recall(pool_factor: int) -> tuple[float, float]:
    """Recall@10 on random held-out watches of ranking by the true ``log popularity + taste · aspects`` and by
    training counts: how much of the watches taste explains beyond popularity."""
    world = generate_movie_world(num_movies=2_000, num_users=2_000, mean_watches=30, pool_factor=pool_factor)
    split = held_out_users(world.interactions, 0.5, order="random", seed=0)
    counts = torch.from_numpy(np.bincount(split.train.items, minlength=2_000).astype(np.float32))
    aspects, tastes = torch.from_numpy(world.movie_aspects), torch.from_numpy(world.user_tastes)
    log_pop = torch.from_numpy(np.log(world.popularity).astype(np.float32))
    rankers = {"true": lambda u: log_pop + tastes[u] @ aspects.T, "popularity": lambda u: counts.repeat(len(u), 1)}
    targets = split.test_targets.select(split.test_users)
    return tuple(
        recall_at_k(topk_from_scorer(f, split.test_users, split.test_fold_in, 10), targets) for f in rankers.values()
    )


def test_taste_explains_watches_beyond_popularity_with_a_large_pool():
    true, popularity = _true_score_vs_popularity_recall(pool_factor=16)
    assert true > 1.2 * popularity
    # a pool of 2 candidates per watch leaves taste little to choose from: the watches follow popularity
    true, popularity = _true_score_vs_popularity_recall(pool_factor=2)
    assert true < popularity


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_watches <= num_movies"):
        generate_movie_world(num_movies=10, max_watches=11)
    with pytest.raises(ValueError, match="temperature > 0"):
        generate_movie_world(temperature=0)


@pytest.mark.slow
def test_issue_size_fits_memory():
    import tracemalloc

    tracemalloc.start()
    world = generate_movie_world(**MOVIE_WORLD_PRESETS["issue"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    x = world.interactions
    assert (x.num_items, x.num_users) == (1_000_000, 500_000)
    assert 20_000_000 < len(x) < 30_000_000
    assert peak < 2 * 2**30, f"peak {peak / 2**30:.2f} GiB"
