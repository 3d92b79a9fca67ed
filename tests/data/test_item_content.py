import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from jointembed.data.interactions import Interactions
from jointembed.data.item_content import empty_content, item_content_texts, parse_title
from jointembed.data.movie_world import generate_movie_world
from jointembed.data.movielens import read_movielens
from jointembed.vocab import Vocabulary

# raw key -> (title, genres, expected text)
ITEMS = {
    1: ("Toy Story (1995)", ("Animation", "Children's", "Comedy"),
        "Toy Story. genres: animation, children's, comedy. year: 1995"),
    2: ("American President, The (1995)", ("Comedy", "Drama"),
        "The American President. genres: comedy, drama. year: 1995"),
    3: ("Double vie de Véronique, La (Double Life of Veronique, The) (1991)", ("Drama",),
        "La Double vie de Véronique (The Double Life of Veronique). genres: drama. year: 1991"),
    4: ("Enfer, L' (1994)", ("Drama",), "L'Enfer. genres: drama. year: 1994"),
    5: ("Land Before Time III: The Time of the Great Giving (1995) (V)", ("Animation",),
        "Land Before Time III: The Time of the Great Giving (V). genres: animation. year: 1995"),
    6: ("Airplane! (1980)", ("Comedy",), "Airplane! genres: comedy. year: 1980"),
    7: ("Good Morning (1971)", ("unknown",), "Good Morning. year: 1971"),  # ml-100k's "unknown" genre is none
    8: ("Babylon 5", ("(no genres listed)",), "Babylon 5"),
    9: ("", ("Drama",), "genres: drama"),
    267: ("unknown", ("unknown",), ""),  # ml-100k's placeholder item: nothing known
    300: ("(1995)", (), ""),  # a year alone is no content
    301: ("", (), ""),
}  # fmt: skip


def _interactions(items: dict = ITEMS) -> Interactions:
    keys = list(items)
    n = len(keys)
    return Interactions(
        users=np.zeros(n, dtype=np.int64),
        items=np.arange(n),
        timestamps=np.arange(n),
        num_users=1,
        num_items=n,
        item_titles=[items[k][0] for k in keys],
        item_genres=[items[k][1] for k in keys],
        item_vocab=Vocabulary(keys, [1] * n, pad_token=None, oov_token=None),
    )


def test_texts_in_item_id_order_and_empty_items_reported():
    data = _interactions()
    with pytest.warns(UserWarning, match=r"3 of 12 items without usable content .*item IDs \[9, 10, 11\] "
                      r"\(raw keys \[267, 300, 301\], titles \['unknown', '\(1995\)', ''\]\)"):  # fmt: skip
        texts = item_content_texts(data)
    assert texts == [expected for _, _, expected in ITEMS.values()]
    assert empty_content(data) == [9, 10, 11]


def test_no_warning_when_every_item_has_content():
    data = _interactions({k: v for k, v in ITEMS.items() if v[2]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(item_content_texts(data)) == 9 and empty_content(data) == []


def test_titles_or_genres_alone_and_neither():
    data = _interactions()
    data.item_genres = None
    with pytest.warns(UserWarning, match=r"4 of 12 items .*item IDs \[8, 9, 10, 11\]"):  # ID 8 had genres only
        assert item_content_texts(data)[0] == "Toy Story. year: 1995"
    data.item_titles, data.item_genres = None, [genres for _, genres, _ in ITEMS.values()]
    with pytest.warns(UserWarning):
        assert item_content_texts(data)[1] == "genres: comedy, drama"
    data.item_genres = None
    with pytest.raises(ValueError, match="no item content .*item_titles and item_genres are both None"):
        item_content_texts(data)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Toy Story (1995)", ("Toy Story", 1995)),
        ("Fawlty Towers (1975-1979)", ("Fawlty Towers", 1975)),
        ("Stranger Things (2016– )", ("Stranger Things", 2016)),
        ("Land Before Time III (1995) (V)", ("Land Before Time III (V)", 1995)),
        ("1900 (1976)", ("1900", 1976)),
        ("Babylon 5", ("Babylon 5", None)),
        ("Year (1995) of the Dragon", ("Year (1995) of the Dragon", None)),  # not at the end: part of the title
        ("Unknown (2011)", ("Unknown", 2011)),
    ],
)
def test_parse_title(title, expected):
    assert parse_title(title) == expected


def test_movie_world_texts():
    world = generate_movie_world(num_movies=50, num_users=20, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        texts = item_content_texts(world.interactions)
    assert len(texts) == 50 and empty_content(world.interactions) == []
    body, year = parse_title(world.interactions.item_titles[0])
    genres = ", ".join(world.interactions.item_genres[0])
    assert texts[0] == f"{body}. genres: {genres}. year: {year}" and year == world.content.years[0]


def _ml100k() -> Path:
    env = os.environ.get("JOINTEMBED_SHARED_DATA")
    shared = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return shared / "movielens" / "ml-100k"


def test_real_ml100k_texts():
    folder = _ml100k()
    if not (folder / "u.item").is_file():
        pytest.skip(f"MovieLens 100K not found at {folder}")
    data = read_movielens(folder)
    with pytest.warns(UserWarning, match=r"1 of 1682 items .*\(raw keys \[267\], titles \['unknown'\]\)"):
        texts = item_content_texts(data)
    assert empty_content(data) == [data.item_vocab.encode(267)]
    assert texts[data.item_vocab.encode(1)] == "Toy Story. genres: animation, children's, comedy. year: 1995"
    assert texts[data.item_vocab.encode(543)] == "Les Misérables. genres: drama, musical. year: 1995"
    assert sum(" year: " not in t for t in texts) == 1  # every title but the placeholder's has its year
