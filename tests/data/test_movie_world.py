import time

import numpy as np
import pytest

from jointembed.data.movie_world import ASPECT_NAMES, MOVIE_WORLD_PRESETS, generate_movie_world


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
    assert x.item_titles[123] == "movie 123"
    h = x.to_histories()
    assert h.lengths().min() >= 3 and h.lengths().max() <= 50  # min_watches, num_movies // 4
    for u in range(0, 300, 37):  # distinct movies; timestamps are the watch order
        assert len(set(h.get(u).tolist())) == h.get(u).size
        assert h.timestamps[h.indptr[u] : h.indptr[u + 1]].tolist() == list(range(h.get(u).size))


def test_mid_size_long_tail_and_planted_structure():
    start = time.perf_counter()
    world = generate_movie_world(num_movies=20_000, num_users=10_000, mean_watches=30, seed=0)
    seconds = time.perf_counter() - start
    assert seconds < 10, f"generation took {seconds:.1f} s"
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


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_watches <= num_movies"):
        generate_movie_world(num_movies=10, max_watches=11)
    with pytest.raises(ValueError, match="temperature > 0"):
        generate_movie_world(temperature=0)


@pytest.mark.slow
def test_issue_size_fits_memory_and_time():
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    world = generate_movie_world(**MOVIE_WORLD_PRESETS["issue"])
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    x = world.interactions
    assert (x.num_items, x.num_users) == (1_000_000, 500_000)
    assert 20_000_000 < len(x) < 30_000_000
    assert peak < 2 * 2**30, f"peak {peak / 2**30:.2f} GiB"
    assert seconds < 300, f"took {seconds:.0f} s"
