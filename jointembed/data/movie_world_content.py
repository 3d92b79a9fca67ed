"""Generated content for the synthetic movie world: a title, genre words and a release year per movie.

The content carries the planted aspects, noisily, so that a text tower can place a movie nobody has watched:

- **Genre words.** For each of the two named aspects a movie gets one or two genre words (even odds), each drawn
  from that aspect's positive side with probability ``sigmoid(clarity * aspect)``, else from its negative side:

  ========================  ===================================  ===================================
  aspect                    negative side                        positive side
  ========================  ===================================  ===================================
  ``children_adult``        family, animated, kids               thriller, crime, mature
  ``blockbuster_arthouse``  action, franchise, epic              indie, festival, drama
  ========================  ===================================  ===================================

  ``clarity`` is solved from ``genre_accuracy``, the mean probability (over standard normal aspects) that a word
  matches its aspect's sign; a movie far out on one side gets its side's words more reliably than a borderline
  one. Half of the movies also get one neutral word (comedy, romance, mystery, musical, western, war) that carries
  nothing. Words are unique per movie and sorted, like MovieLens's genres.
- **Titles.** One or two pseudo-words built from syllables (``"Sibrath"``, ``"Vairen"``), preceded for about a third
  of the movies by a marker word of one named aspect, chosen with the same noise: Little / Magic / Happy
  (children's), Dark / Blood / Deadly (adult), Legend / Return / Rise (blockbuster), Silence / Letters / Quiet
  (arthouse). Then the year in MovieLens's form, ``"Dark Sibrath Vairen (1994)"``. A title that would repeat an
  earlier movie's gets a sequel number (``"Sibrath 2 (1994)"``), so titles are unique and usable as keys.
- **Years.** ``1995 + 12 * z`` rounded and clipped to 1930..2024, where ``z`` has correlation 0.4 with the first
  hidden aspect (``hidden_0``, when there is one) and is otherwise noise.
- **Hidden aspects** are not in the genres or the title words: only the watches reveal them (and the year,
  weakly, ``hidden_0``).

On 20,000 movies with the default ``genre_accuracy=0.75`` (mean over world seeds 0-9), a ridge regression from
the bag of genre words to the two named aspects explains R² 0.36 (children↔adult) and 0.37 (blockbuster↔arthouse)
on held-out movies, 0.38 / 0.39 with the title's marker words added (a sign-perfect labelling, accuracy 1, would
cap near 0.55); the same words explain nothing of the hidden aspects (R² ≈ 0), and the year 0.16 of ``hidden_0``.
``tests/data/test_movie_world_content.py`` checks these with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MovieContent", "generate_movie_content", "genre_clarity", "GENRE_WORDS", "NEUTRAL_GENRES", "TITLE_MARKERS"]

# (negative side, positive side) of each named aspect, in ASPECT_NAMES order
GENRE_WORDS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("family", "animated", "kids"), ("thriller", "crime", "mature")),
    (("action", "franchise", "epic"), ("indie", "festival", "drama")),
)
NEUTRAL_GENRES: tuple[str, ...] = ("comedy", "romance", "mystery", "musical", "western", "war")
TITLE_MARKERS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("Little", "Magic", "Happy"), ("Dark", "Blood", "Deadly")),
    (("Legend", "Return", "Rise"), ("Silence", "Letters", "Quiet")),
)

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gl", "kr", "sh", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("", "", "n", "r", "s", "th", "x", "l")
_YEAR_RANGE = (1930, 2024)
_YEAR_HIDDEN_CORRELATION = 0.4


@dataclass
class MovieContent:
    """Content of M generated movies.

    Attributes:
        titles: ``M`` unique titles ending in the year, e.g. ``"Dark Sibrath (1994)"``.
        genres: ``M`` sorted tuples of genre words.
        years: ``(M,)`` int64 release years (also at the end of each title).
        genre_vocabulary: The ``G`` genre words, named aspects' sides first, then the neutral ones.
        genre_matrix: ``(M, G)`` bool, ``genre_matrix[i, g]`` when movie ``i`` has word ``genre_vocabulary[g]``.
    """

    titles: list[str]
    genres: list[tuple[str, ...]]
    years: np.ndarray
    genre_vocabulary: tuple[str, ...]
    genre_matrix: np.ndarray


def genre_clarity(genre_accuracy: float) -> float:
    """The ``clarity`` c with ``E[sigmoid(c * |a|)] = genre_accuracy`` for standard normal ``a`` (inf for 1)."""
    if not 0.5 <= genre_accuracy <= 1.0:
        raise ValueError(f"genre_accuracy must be in [0.5, 1], got {genre_accuracy}")
    if genre_accuracy == 1.0:
        return float("inf")
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    low, high = 0.0, 1e3
    for _ in range(100):  # bisection: the mean accuracy grows monotonically with clarity
        mid = (low + high) / 2
        accuracy = float((weights / (1 + np.exp(-mid * np.abs(nodes)))).sum())
        low, high = (mid, high) if accuracy < genre_accuracy else (low, mid)
    return (low + high) / 2


def generate_movie_content(aspects: np.ndarray, rng: np.random.Generator, genre_accuracy: float = 0.75) -> MovieContent:
    """Titles, genre words and years for movies with the given aspects (see the module docstring).

    Args:
        aspects: ``(M, A)`` movie aspects, ``A >= 2``: the two named ones first, then the hidden ones.
        rng: The random stream of the content (keep it apart from the one that drew the watches).
        genre_accuracy: Mean probability that a genre or marker word matches its aspect's sign, in [0.5, 1]
            (0.5: content says nothing about the aspects).

    Returns:
        A :class:`MovieContent`.
    """
    aspects = np.asarray(aspects, dtype=np.float64)
    if aspects.ndim != 2 or aspects.shape[1] < 2:
        raise ValueError(f"aspects must be (M, A) with A >= 2, got shape {aspects.shape}")
    clarity = genre_clarity(genre_accuracy)
    positive = _positive_probability(aspects[:, :2], clarity)  # (M, 2)
    vocabulary, matrix = _genre_matrix(positive, rng)
    years = _years(aspects, rng)
    titles = _titles(positive, years, rng)
    masks = matrix.astype(np.int64) @ (np.int64(1) << np.arange(len(vocabulary), dtype=np.int64))
    names = {mask: tuple(sorted(w for g, w in enumerate(vocabulary) if mask >> g & 1)) for mask in set(masks.tolist())}
    return MovieContent(titles, [names[mask] for mask in masks.tolist()], years, vocabulary, matrix)


def _positive_probability(named: np.ndarray, clarity: float) -> np.ndarray:
    """``(M, 2)`` probability that a word of each named aspect comes from its positive side."""
    if np.isinf(clarity):
        return (named > 0).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-clarity * named))


def _genre_matrix(positive: np.ndarray, rng: np.random.Generator) -> tuple[tuple[str, ...], np.ndarray]:
    """The genre vocabulary and the ``(M, G)`` bool bag of genre words of every movie."""
    num_movies = positive.shape[0]
    vocabulary = tuple(w for sides in GENRE_WORDS for side in sides for w in side) + NEUTRAL_GENRES
    matrix = np.zeros((num_movies, len(vocabulary)), dtype=bool)
    rows = np.arange(num_movies)
    offset = 0
    for aspect, (negative, positive_side) in enumerate(GENRE_WORDS):
        count = 1 + (rng.random(num_movies) < 0.5)
        for slot in range(2):
            side = rng.random(num_movies) < positive[:, aspect]
            word = rng.integers(0, len(negative), num_movies) + np.where(side, len(negative), 0)
            keep = count > slot
            matrix[rows[keep], offset + word[keep]] = True
        offset += len(negative) + len(positive_side)
    neutral = rng.random(num_movies) < 0.5
    word = offset + rng.integers(0, len(NEUTRAL_GENRES), num_movies)
    matrix[rows[neutral], word[neutral]] = True
    return vocabulary, matrix


def _years(aspects: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(M,)`` int64 release years, weakly tied to ``hidden_0`` when the movies have one."""
    noise = rng.standard_normal(aspects.shape[0])
    if aspects.shape[1] > 2:
        rho = _YEAR_HIDDEN_CORRELATION
        noise = rho * aspects[:, 2] + np.sqrt(1 - rho**2) * noise
    return np.clip(np.rint(1995 + 12 * noise), *_YEAR_RANGE).astype(np.int64)


def _pseudo_words(rng: np.random.Generator, size: int) -> list[str]:
    """``size`` capitalised two-syllable pseudo-words (onset vowel onset vowel coda)."""
    parts = [
        rng.integers(0, len(table), size)
        for table in (_ONSETS, _VOWELS, _ONSETS, _VOWELS, _CODAS)
    ]  # fmt: skip
    o1, v1, o2, v2, c = (p.tolist() for p in parts)
    return [
        (_ONSETS[a] + _VOWELS[b] + _ONSETS[d] + _VOWELS[e] + _CODAS[f]).capitalize()
        for a, b, d, e, f in zip(o1, v1, o2, v2, c, strict=True)
    ]


def _titles(positive: np.ndarray, years: np.ndarray, rng: np.random.Generator) -> list[str]:
    """``M`` unique titles: optional marker word, one or two pseudo-words, sequel number if repeated, year."""
    num_movies = positive.shape[0]
    first, second = _pseudo_words(rng, num_movies), _pseudo_words(rng, num_movies)
    two_words = (rng.random(num_movies) < 0.5).tolist()
    marked = rng.random(num_movies) < 1 / 3
    aspect = rng.integers(0, 2, num_movies)
    side = rng.random(num_movies) < positive[np.arange(num_movies), aspect]
    pick = rng.integers(0, 3, num_movies)
    markers = [
        TITLE_MARKERS[a][s][p] + " " if m else ""
        for m, a, s, p in zip(marked.tolist(), aspect.tolist(), side.tolist(), pick.tolist(), strict=True)
    ]
    seen: dict[str, int] = {}
    titles = []
    for marker, w1, w2, both, year in zip(markers, first, second, two_words, years.tolist(), strict=True):
        body = f"{marker}{w1} {w2}" if both else f"{marker}{w1}"
        n = seen[f"{body} ({year})"] = seen.get(f"{body} ({year})", 0) + 1
        titles.append(f"{body} ({year})" if n == 1 else f"{body} {n} ({year})")
    return titles
