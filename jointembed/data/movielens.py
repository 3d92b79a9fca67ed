"""Read the MovieLens files a user downloaded (GroupLens research licence: no redistribution) into Interactions.

Three layouts are understood, detected from the files in the folder:

- ``100k`` (ml-100k): ``u.data`` (tab-separated ``user item rating timestamp``) and ``u.item``
  (``|``-separated, latin-1: ``id|title|release date|video release date|IMDb URL|`` + 19 genre flags, named
  by ``u.genre`` when present).
- ``1m`` (ml-1m, ml-10m): ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) and ``movies.dat``
  (``MovieID::Title::Genres``, genres ``|``-separated). ml-1m writes Latin-1 and ml-10m UTF-8 in the same
  layout, so ``movies.dat`` is read as UTF-8 when its lines with non-ASCII bytes are valid UTF-8 (Latin-1 text
  with accents practically never is), as Latin-1 when none is. A file that mixes the two (a Latin-1 title
  pasted into a UTF-8 file, or the reverse) is refused, naming a line of each: read in either encoding it would
  turn some titles into mojibake. ``u.item`` is read the same way (Latin-1 as released, UTF-8 once re-saved).
- ``csv`` (ml-latest, ml-latest-small, ml-20m, ml-25m): ``ratings.csv`` (header
  ``userId,movieId,rating,timestamp``) and ``movies.csv`` (header ``movieId,title,genres``, titles quoted
  when they hold commas, UTF-8).

Every file is read in the encoding its format defines and only bytes invalid there are refused; every row
must hold exactly its format's fields (too many is refused like too few), IDs and timestamps must fit in 64
bits and ratings be finite. Each fault is a ``DataFormatError`` naming the file and the line.

Genres are names separated by ``|`` (or ml-100k's 0/1 flag columns): an empty name (``"Action||Drama"``), a name
with surrounding spaces, or one holding another separator (``"Action,Comedy"``: , ; / \\ : or a tab) is
refused, naming the file, line, column and value. An empty genre field means no genres, as does
``(no genres listed)``.

Every kept rating is one "watch" event. The movie file is optional: without it titles and genres are
``None``. A rating of a movie missing from the movie file is kept, with title ``""`` and no genres, and a
``UserWarning`` names how many and the first few movie IDs. A movie row with an empty title is kept likewise
(its ratings are real) with a ``UserWarning`` naming its lines and IDs; when it has no genres either, it has no
content, which :func:`jointembed.data.item_content.empty_content` reports.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from jointembed.data.interactions import Interactions
from jointembed.errors import DataFormatError
from jointembed.vocab import Vocabulary

__all__ = ["read_movielens", "detect_movielens_format", "MOVIELENS_FILES", "ML100K_GENRES"]

Format = Literal["100k", "1m", "csv"]

# format -> (ratings file, movies file)
MOVIELENS_FILES: dict[str, tuple[str, str]] = {
    "100k": ("u.data", "u.item"),
    "1m": ("ratings.dat", "movies.dat"),
    "csv": ("ratings.csv", "movies.csv"),
}

# genre flag columns of ml-100k's u.item, in order (as listed in its u.genre)
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_NO_GENRES = "(no genres listed)"
_GENRE_SEPARATORS = re.compile(r"[,;/\\:\t]")  # what a genre list written by hand might use instead of "|"
_SHOWN = 5  # rows or IDs named in a warning

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # ratings are stored as float32

Movies = dict[int, tuple[str, tuple[str, ...]]]  # raw movie ID -> (title, genres)


def detect_movielens_format(path: str | os.PathLike) -> Format:
    """The MovieLens layout of folder ``path``, from which ratings file it holds.

    Raises:
        FileNotFoundError: The folder does not exist or holds none of the ratings files (the message lists them).
        ValueError: It holds ratings files of more than one layout.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"MovieLens folder {folder} does not exist or is not a folder")
    found = [name for name, (ratings, _) in MOVIELENS_FILES.items() if (folder / ratings).is_file()]
    if not found:
        expected = "; ".join(f"{r} (+ {m}) for {name}" for name, (r, m) in MOVIELENS_FILES.items())
        raise FileNotFoundError(f"no MovieLens ratings file in {folder}: expected one of {expected}")
    if len(found) > 1:
        raise ValueError(f"{folder} holds ratings files of several MovieLens layouts {found}; pass format=")
    return found[0]  # type: ignore[return-value]


def read_movielens(
    path: str | os.PathLike,
    *,
    min_rating: float | None = None,
    format: Literal["auto", "100k", "1m", "csv"] = "auto",
    keep_unwatched_movies: bool = False,
) -> Interactions:
    """Read a MovieLens folder into :class:`~jointembed.data.interactions.Interactions`.

    User and item IDs are assigned by :class:`~jointembed.vocab.Vocabulary` ordering (most events first, ties by
    first appearance in the ratings file), without pad or OOV tokens, so IDs are exactly ``0..U-1`` and
    ``0..N-1``; ``user_vocab`` / ``item_vocab`` map the raw MovieLens IDs (ints) to them. Events keep file
    order; ``ratings`` holds the star rating of each kept event. Repeated (user, movie) ratings are kept
    (MovieLens has none).

    Args:
        path: Folder with the ratings file and (optionally) the movie file.
        min_rating: Keep only ratings ``>= min_rating`` as watches; ``None`` keeps every rating.
        format: ``"auto"`` detects the layout (see :func:`detect_movielens_format`).
        keep_unwatched_movies: Also give an item ID to movies of the movie file without any kept rating
            (after those with ratings, in file order); by default the catalogue is the watched movies.

    Raises:
        FileNotFoundError: No ratings file (the message lists the expected names).
        DataFormatError: A malformed line; the message names the file, the 1-based line number and the text.
        ValueError: No rating is left after ``min_rating``.
    """
    folder = Path(path)
    fmt = detect_movielens_format(folder) if format == "auto" else format
    if fmt not in MOVIELENS_FILES:
        raise ValueError(f"format must be 'auto' or one of {list(MOVIELENS_FILES)}, got {format!r}")
    ratings_name, movies_name = MOVIELENS_FILES[fmt]
    if not (folder / ratings_name).is_file():
        raise FileNotFoundError(f"{folder / ratings_name} not found (format {fmt!r})")
    users, items, stars, times = _RATING_READERS[fmt](folder / ratings_name)
    movies = _read_movies(fmt, folder) if (folder / movies_name).is_file() else None
    if min_rating is not None:
        keep = stars >= min_rating
        if not keep.any():
            raise ValueError(f"no rating in {folder / ratings_name} is >= min_rating={min_rating}")
        users, items, stars, times = users[keep], items[keep], stars[keep], times[keep]
    user_ids, user_vocab = _encode(users, [])
    extra = [] if movies is None or not keep_unwatched_movies else list(movies)
    item_ids, item_vocab = _encode(items, extra)
    raw_items = item_vocab.values
    titles = genres = None
    if movies is not None:
        _warn_missing_movies(folder / movies_name, [raw for raw in raw_items if raw not in movies])
        titles = [movies.get(raw, ("", ()))[0] for raw in raw_items]
        genres = [movies.get(raw, ("", ()))[1] for raw in raw_items]
    return Interactions(
        users=user_ids,
        items=item_ids,
        timestamps=times,
        num_users=len(user_vocab),
        num_items=len(item_vocab),
        item_titles=titles,
        item_vocab=item_vocab,
        user_vocab=user_vocab,
        item_genres=genres,
        ratings=stars,
    )


def _encode(raw: np.ndarray, extra: list[int]) -> tuple[np.ndarray, Vocabulary]:
    """IDs ordered by count descending then first appearance (``Vocabulary.from_values``' order), vectorised."""
    values, first, inverse, counts = np.unique(raw, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    seen = set(values.tolist())
    extra = [value for value in extra if value not in seen]
    vocab = Vocabulary(
        values[order].tolist() + extra,
        counts[order].tolist() + [0] * len(extra),
        pad_token=None,
        oov_token=None,
    )
    return rank[inverse.reshape(-1)], vocab


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without newline)`` of every non-blank line.

    Lines are decoded one by one so that a byte invalid in ``encoding`` is reported with its line.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as err:
                name = encoding.removesuffix("-sig").upper()
                raise _error(
                    path, number, f"byte {raw[err.start]:#04x} at column {err.start + 1} is not {name}"
                ) from err
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def _movie_file_encoding(path: Path) -> str:
    """``utf-8`` when every line with non-ASCII bytes is valid UTF-8, ``latin-1`` when none is (see the module
    docstring); a file mixing the two is refused, naming the first line of the rarer kind and one of the other."""
    first: dict[bool, tuple[int, bytes]] = {}  # is UTF-8 -> first such line
    counts = {True: 0, False: 0}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.isascii():
                continue
            try:
                raw.decode("utf-8")
                utf8 = True
            except UnicodeDecodeError:
                utf8 = False
            counts[utf8] += 1
            first.setdefault(utf8, (number, raw))
    if counts[True] and counts[False]:
        odd = counts[True] < counts[False]  # the rarer kind is the likely mistake
        (number, raw), (other, other_raw) = first[odd], first[not odd]
        kinds = ("Latin-1 (not valid UTF-8)", "UTF-8")
        raise _error(
            path,
            number,
            f"the file mixes encodings: this line ({_first_non_ascii(raw)}) and {counts[odd] - 1} more are "
            f"{kinds[odd]}, line {other} ({_first_non_ascii(other_raw)}) and {counts[not odd] - 1} more are "
            f"{kinds[not odd]}; re-save the file in one encoding",
        )
    return "utf-8" if counts[True] else "latin-1"


def _first_non_ascii(raw: bytes) -> str:
    column = next(i for i, byte in enumerate(raw) if byte > 0x7F)
    return f"byte {raw[column]:#04x} at column {column + 1}"


def _check_int64(path: Path, number: int, what: str, value: int) -> None:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _error(path, number, f"{what} {value} does not fit in a 64-bit integer")


def _error(path: Path, number: int, message: str) -> DataFormatError:
    # The file's line is not echoed: the message names the file, the line, the field and its bad value, and
    # showing a whole row of someone's data (or a line that is not text at all) helps no one.
    return DataFormatError(f"{path}, line {number}: {message}")


def _parse_ratings(
    path: Path, rows: Iterator[tuple[int, str]], split: Callable[[str], list[str]], layout: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``user item rating timestamp`` rows into ``(users, items, ratings, timestamps)`` arrays."""
    users: list[int] = []
    items: list[int] = []
    stars: list[float] = []
    times: list[int] = []
    for number, line in rows:
        fields = split(line)
        if len(fields) != 4:
            raise _error(path, number, f"expected 4 fields {layout}, found {len(fields)}")
        try:
            user, item, star, time = int(fields[0]), int(fields[1]), float(fields[2]), int(fields[3])
        except ValueError as err:
            raise _error(path, number, f"{_bad_rating_field(fields)} {layout}") from err
        if not (
            _INT64_MIN <= user <= _INT64_MAX and _INT64_MIN <= item <= _INT64_MAX and _INT64_MIN <= time <= _INT64_MAX
        ):
            # one chained test per row keeps the common case cheap; then name the culprit
            for what, value in (("user ID", user), ("movie ID", item), ("timestamp", time)):
                _check_int64(path, number, what, value)
        if not -_FLOAT32_MAX <= star <= _FLOAT32_MAX:  # also false for NaN
            raise _error(path, number, f"rating {fields[2]!r} is not a finite 32-bit float")
        users.append(user)
        items.append(item)
        stars.append(star)
        times.append(time)
    if not users:
        raise DataFormatError(f"{path} holds no ratings")
    return (
        np.array(users, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.array(stars, dtype=np.float32),
        np.array(times, dtype=np.int64),
    )


_RATING_FIELDS = (("user ID", int), ("movie ID", int), ("rating", float), ("timestamp", int))


def _bad_rating_field(fields: list[str]) -> str:
    """Which of a ratings row's 4 fields does not parse, and its value (shortened)."""
    for number, ((name, parse), value) in enumerate(zip(_RATING_FIELDS, fields, strict=True), start=1):
        try:
            parse(value)
        except ValueError:
            return f"field {number} ({name}) {value[:40]!r} is not {'a number' if parse is float else 'an integer'}"
    return "a field does not parse"  # unreachable: the caller's parse failed on one of them


def _read_ratings_100k(path: Path) -> tuple[np.ndarray, ...]:
    return _parse_ratings(
        path, _lines(path, "latin-1"), lambda s: s.split("\t"), "(user, item, rating, timestamp, tab-separated)"
    )


def _read_ratings_dat(path: Path) -> tuple[np.ndarray, ...]:
    return _parse_ratings(
        path, _lines(path, "latin-1"), lambda s: s.split("::"), "(UserID::MovieID::Rating::Timestamp)"
    )


def _read_ratings_csv(path: Path) -> tuple[np.ndarray, ...]:
    rows = _lines(path, "utf-8-sig")
    _check_header(path, rows, "userId,movieId,rating,timestamp")
    return _parse_ratings(path, rows, lambda s: s.split(","), "(userId,movieId,rating,timestamp)")


_RATING_READERS: dict[str, Callable[[Path], tuple[np.ndarray, ...]]] = {
    "100k": _read_ratings_100k,
    "1m": _read_ratings_dat,
    "csv": _read_ratings_csv,
}


def _check_header(path: Path, rows: Iterator[tuple[int, str]], expected: str) -> None:
    first = next(rows, None)
    if first is None:
        raise DataFormatError(f"{path} is empty: expected the header {expected!r}")
    number, line = first
    if line.replace(" ", "") != expected:  # a header names columns: showing it holds none of the user's data
        raise _error(path, number, f"expected the header {expected!r}, found {line[:100]!r}")


def _add_movie(movies: Movies, path: Path, number: int, raw: str, title: str, genres: tuple) -> int:
    try:
        movie = int(raw)
    except ValueError as err:
        raise _error(path, number, f"movie ID {raw!r} is not an integer") from err
    _check_int64(path, number, "movie ID", movie)
    if movie in movies:
        raise _error(path, number, f"movie ID {movie} appears a second time")
    movies[movie] = (title, genres)
    return movie


MovieRows = Iterator[tuple[int, str, str, tuple[str, ...]]]  # (line number, raw ID, title, genres)


def _read_movies(fmt: str, folder: Path) -> Movies:
    path = folder / MOVIELENS_FILES[fmt][1]
    movies: Movies = {}
    untitled: list[tuple[int, int]] = []  # (line number, movie ID) of rows with an empty title
    for number, raw, title, genres in _MOVIE_ROWS[fmt](path, folder):
        movie = _add_movie(movies, path, number, raw, title, genres)
        if not title.strip():
            untitled.append((number, movie))
    if untitled:
        bare = sum(not movies[movie][1] for _, movie in untitled)
        shown = ", ".join(f"line {number} (movie {movie})" for number, movie in untitled[:_SHOWN])
        more = ", ..." if len(untitled) > _SHOWN else ""
        warnings.warn(
            f"{path}: {len(untitled)} movie row(s) with an empty title ({shown}{more}); kept with title '', {bare} of "
            "them without genres either (no content: see jointembed.data.item_content.empty_content)",
            UserWarning,
            stacklevel=3,
        )
    return movies


def _movie_rows_100k(path: Path, folder: Path) -> MovieRows:
    names = _genre_names_100k(folder)
    width = 5 + len(names)
    for number, line in _lines(path, _movie_file_encoding(path)):
        fields = line.split("|")
        if len(fields) != width:
            raise _error(
                path,
                number,
                f"expected id|title|release date|video release date|IMDb URL| + {len(names)} 0/1 genre flags "
                f"({width} fields), found {len(fields)}",
            )
        for column, (name, flag) in enumerate(zip(names, fields[5:], strict=True), start=6):
            if flag not in ("0", "1"):
                raise _error(path, number, f"genre flag column {column} ({name}) holds {flag!r}, not 0 or 1")
        genres = tuple(name for name, flag in zip(names, fields[5:], strict=True) if flag == "1")
        yield number, fields[0], fields[1], genres


def _movie_rows_dat(path: Path, folder: Path) -> MovieRows:
    for number, line in _lines(path, _movie_file_encoding(path)):
        fields = line.split("::")  # GroupLens chose "::" as the separator because no title holds it
        if len(fields) != 3:
            raise _error(path, number, f"expected MovieID::Title::Genres, found {len(fields)} fields")
        yield number, fields[0], fields[1], _split_genres(path, number, fields[2])


def _movie_rows_csv(path: Path, folder: Path) -> MovieRows:
    rows = _lines(path, "utf-8-sig")
    _check_header(path, rows, "movieId,title,genres")
    for number, line in rows:
        try:  # strict: a stray quote is an error, not silently dropped
            fields = next(csv.reader([line], strict=True))
        except csv.Error as err:
            raise _error(path, number, f"malformed CSV quoting ({err})") from err
        if len(fields) != 3:
            raise _error(path, number, f"expected 3 fields movieId,title,genres, found {len(fields)}")
        yield number, fields[0], fields[1], _split_genres(path, number, fields[2])


_MOVIE_ROWS: dict[str, Callable[[Path, Path], MovieRows]] = {
    "100k": _movie_rows_100k,
    "1m": _movie_rows_dat,
    "csv": _movie_rows_csv,
}


def _split_genres(path: Path, number: int, text: str) -> tuple[str, ...]:
    """The ``|``-separated genre names of field 3; ``""`` and ``(no genres listed)`` are none."""
    if text in ("", _NO_GENRES):
        return ()
    genres = tuple(text.split("|"))
    for name in genres:
        problem = None
        if not name:
            problem = "an empty name between '|'"
        elif name != name.strip():
            problem = f"the name {name!r} has surrounding spaces"
        elif (separator := _GENRE_SEPARATORS.search(name)) is not None:
            problem = f"the name {name!r} holds {separator.group()!r}"
        if problem is not None:
            raise _error(path, number, f"genres (field 3) {text!r}: {problem}; expected names separated by '|'")
    return genres


def _warn_missing_movies(path: Path, missing: list[int]) -> None:
    if missing:
        more = ", ..." if len(missing) > _SHOWN else ""
        warnings.warn(
            f"{path} lacks {len(missing)} rated movie(s) (movie IDs {missing[:_SHOWN]}{more}): kept with title '' "
            "and no genres (no content: see jointembed.data.item_content.empty_content)",
            UserWarning,
            stacklevel=3,
        )


def _genre_names_100k(folder: Path) -> tuple[str, ...]:
    """Genre names in flag order from ``u.genre`` (``name|index`` lines), or the standard 19."""
    path = folder / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    named: dict[int, str] = {}
    for number, line in _lines(path, "latin-1"):
        fields = line.split("|")
        if len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()):
            raise _error(path, number, "expected name|index")
        named[int(fields[1])] = fields[0]
    if sorted(named) != list(range(len(named))):
        raise DataFormatError(f"{path}: genre indices must be 0..{len(named) - 1}, got {sorted(named)}")
    return tuple(named[i] for i in range(len(named)))
