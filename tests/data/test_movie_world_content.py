import hashlib

import numpy as np
import pytest

from jointembed.data.movie_world import generate_movie_world
from jointembed.data.movie_world_content import (
    GENRE_WORDS,
    NEUTRAL_GENRES,
    TITLE_MARKERS,
    generate_movie_content,
    genre_clarity,
)
from jointembed.metrics.probe import linear_probe_r2

TINY = {"num_movies": 200, "num_users": 300, "mean_watches": 20, "num_hidden_aspects": 3, "seed": 5}
# sha256 of users, items, timestamps, aspects, tastes and popularity of generate_movie_world(**TINY) as computed
# by the generator before it had content (commit abb5b98): content must not move any of them
TINY_WORLD_SHA256 = "01075adb5994fe679823ce53b617ec026175f6740549ed01d58791564aadbd0b"


def _world_digest(world) -> str:
    x = world.interactions
    digest = hashlib.sha256()
    for array in (x.users, x.items, x.timestamps, world.movie_aspects, world.user_tastes, world.popularity):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_content_leaves_the_world_as_it_was():
    assert _world_digest(generate_movie_world(**TINY)) == TINY_WORLD_SHA256
    for accuracy in (0.5, 1.0):  # the content knob changes the content only
        world = generate_movie_world(**TINY, genre_accuracy=accuracy)
        assert _world_digest(world) == TINY_WORLD_SHA256


def test_content_is_deterministic_and_seeded():
    a, b, c = generate_movie_world(**TINY), generate_movie_world(**TINY), generate_movie_world(**TINY | {"seed": 6})
    assert a.interactions.item_titles == b.interactions.item_titles
    assert a.interactions.item_genres == b.interactions.item_genres
    assert np.array_equal(a.content.years, b.content.years)
    assert a.interactions.item_titles != c.interactions.item_titles


def test_content_shapes_and_format():
    world = generate_movie_world(**TINY)
    content, x = world.content, world.interactions
    assert x.item_titles is content.titles and x.item_genres is content.genres
    assert len(set(content.titles)) == 200  # unique: usable as keys
    assert content.genre_matrix.shape == (200, len(content.genre_vocabulary)) and content.genre_matrix.dtype == bool
    named = {w for sides in GENRE_WORDS for side in sides for w in side}
    for title, genres, year, row in zip(
        content.titles, content.genres, content.years, content.genre_matrix, strict=True
    ):
        assert title.endswith(f" ({year})") and 1930 <= year <= 2024
        assert genres == tuple(sorted(genres)) and len(set(genres)) == len(genres)
        assert set(genres) == {w for w, on in zip(content.genre_vocabulary, row, strict=True) if on}
        assert 1 <= len(set(genres) & named) <= 4 and len(set(genres) - named) <= 1
        assert set(genres) <= named | set(NEUTRAL_GENRES)


def test_repeated_titles_get_a_sequel_number():
    aspects = np.random.default_rng(0).standard_normal((200_000, 2))
    titles = generate_movie_content(aspects, np.random.default_rng(0)).titles
    assert len(set(titles)) == len(titles)
    sequels = [t for t in titles if " 2 (" in t]
    assert sequels and sequels[0].replace(" 2 (", " (") in titles


def _content_r2(world, columns: slice, markers: bool = False) -> np.ndarray:
    features = world.content.genre_matrix.astype(np.float64)
    if markers:
        words = [w for sides in TITLE_MARKERS for side in sides for w in side]
        firsts = [title.split()[0] for title in world.interactions.item_titles]
        features = np.hstack([features, np.array([[f == w for w in words] for f in firsts], dtype=np.float64)])
    return linear_probe_r2(features, world.movie_aspects[:, columns])


def test_genre_words_carry_the_named_aspects_partly_and_the_hidden_ones_not():
    """Held-out R² of a ridge regression from the bag of genre words: 0.35 / 0.36 here (0.33-0.37 and 0.34-0.38
    over seeds 0-9 on 5,000 movies), 0.37 / 0.37 with the title's marker words; about 0 for hidden aspects."""
    world = generate_movie_world(num_movies=5_000, num_users=50, num_hidden_aspects=2, seed=0)
    genres = _content_r2(world, slice(0, 2))
    assert genres.min() > 0.28 and genres.max() < 0.5, genres  # informative, not a giveaway
    assert (_content_r2(world, slice(0, 2), markers=True) > genres).all()
    assert np.abs(_content_r2(world, slice(2, 4), markers=True)).max() < 0.05
    year_r2 = np.corrcoef(world.content.years, world.movie_aspects[:, 2])[0, 1] ** 2  # hidden_0, weakly
    assert 0.08 < year_r2 < 0.25
    # a genre word is on its aspect's side about 3 times in 4
    vocabulary, matrix = world.content.genre_vocabulary, world.content.genre_matrix
    for aspect, (negative, positive) in enumerate(GENRE_WORDS):
        n = matrix[:, [vocabulary.index(w) for w in negative]].sum(1)
        p = matrix[:, [vocabulary.index(w) for w in positive]].sum(1)
        matching = np.where(world.movie_aspects[:, aspect] > 0, p, n).sum() / (n + p).sum()
        assert 0.7 < matching < 0.8, (aspect, matching)


def test_genre_accuracy_sets_how_much_content_says():
    worlds = {a: generate_movie_world(num_movies=5_000, num_users=50, genre_accuracy=a) for a in (0.5, 0.75, 0.9)}
    r2 = {a: _content_r2(w, slice(0, 2)).mean() for a, w in worlds.items()}
    assert abs(r2[0.5]) < 0.02 and r2[0.5] < r2[0.75] < r2[0.9]


def test_genre_clarity():
    assert genre_clarity(0.5) == pytest.approx(0.0, abs=1e-9) and genre_clarity(1.0) == float("inf")
    clarity, a = genre_clarity(0.75), np.abs(np.random.default_rng(0).standard_normal(1_000_000))
    assert np.mean(1 / (1 + np.exp(-clarity * a))) == pytest.approx(0.75, abs=0.002)  # the mean accuracy asked for
    for bad in (0.4, 1.1):
        with pytest.raises(ValueError, match="genre_accuracy must be in"):
            generate_movie_world(genre_accuracy=bad)
