"""Non-neural recommendation baselines to measure the embedding model against: random, popularity and EASE.

Each follows the same small interface, so evaluation code treats them like a trained model:

- ``fit(train: Histories) -> self``
- ``score(histories, users) -> (len(users), N)`` float32 tensor: higher is better; the user's input is row
  ``users[i]`` of ``histories`` (the train rows, or a held-out user's fold-in rows).
- ``recommend(histories, users, k, exclude_seen=True)`` -> ``(len(users), k)`` item IDs via
  :func:`jointembed.metrics.ranking.topk_from_scorer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from jointembed.histories import Histories
from jointembed.metrics.ranking import budget_rows, topk_from_scorer

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = [
    "RandomRecommender",
    "PopularityRecommender",
    "EASE",
    "ContentProfileRecommender",
    "ContentPopularityRecommender",
    "content_bags",
]


class _Baseline(ABC):
    """Shared ``recommend``; subclasses set ``num_items`` in ``fit`` and implement ``score``."""

    num_items: int | None = None

    def _check_fitted(self, histories: Histories) -> None:
        if self.num_items is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train_histories) first")
        if histories.num_items != self.num_items:
            raise ValueError(f"histories have {histories.num_items} items but the model was fit on {self.num_items}")

    @abstractmethod
    def score(self, histories: Histories, users: np.ndarray | Sequence[int]) -> torch.Tensor:
        """``(len(users), N)`` float32 scores of every item for each user (row ``users[i]`` of ``histories``)."""

    def recommend(
        self,
        histories: Histories,
        users: np.ndarray | Sequence[int],
        k: int = 10,
        exclude_seen: bool = True,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """``(len(users), k)`` int64 top-k item IDs, best first; seen items (in ``histories``) excluded.

        ``chunk_size`` users are scored at once; ``None`` keeps each score block within ``SCORE_BUDGET``
        (16 users for a 1,000,000-item catalogue), so a large catalogue never builds a multi-GB block.
        """
        self._check_fitted(histories)
        if chunk_size is None:
            chunk_size = budget_rows(self.num_items)
        return topk_from_scorer(
            lambda chunk: self.score(histories, chunk), users, histories if exclude_seen else None, k, chunk_size
        )


class RandomRecommender(_Baseline):
    """Scores every item uniformly at random (seeded): the floor any real recommender must clear.

    Args:
        seed: Seed of the scores; each ``score`` call continues the same random stream.
    """

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def fit(self, train: Histories) -> RandomRecommender:
        """Record the catalogue size."""
        self.num_items = train.num_items
        return self

    def score(self, histories: Histories, users: np.ndarray | Sequence[int]) -> torch.Tensor:
        """``(len(users), N)`` uniform random scores."""
        self._check_fitted(histories)
        return torch.rand(len(users), self.num_items, generator=self.generator)


class PopularityRecommender(_Baseline):
    """Recommends the most-watched items: the score of an item is its number of training events.

    Repeated events of one user count each time.
    """

    counts: torch.Tensor | None = None

    def fit(self, train: Histories) -> PopularityRecommender:
        """Count each item's events in ``train``."""
        self.num_items = train.num_items
        self.counts = torch.from_numpy(np.bincount(train.items, minlength=train.num_items).astype(np.float32))
        return self

    def score(self, histories: Histories, users: np.ndarray | Sequence[int]) -> torch.Tensor:
        """``(len(users), N)`` item counts, the same row for every user (a fresh tensor)."""
        self._check_fitted(histories)
        return self.counts.repeat(len(users), 1)


class EASE(_Baseline):
    """EASE (Steck, 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form item-item model.

    With ``X`` the binary users x items matrix of the training histories, ``P = (XᵀX + l2·I)⁻¹`` and
    ``B = I - P · diag(1 / diag(P))`` (so ``diag(B) = 0``); a user's scores are ``x_u · B``. It needs a dense
    N x N matrix, so it is for catalogues up to tens of thousands of items; larger catalogues are what the
    embedding model is for.

    Args:
        l2: Ridge regularisation λ; around 500 suits ml-100k-sized data, larger data wants larger λ.
        max_items: Refuse catalogues larger than this (memory grows as N², ~8·N² bytes while fitting).
    """

    weights: torch.Tensor | None = None

    def __init__(self, l2: float = 500.0, max_items: int = 20_000) -> None:
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        self.l2 = l2
        self.max_items = max_items

    def fit(self, train: Histories) -> EASE:
        """Solve for the item-item weights ``B`` ``(N, N)`` from ``train``."""
        n = train.num_items
        if n > self.max_items:
            gib = n * n * 8 / 2**30
            raise ValueError(
                f"EASE needs a dense {n:,} x {n:,} matrix (about {gib:,.1f} GiB while fitting) but max_items is "
                f"{self.max_items:,}; use the embedding recommender for a catalogue this large, or raise max_items "
                "if the memory is there"
            )
        dtype = np.float64 if n <= 10_000 else np.float32  # float64 where it is cheap, for accuracy
        x = train.to_csr_matrix(binary=True).astype(dtype)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n)] += self.l2
        p = np.linalg.inv(gram)
        weights = p / -np.diag(p)[None, :]
        weights[np.diag_indices(n)] = 0.0
        self.num_items = n
        self.weights = torch.from_numpy(weights.astype(np.float32))
        return self

    def score(self, histories: Histories, users: np.ndarray | Sequence[int]) -> torch.Tensor:
        """``(len(users), N)`` scores ``x_u · B`` from each user's (binary) history."""
        self._check_fitted(histories)
        x = histories.select(np.asarray(users)).to_csr_matrix(binary=True)
        return torch.from_numpy(np.asarray(x @ self.weights.numpy(), dtype=np.float32))


def content_bags(texts: Sequence[str]) -> csr_matrix:
    """``(N, V)`` sparse CSR matrix: each text's binary bag of words (words are letter/digit runs, keeping
    apostrophes inside a word), scaled to unit length; an empty text is a zero row."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import normalize

    words = CountVectorizer(token_pattern=r"[^\W_]+(?:'[^\W_]+)?", binary=True, dtype=np.float32)
    return normalize(words.fit_transform([str(t) for t in texts])).tocsr()


class ContentProfileRecommender(_Baseline):
    """The classic content-based recommender: a user's profile is the mean bag of words of the movies they
    watched, less the mean over the catalogue's watched movies, and a movie's score is its bag of words (unit
    length) against that profile. It needs no watch of a movie to score it, so it is the baseline a cold-start
    model's content tower has to beat.

    Args:
        texts: ``N`` content texts in item-ID order (e.g. :func:`jointembed.data.item_content.item_content_texts`).
    """

    def __init__(self, texts: Sequence[str]) -> None:
        self.items = content_bags(texts)

    def fit(self, train: Histories) -> ContentProfileRecommender:
        """Record the catalogue size and the mean bag of the movies watched in ``train``."""
        if train.num_items != self.items.shape[0]:
            raise ValueError(f"{self.items.shape[0]} texts but the histories have {train.num_items} items")
        self.num_items = train.num_items
        watched = np.unique(train.items)
        self.mean = np.asarray(self.items[watched].mean(axis=0)).ravel()
        return self

    def score(self, histories: Histories, users: np.ndarray | Sequence[int]) -> torch.Tensor:
        """``(len(users), N)`` profile · bag scores."""
        self._check_fitted(histories)
        rows = histories.select(np.asarray(users)).to_csr_matrix(binary=True)
        counts = np.maximum(np.asarray(rows.sum(axis=1)), 1.0)
        profiles = (rows @ self.items).toarray() / counts - self.mean
        return torch.from_numpy(np.asarray(self.items @ profiles.T).T.astype(np.float32))


class ContentPopularityRecommender(_Baseline):
    """Popularity for movies nobody has watched yet: ridge regression from a movie's bag of words
    (:func:`content_bags`) to ``log(1 + watches)``, fitted on the movies watched in training, ranks every movie
    by its predicted popularity, the same for every user. Among cold movies (all with zero watches, so plain
    popularity is a random order) it is the popularity a system can know before anyone watches them.

    Args:
        texts: ``N`` content texts in item-ID order.
        l2: Ridge penalty.
    """

    def __init__(self, texts: Sequence[str], l2: float = 1.0) -> None:
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.items, self.l2 = content_bags(texts), l2

    def fit(self, train: Histories) -> ContentPopularityRecommender:
        """Fit the regression on the movies watched in ``train`` (at least two are needed)."""
        from sklearn.linear_model import Ridge

        if train.num_items != self.items.shape[0]:
            raise ValueError(f"{self.items.shape[0]} texts but the histories have {train.num_items} items")
        counts = np.bincount(train.items, minlength=train.num_items)
        watched = np.flatnonzero(counts)
        if watched.size < 2:
            raise ValueError(f"need at least two watched movies to fit popularity from content, got {watched.size}")
        ridge = Ridge(alpha=self.l2).fit(self.items[watched], np.log1p(counts[watched]))
        self.predicted = torch.from_numpy(np.asarray(ridge.predict(self.items), dtype=np.float32))
        self.num_items = train.num_items
        return self

    def score(self, histories: Histories, users: np.ndarray | Sequence[int]) -> torch.Tensor:
        """``(len(users), N)``: every row the predicted ``log(1 + watches)``."""
        self._check_fitted(histories)
        return self.predicted.expand(len(np.asarray(users)), -1).clone()
