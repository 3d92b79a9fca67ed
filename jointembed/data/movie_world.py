"""A synthetic "movie world": movies with latent aspects, users with tastes, watches drawn from both.

The generative story, chosen so that the planted structure is recoverable from the watches alone:

1. Every movie has ``2 + num_hidden_aspects`` aspects, standard normal. The first two are named: aspect 0 runs
   from children's (negative) to adult (positive) movies, aspect 1 from blockbuster (negative) to arthouse
   (positive). The rest are unnamed.
2. Popularity is Zipf-like: the movie of popularity rank ``r`` (1-based) has weight ``r ** -popularity_exponent``.
   Ranks are drawn so blockbusters tend to rank high: movies are ordered by
   ``-blockbuster_popularity * aspect_1 + noise`` (standard normal noise).
3. Every user has a taste over the same aspects (standard normal) and a number of watches ``n_u`` drawn from a
   log-normal with mean ``mean_watches`` (sigma 1), clipped to ``[min_watches, max_watches]``.
4. User ``u`` watches ``n_u`` distinct movies drawn, approximately, without replacement with probability
   ``∝ popularity_i · exp(taste_u · aspects_i / temperature)``. This is sampling-importance-resampling:
   a candidate pool of ``pool_factor · n_u`` movies is drawn from the popularity distribution (inverse CDF,
   ``searchsorted`` on the cumulative popularity), and the ``n_u`` distinct candidates with the largest
   Gumbel-perturbed affinity ``taste · aspects / temperature + G`` are kept (Gumbel top-k). A movie drawn
   ``c`` times keeps its largest perturbation, which equals ``log c`` + one Gumbel, so its weight is its pool
   count (``∝`` popularity in expectation) times ``exp(affinity)``. Larger pools approach the exact
   distribution; a user whose pool has fewer than ``n_u`` distinct movies watches fewer.
5. The order of a user's watches is random: ``timestamps`` are the watch order ``0..n_u-1`` within each user
   (no temporal dynamics are planted).
6. Every movie gets content that carries its named aspects, noisily: a title with its year, e.g.
   ``"Dark Sibrath (1994)"``, and genre words such as ``("crime", "indie")`` (see
   :mod:`jointembed.data.movie_world_content`), in ``interactions.item_titles`` / ``item_genres`` like
   MovieLens's, and in full (years, bag of genre words) in ``MovieWorld.content``. It is drawn from its own
   random stream (seeded by ``(seed, 1)``), so the watches, aspects and popularity of given arguments are the
   same with or without it, whatever ``genre_accuracy`` is.

Everything is vectorised over chunks of about ``chunk_size`` candidates, so memory stays bounded: 1,000,000
movies x 500,000 users with 50 watches on average (about 25M events, pool factor 16) peaks at 1.7 GB and takes
about 110 s on 2 cores (the content, about 2 s of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jointembed.data.interactions import Interactions
from jointembed.data.movie_world_content import MovieContent, generate_movie_content, genre_clarity

__all__ = ["MovieWorld", "generate_movie_world", "ASPECT_NAMES", "MOVIE_WORLD_PRESETS"]

ASPECT_NAMES: tuple[str, str] = ("children_adult", "blockbuster_arthouse")

# named sizes: "tiny" for tests, "small" for quick experiments, "issue" for the motivating problem
MOVIE_WORLD_PRESETS: dict[str, dict[str, int | float]] = {
    "tiny": {"num_movies": 200, "num_users": 300, "mean_watches": 20},
    "small": {"num_movies": 20_000, "num_users": 10_000, "mean_watches": 30},
    # pool_factor 16, not the cheaper 4: with 4 the pool is so small that the watches stay close to popularity
    # (on 20,000 movies, ranking by the true generative scores even fell below ranking by popularity)
    "issue": {"num_movies": 1_000_000, "num_users": 500_000, "mean_watches": 50, "pool_factor": 16},
}


@dataclass
class MovieWorld:
    """A generated movie world and its hidden truth.

    Attributes:
        interactions: The watches: U users, M items, timestamps = watch order within each user, generated
            titles (unique, ending in the year, e.g. ``"Dark Sibrath (1994)"``) and genre words.
        movie_aspects: ``(M, A)`` float32 aspects of each movie; column names in ``aspect_names``.
        user_tastes: ``(U, A)`` float32 taste of each user over the same aspects.
        popularity: ``(M,)`` float64 popularity distribution (sums to 1) the candidates were drawn from.
        aspect_names: ``A`` names: the two of ``ASPECT_NAMES``, then ``hidden_0``, ``hidden_1``, ...
        content: The generated content: titles and genres (the same lists as in ``interactions``), ``(M,)``
            years and the ``(M, G)`` bag of genre words; ``None`` only in a world built by hand.
    """

    interactions: Interactions
    movie_aspects: np.ndarray
    user_tastes: np.ndarray
    popularity: np.ndarray
    aspect_names: tuple[str, ...]
    content: MovieContent | None = None


def generate_movie_world(
    num_movies: int = 200,
    num_users: int = 300,
    *,
    num_hidden_aspects: int = 6,
    mean_watches: float = 20.0,
    min_watches: int = 3,
    max_watches: int | None = None,
    popularity_exponent: float = 1.0,
    blockbuster_popularity: float = 1.0,
    temperature: float = 1.0,
    pool_factor: int = 8,
    seed: int = 0,
    chunk_size: int = 4_000_000,
    genre_accuracy: float = 0.75,
) -> MovieWorld:
    """Generate a seeded movie world (see the module docstring for the generative story).

    Args:
        num_movies: Number of movies M (>= 2).
        num_users: Number of users U (>= 1).
        num_hidden_aspects: Unnamed aspects after the two named ones (>= 0).
        mean_watches: Mean of the log-normal number of watches per user before clipping.
        min_watches: Fewest watches a user is asked for (>= 1).
        max_watches: Most watches per user; ``None`` uses ``max(min_watches, M // 4)``. At most M.
        popularity_exponent: Zipf exponent of popularity; larger gives a longer head (>= 0).
        blockbuster_popularity: How strongly blockbusters (negative aspect 1) rank as popular (0 = not at all).
        temperature: Softmax temperature of taste affinity; smaller makes taste matter more (> 0).
        pool_factor: Candidates drawn per requested watch (>= 1); larger is closer to exact sampling.
        seed: Seed of everything; the same arguments give the same world.
        chunk_size: About how many candidates are processed at once (memory ~ 60 bytes each).
        genre_accuracy: Mean probability that a generated genre (or title marker) word matches the sign of its
            aspect, in [0.5, 1]; 0.5 makes content say nothing about the aspects. Changes only the content.

    Returns:
        A :class:`MovieWorld`.
    """
    max_watches = max(min_watches, num_movies // 4) if max_watches is None else max_watches
    _check_args(num_movies, num_users, num_hidden_aspects, min_watches, max_watches, temperature, pool_factor)
    if popularity_exponent < 0 or mean_watches <= 0:
        raise ValueError(
            f"need popularity_exponent >= 0 and mean_watches > 0, got {popularity_exponent}, {mean_watches}"
        )
    genre_clarity(genre_accuracy)  # refuses a bad value before the costly draws
    rng = np.random.default_rng(seed)
    num_aspects = 2 + num_hidden_aspects
    aspects = rng.standard_normal((num_movies, num_aspects), dtype=np.float32)
    tastes = rng.standard_normal((num_users, num_aspects), dtype=np.float32)
    popularity = _popularity(aspects[:, 1], popularity_exponent, blockbuster_popularity, rng)
    sigma = 1.0
    log_n = rng.normal(np.log(mean_watches) - sigma**2 / 2, sigma, size=num_users)
    wanted = np.clip(np.rint(np.exp(log_n)), min_watches, max_watches).astype(np.int64)
    by_rank = np.argsort(-popularity, kind="stable")  # most popular first: searches stay in cache
    sampler = (np.cumsum(popularity[by_rank]), by_rank)
    users, items, times = _sample_watches(aspects, tastes, sampler, wanted, temperature, pool_factor, chunk_size, rng)
    # a stream of its own: content never shifts the draws above, so worlds and their measured figures stay put
    content = generate_movie_content(aspects, np.random.default_rng([seed, 1]), genre_accuracy)
    interactions = Interactions(
        users=users,
        items=items,
        timestamps=times,
        num_users=num_users,
        num_items=num_movies,
        item_titles=content.titles,
        item_genres=content.genres,
    )
    names = ASPECT_NAMES + tuple(f"hidden_{i}" for i in range(num_hidden_aspects))
    return MovieWorld(interactions, aspects, tastes, popularity, names, content)


def _check_args(
    num_movies: int,
    num_users: int,
    num_hidden_aspects: int,
    min_watches: int,
    max_watches: int,
    temperature: float,
    pool_factor: int,
) -> None:
    if num_movies < 2 or num_users < 1 or num_hidden_aspects < 0:
        raise ValueError(
            f"need num_movies >= 2, num_users >= 1, num_hidden_aspects >= 0; "
            f"got {num_movies}, {num_users}, {num_hidden_aspects}"
        )
    if not 1 <= min_watches <= max_watches <= num_movies:
        raise ValueError(
            f"need 1 <= min_watches <= max_watches <= num_movies, got {min_watches}, {max_watches}, {num_movies}"
        )
    if temperature <= 0 or pool_factor < 1:
        raise ValueError(f"need temperature > 0 and pool_factor >= 1, got {temperature}, {pool_factor}")


def _popularity(
    blockbuster_arthouse: np.ndarray, exponent: float, weight: float, rng: np.random.Generator
) -> np.ndarray:
    """``(M,)`` Zipf popularity, ranks ordered by ``-weight * aspect_1 + noise`` (blockbusters first)."""
    num_movies = blockbuster_arthouse.size
    score = -weight * blockbuster_arthouse.astype(np.float64) + rng.standard_normal(num_movies)
    popularity = np.empty(num_movies, dtype=np.float64)
    popularity[np.argsort(-score, kind="stable")] = np.arange(1, num_movies + 1, dtype=np.float64) ** -exponent
    return popularity / popularity.sum()


def _sample_watches(
    aspects: np.ndarray,
    tastes: np.ndarray,
    sampler: tuple[np.ndarray, np.ndarray],
    wanted: np.ndarray,
    temperature: float,
    pool_factor: int,
    chunk_size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw every user's watches chunk by chunk; returns ``(users, items, timestamps)``, sorted by user, time."""
    pool = wanted * pool_factor
    chunk_of = np.cumsum(pool) // max(1, chunk_size)  # chunk index of each user; users stay contiguous
    bounds = np.flatnonzero(np.diff(chunk_of)) + 1
    aspects_t = np.ascontiguousarray(aspects.T)  # (A, M): one contiguous row per aspect for fast gathers
    parts = []
    for users in np.split(np.arange(wanted.size), bounds):
        if users.size:
            parts.append(_sample_chunk(users, aspects_t, tastes, sampler, wanted, pool, temperature, rng))
    # parts are int32 (half the memory while chunks accumulate); the concatenation writes int64 directly
    return tuple(np.concatenate([p[i] for p in parts], dtype=np.int64) for i in range(3))  # type: ignore[return-value]


def _sample_chunk(
    users: np.ndarray,
    aspects_t: np.ndarray,
    tastes: np.ndarray,
    sampler: tuple[np.ndarray, np.ndarray],
    wanted: np.ndarray,
    pool: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gumbel top-k over popularity-drawn candidate pools for a contiguous block of users."""
    cumulative, by_rank = sampler
    local = np.repeat(np.arange(users.size, dtype=np.int64), pool[users])
    ranks = np.searchsorted(cumulative, rng.random(local.size) * cumulative[-1], side="right")
    movies = by_rank[np.minimum(ranks, by_rank.size - 1)]  # min guards rounding at the top of the CDF
    tastes_t = np.ascontiguousarray(tastes[users].T)  # (A, B)
    score = np.zeros(local.size, dtype=np.float32)
    for a in range(aspects_t.shape[0]):
        score += tastes_t[a, local] * aspects_t[a, movies]
    score /= temperature
    score -= np.log(-np.log(rng.random(local.size, dtype=np.float32) + np.float32(1e-12)))  # + Gumbel noise
    # One float64 sort orders by user, then best perturbed score: users are integers spaced 4096 apart and
    # scores are clipped to +-2000 (only ties among absurdly extreme scores are lost).
    order = np.argsort(local * 4096.0 - np.clip(score, -2000.0, 2000.0))
    local, movies = local[order], movies[order]
    want = wanted[users]
    # A movie drawn several times keeps only its first (best) copy. Deduplicating just the leading 4 n_u
    # candidates is exact unless a user's pool has fewer than n_u distinct movies among them; then they get fewer.
    lead = _rank_in_group(local) < 4 * want[local]
    local, movies = local[lead], movies[lead]
    _, first = np.unique(local * aspects_t.shape[1] + movies, return_index=True)
    first.sort()
    local, movies = local[first], movies[first]
    chosen = _rank_in_group(local) < want[local]
    local, movies = local[chosen], movies[chosen]
    shuffled = np.argsort(local + 0.5 * rng.random(local.size))  # random order within each user
    local, movies = local[shuffled], movies[shuffled]
    return users[local].astype(np.int32), movies.astype(np.int32), _rank_in_group(local).astype(np.int32)


def _rank_in_group(sorted_groups: np.ndarray) -> np.ndarray:
    """Position of each entry within its run of equal values in a sorted array of small non-negative ints."""
    counts = np.bincount(sorted_groups)
    return np.arange(sorted_groups.size) - (np.cumsum(counts) - counts)[sorted_groups]
