"""The wide part of the two-tower recommender: a linear path on the movies' raw bags of words, beside the deep
towers and trained with them, so cold ranking keeps what the words alone give.

For a user ``u`` with watched movies ``H`` and a movie ``j`` with raw bag ``x_j`` (binary words, optionally
IDF-weighted, unit length; a vocabulary fitted on the warm movies' texts), the wide part adds to the deep score

- ``s(|H|) · w_aff[keep_j] · (p_u - c) · x_j``, with ``p_u = mean_{i in H} x_i`` the user's word profile and
  ``c`` the mean bag of the warm movies: the content-profile recommender's affinity, weighted separately for
  movies placed with (``keep = 1``) and without (``keep = 0``: cold, or ID dropped in training) their ID;
- ``w_pop · x_j``: a popularity predicted linearly from the words, learned with the towers (started from the
  ridge regression of the warm movies' log watch counts on their bags). Learned on warm movies it is in sample (a
  word of few movies learns those movies' popularity), so once calibrated on movies nobody trained on
  (:meth:`WideContent.calibrate`, run by :meth:`jointembed.tasks.coldstart.ColdStartTask.calibrate_cold`) a movie
  placed without its ID gets in evaluation ``m · (μ + β · (r_j - μ)) + c`` instead: ``r_j`` the fixed ridge
  prediction of its log watch count, ``μ`` the warm movies' mean log count, ``m, c`` the line that maps log counts
  to the warm movies' learned biases (so a cold movie's bias is on the scale of theirs) and ``β`` how far the
  prediction is trusted, chosen on the validation cold movies;

and the whole personal part (the deep ``cos(u, v) / τ`` too) is scaled by ``s(n) = softplus(a + b · log(1 + n))``
of the history's length ``n``, learned, so a user with one or two watches can lean on popularity (the biases).
The learned biases are not popularity, though (the log-Q correction of training keeps most of it out of them), so
in evaluation a short history (``n ≤ L``) scores ``γ · s(n) · personal + b_j + λ · log(count_j)``, with ``count_j``
the movie's training watches (a movie without ID: its predicted count, as above); ``L, γ, λ``
(:attr:`WideContent.short_map`, no change until set) are chosen on held-out cold users
(:meth:`jointembed.tasks.coldstart.ColdStartTask.calibrate_short_histories`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from jointembed.sparse import SparseBatch

__all__ = ["WideContent", "words_of"]

#: Letter/digit runs, keeping apostrophes inside a word: the tokens of the content-profile baseline.
TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1: the gate starts neutral


def words_of(text: str) -> list[str]:
    """The distinct lower-case words of ``text``, in first-seen order."""
    return list(dict.fromkeys(TOKEN.findall(str(text).lower())))


class WideContent(nn.Module):
    """Raw-words affinity and popularity, and the history-length gate (see the module docstring).

    The vocabulary is fitted on the warm movies' texts before training (:meth:`fit`); a movie's bag is computed
    from its text alone (:meth:`bags`), so a new movie gets one too. Words outside the vocabulary are dropped.

    Args:
        vocabulary: The fitted words (saved with the model); ``None`` until :meth:`fit`.
        idf: Weight each word by its inverse document frequency over the fitted texts (else binary). Off: on
            ml-100k, ranking the validation cold movies by the centred profile alone, binary 0.255 and IDF 0.254.
        popularity_min_count: Only words of at least this many fitted texts carry popularity: a word of one
            movie alone would learn that movie's popularity, which no new movie shares (ridge from words to the
            validation cold movies' popularity on ml-100k: 0.132 with every word, 0.172 with words of 2+ movies).
        affinity_init: Initial affinity weight: on the deep score's scale (``1 / τ``), or the affinity, at most a
            few tenths apart between movies, starts too small to rank anything.
    """

    def __init__(
        self,
        vocabulary: Sequence[str] | None = None,
        idf: bool = False,
        popularity_min_count: int = 2,
        affinity_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.use_idf, self.popularity_min_count = idf, popularity_min_count
        self.affinity_weight = nn.Parameter(torch.full((2,), float(affinity_init)))  # [without ID, with ID]
        self.gate = nn.Parameter(torch.tensor([_SOFTPLUS_ONE, 0.0]))
        # m, c, μ, β of the module docstring: settings chosen on held-out movies, not trained weights (buffers);
        # m = NaN: not calibrated, movies without ID keep the trained popularity
        self.register_buffer("cold_map", torch.tensor([math.nan, 0.0, 0.0]))
        self.register_buffer("cold_popularity", torch.tensor(1.0))
        self.register_buffer("prior_intercept", torch.tensor(0.0))
        self.register_buffer("short_map", torch.tensor([0.0, 1.0, 0.0]))  # L, γ, λ: no change
        self.vocabulary: list[str] | None = None
        self._bag_cache: sparse.csr_matrix | None = None
        self._cached_texts: tuple[str, ...] | None = None
        if vocabulary is not None:
            self._build(list(vocabulary))

    def _build(self, vocabulary: list[str]) -> None:
        if len(set(vocabulary)) != len(vocabulary) or not vocabulary:
            raise ValueError(f"the wide vocabulary must be distinct, non-empty words, got {len(vocabulary)} words")
        self.vocabulary = vocabulary
        self._word_ids = {word: i for i, word in enumerate(vocabulary)}
        self.register_buffer("idf", torch.ones(len(vocabulary)))
        self.register_buffer("center", torch.zeros(len(vocabulary)))
        self.register_buffer("popular_words", torch.ones(len(vocabulary)))  # 1: the word carries popularity
        self.popularity = nn.Parameter(torch.zeros(len(vocabulary)))
        self.register_buffer("prior", torch.zeros(len(vocabulary)))  # the ridge's word weights, kept fixed

    @property
    def fitted(self) -> bool:
        """Whether the vocabulary is there."""
        return self.vocabulary is not None

    def fit(self, texts: Sequence[str], counts: Sequence[float] | None = None, l2: float = 1.0) -> None:
        """Fit the vocabulary and IDF on ``texts`` (the warm movies'); a fitted model is left as it is.

        Args:
            texts: The warm movies' texts.
            counts: Their training watches: the popularity weights start at the ridge regression of ``log(count)``
                on the bags (the content-popularity baseline; popularity is on the log scale of the biases), so
                training starts from what the words alone give rather than from nothing.
            l2: That ridge's penalty.
        """
        if self.fitted:
            return
        documents = [words_of(t) for t in texts]
        frequency: dict[str, int] = {}
        for words in documents:
            for word in words:
                frequency[word] = frequency.get(word, 0) + 1
        if not frequency:
            raise ValueError("the wide part needs words: every text given to fit is empty")
        self._build(sorted(frequency))
        df = torch.tensor([frequency[w] for w in self.vocabulary], dtype=torch.float32)
        if self.use_idf:  # scikit-learn's smoothed IDF
            self.idf.copy_(torch.log((1 + len(documents)) / (1 + df)) + 1)
        self.popular_words.copy_((df >= self.popularity_min_count).float())
        bags = self.bags(texts)
        # Without the centre, the affinity rewards words every movie has (ranking the ml-100k validation cold
        # movies by the profile alone: 0.184 uncentred, 0.255 centred).
        self.center.copy_(torch.from_numpy(np.asarray(bags.mean(axis=0), dtype=np.float32).ravel()))
        if counts is not None:
            from sklearn.linear_model import Ridge

            target = np.log(np.maximum(np.asarray(counts, dtype=np.float64), 1.0))
            ridge = Ridge(alpha=l2).fit(bags @ sparse.diags(self.popular_words.numpy()), target)
            with torch.no_grad():
                self.popularity.copy_(torch.as_tensor(ridge.coef_, dtype=torch.float32) * self.popular_words)
                self.prior.copy_(self.popularity)
                self.prior_intercept.fill_(float(ridge.intercept_))

    def require_fitted(self) -> list[str]:
        """The vocabulary; raises if :meth:`fit` was not called."""
        if self.vocabulary is None:
            raise RuntimeError("the wide part has no vocabulary yet: fit(texts) (the task does it from the data)")
        return self.vocabulary

    # ----- bags ---------------------------------------------------------------------------------------------

    def bags(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """``(n, V)`` float32 CSR: each text's words in the vocabulary, IDF-weighted, unit length (zero row for a
        text without known words)."""
        vocabulary_size = len(self.require_fitted())
        rows, cols = [], []
        for row, text in enumerate(texts):
            ids = [self._word_ids[w] for w in words_of(text) if w in self._word_ids]
            rows += [row] * len(ids)
            cols += ids
        values = self.idf.detach().cpu().numpy()[np.asarray(cols, dtype=np.int64)]
        matrix = sparse.csr_matrix((values, (rows, cols)), shape=(len(texts), vocabulary_size), dtype=np.float32)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        return sparse.diags(1.0 / np.maximum(norms, 1e-12)).astype(np.float32) @ matrix

    def cache_items(self, texts: Sequence[str]) -> None:
        """Compute every catalogue item's bag once (not saved: rebuilt from the texts)."""
        texts = tuple(texts)
        if self._cached_texts != texts:
            self._bag_cache, self._cached_texts = self.bags(texts).tocsr(), texts

    @property
    def has_catalogue(self) -> bool:
        """Whether :meth:`cache_items` has computed the catalogue's bags."""
        return self._bag_cache is not None

    def item_bags(self, item_ids: torch.Tensor) -> sparse.csr_matrix:
        """``(n, V)`` bags of catalogue items (:meth:`cache_items` first)."""
        if self._bag_cache is None:
            raise RuntimeError("the wide part has no catalogue bags: cache_items(texts) first")
        return self._bag_cache[item_ids.cpu().numpy()]

    def profiles(self, history: SparseBatch) -> torch.Tensor:
        """``(B, V)`` dense centred word profiles: the mean bag of each history's movies less the warm movies'
        mean bag."""
        lengths = history.lengths().cpu().numpy()
        values = history.values.cpu().numpy()
        rows = np.repeat(np.arange(len(lengths)), lengths)
        weights = (1.0 / np.maximum(lengths, 1))[rows].astype(np.float32)
        pooling = sparse.csr_matrix((weights, (rows, values)), shape=(len(lengths), self._bag_cache.shape[0]))
        profile = torch.from_numpy((pooling @ self._bag_cache).toarray()).to(self.affinity_weight.device)
        return profile - self.center

    # ----- scores -------------------------------------------------------------------------------------------

    def scale(self, lengths: torch.Tensor) -> torch.Tensor:
        """``(B,)`` weight of the personal part for histories of ``lengths`` watches (in evaluation, times ``γ``
        for a short history)."""
        scale = F.softplus(self.gate[0] + self.gate[1] * torch.log1p(lengths.to(self.gate.dtype)))
        if self.training:
            return scale
        return scale * torch.where(lengths.to(scale.device) <= self.short_map[0], self.short_map[1], 1.0)

    def short_popularity(self, lengths: torch.Tensor) -> torch.Tensor:
        """``(B,)`` weight ``λ`` of the movies' log counts for histories of ``lengths`` watches: ``λ`` for a short
        history in evaluation, else 0."""
        lengths = lengths.to(self.short_map.device)
        if self.training:
            return torch.zeros(len(lengths), device=lengths.device)
        return torch.where(lengths <= self.short_map[0], self.short_map[2], 0.0)

    def set_catalogue_size(self, num_items: int) -> None:
        """Make room for the catalogue's log watch counts (:attr:`item_log_counts`, set by the task from its
        data and saved with the model)."""
        self.register_buffer("item_log_counts", torch.zeros(num_items))

    def item_popularity(
        self, item_ids: torch.Tensor | None, keep: torch.Tensor, bags: sparse.csr_matrix
    ) -> torch.Tensor:
        """``(n,)`` log watch counts of ``n`` movies: the catalogue's (``item_ids``) for those with their ID
        (``keep``), the predicted one for the others (the calibrated prior, or the ridge prior before)."""
        prior = self._predicted_log_counts(_torch_sparse(bags, self.prior.device))
        keep = keep.to(prior.device)
        if item_ids is None:
            if bool(keep.any()):
                raise ValueError("movies placed with their ID need their catalogue IDs (item_ids)")
            return prior
        return torch.where(keep, self.item_log_counts[item_ids.to(prior.device)], prior)

    def item_weights(self, keep: torch.Tensor) -> torch.Tensor:
        """``(n,)`` affinity weight of each item: with (``keep``) or without its ID part."""
        return self.affinity_weight[keep.long()]

    def popularity_of(self, bags: sparse.csr_matrix, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``(n,)`` popularity of ``n`` bags: the trained word weights' (differentiable), or in evaluation once
        calibrated, for the items placed without their ID (``keep``: ``(n,)`` bool; ``None``: all without), the
        calibrated prior's (the module docstring)."""
        matrix = _torch_sparse(bags, self.popularity.device)
        popularity = torch.sparse.mm(matrix, (self.popularity * self.popular_words).unsqueeze(1)).squeeze(1)
        if self.training or not self.calibrated:
            return popularity
        slope, level, _ = self.cold_map
        cold = slope * self._predicted_log_counts(matrix) + level
        return cold if keep is None else torch.where(keep.to(popularity.device), popularity, cold)

    def _predicted_log_counts(self, matrix: torch.Tensor) -> torch.Tensor:
        """``(n,)`` log watch counts of ``n`` bags (a sparse ``(n, V)`` tensor) by the ridge prior, drawn toward the
        warm movies' mean ``μ + β · (r_j - μ)`` once calibrated."""
        prior = torch.sparse.mm(matrix, self.prior.unsqueeze(1)).squeeze(1) + self.prior_intercept
        if not self.calibrated:
            return prior
        mean = self.cold_map[2]
        return mean + self.cold_popularity * (prior - mean)

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`calibrate` has set the map of movies without ID."""
        return not bool(torch.isnan(self.cold_map[0]))

    @torch.no_grad()
    def calibrate(self, log_counts: torch.Tensor, biases: torch.Tensor, beta: float = 1.0) -> None:
        """Set the map of movies without ID (the module docstring): ``m, c`` the least-squares line from the warm
        movies' log watch counts (``(n,)``) to their learned biases (``(n,)``), ``μ`` their mean log count, and
        ``β``. Needs the prior (a fit with counts) and two distinct counts."""
        x, y = log_counts.double().cpu(), biases.double().cpu()
        if x.numel() < 2 or float(x.std()) == 0.0:
            raise ValueError(f"calibrating needs warm movies with two distinct counts, got {x.tolist()[:5]}")
        if not bool(self.prior.any()):
            raise ValueError("the wide part has no popularity prior: fit it with the movies' counts")
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
        self.cold_map.copy_(torch.tensor([slope, float(y.mean() - slope * x.mean()), float(x.mean())]))
        self.cold_popularity.fill_(beta)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # folders saved before the calibration have no map: not calibrated, the popularity as trained
        state_dict.setdefault(prefix + "cold_map", torch.tensor([math.nan, 0.0, 0.0]))
        state_dict.setdefault(prefix + "cold_popularity", torch.tensor(1.0))
        state_dict.setdefault(prefix + "prior_intercept", torch.tensor(0.0))
        state_dict.setdefault(prefix + "short_map", torch.tensor([0.0, 1.0, 0.0]))
        if hasattr(self, "item_log_counts"):
            state_dict.setdefault(prefix + "item_log_counts", torch.zeros_like(self.item_log_counts))
        if prefix + "popularity" in state_dict:
            state_dict.setdefault(prefix + "prior", torch.zeros_like(state_dict[prefix + "popularity"]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def affinity(self, profiles: torch.Tensor, bags: sparse.csr_matrix) -> torch.Tensor:
        """``(B, n)`` raw affinity ``(p_u - c) · x_j`` of ``B`` centred profiles and ``n`` bags (unweighted)."""
        return torch.sparse.mm(_torch_sparse(bags, profiles.device), profiles.T).T


def _torch_sparse(matrix: sparse.csr_matrix, device: torch.device) -> torch.Tensor:
    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=False).to(device)
