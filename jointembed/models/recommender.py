"""A retrieval recommender: the bag of items a user watched → a user vector → a score for every item.

The architecture of the YouTube candidate-generation network (Covington et al. 2016): the history bag is
embedded and pooled, optional user features (a bag of categorical IDs, dense values) are concatenated, an MLP
tower maps the result to a user vector ``u``, and item ``j`` scores ``u · W[j] + b[j]``, where ``W`` is the output
item table. ``W[j]`` is item ``j``'s point in space, used for "similar items" by cosine similarity.

A trained recommender leaves its run as a pretrained folder (:meth:`Recommender.save_pretrained`): its
configuration, weights, the raw key of every item (e.g. MovieLens movie IDs), their titles, and how many latest
watches feed the user-feature bag. :class:`PretrainedRecommender` loads one and answers in raw keys and titles.
"""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.errors import CheckpointError
from jointembed.metrics.ranking import budget_rows, chunked_top_k
from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import Combiner, SparseEmbedding, suggest_embedding_dim
from jointembed.pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_weights,
    read_config,
    resolve_folder,
    state_for_saving,
    write_folder,
)
from jointembed.sparse import SparseBatch

__all__ = [
    "Recommender",
    "Recommendations",
    "PretrainedRecommender",
    "ItemScore",
    "UnknownItemError",
    "recent_watches",
    "FORMAT",
    "VERSION",
]

FORMAT = "jointembed.recommender"
VERSION = 1
SUPPORTED_VERSIONS = (1,)

ItemKey = int | str


def recent_watches(history: SparseBatch, recent_items: int) -> SparseBatch:
    """The user-feature bag of the ``recent_items`` latest watches of each time-ordered history bag.

    The one definition of that bag: the data modules add it to every batch (``recent_items``) and
    :class:`PretrainedRecommender` builds it at inference, so training and serving cannot drift apart.

    Args:
        history: ``B`` bags of item IDs, oldest first.
        recent_items: Watches kept per bag (>= 1); a shorter bag is kept whole.

    Returns:
        ``B`` bags, the last ``recent_items`` IDs of each.
    """
    return history.tail(recent_items)


class Recommendations(NamedTuple):
    """Top-k items per query, best first.

    Attributes:
        ids: ``(B, k)`` int64 item IDs; ``-1`` pads a row when fewer than ``k`` items could be recommended
            (e.g. the user has seen all but a few).
        scores: ``(B, k)`` float scores (logits for users, cosine similarities for items); ``-inf`` where
            ``ids`` is ``-1``.
        titles: Per query, the titles of the recommended items (padding skipped), or ``None`` when no titles
            were given.
    """

    ids: torch.Tensor
    scores: torch.Tensor
    titles: list[list[str]] | None


class Recommender(nn.Module):
    """History bag (+ optional user features) → MLP tower → user vector → a logit for every item.

    Args:
        num_items: Catalogue size N; item IDs are ``0..N-1``.
        embedding_dim: Width d of the item tables and of the user vector; ``None`` uses
            :func:`~jointembed.nn.sparse_embedding.suggest_embedding_dim` (32 for a million items).
        hidden_sizes: Hidden layer widths of the tower; a final linear layer projects to d.
        combiner: How a history bag's embeddings are pooled: ``sum``, ``mean`` or ``sqrtn``.
        dropout: Dropout after each hidden layer.
        sparse: Give the item tables sparse gradients (only the rows a batch touches), for sparse optimisers.
        num_user_features: Size of an extra table of categorical user features (a bag per user, e.g. country
            and age bucket IDs), or 0 for none.
        num_dense_features: Number of dense user features, or 0 for none.
        tie_output_embeddings: Score items with the input (history) table instead of a separate output table.
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int | None = None,
        hidden_sizes: Sequence[int] = (64,),
        combiner: Combiner = "sqrtn",
        dropout: float = 0.0,
        sparse: bool = True,
        num_user_features: int = 0,
        num_dense_features: int = 0,
        tie_output_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if num_user_features < 0 or num_dense_features < 0:
            raise ValueError(
                f"feature counts must be >= 0, got num_user_features={num_user_features}, "
                f"num_dense_features={num_dense_features}"
            )
        dim = suggest_embedding_dim(num_items) if embedding_dim is None else embedding_dim
        if dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {dim}")
        self.config: dict[str, Any] = {
            "num_items": num_items,
            "embedding_dim": dim,
            "hidden_sizes": list(hidden_sizes),
            "combiner": combiner,
            "dropout": dropout,
            "sparse": sparse,
            "num_user_features": num_user_features,
            "num_dense_features": num_dense_features,
            "tie_output_embeddings": tie_output_embeddings,
        }
        self.num_items = num_items
        self.embedding_dim = dim
        self.sparse = sparse
        self.num_dense_features = num_dense_features
        self.history_embedding = SparseEmbedding(num_items, dim, combiner=combiner, sparse=sparse)
        self.user_feature_embedding = (
            SparseEmbedding(num_user_features, combiner=combiner, sparse=sparse) if num_user_features else None
        )
        width = dim + num_dense_features
        width += 0 if self.user_feature_embedding is None else self.user_feature_embedding.embedding_dim
        self.tower = MLP(width, hidden_sizes, out_features=dim, dropout=dropout)
        self.output_weight = None if tie_output_embeddings else nn.Parameter(torch.randn(num_items, dim) * dim**-0.5)
        # (N, 1) rather than (N,): a sparse gradient cannot flow back through the reshape to 1-D.
        self.output_bias = nn.Parameter(torch.zeros(num_items, 1))

    @property
    def item_table(self) -> torch.Tensor:
        """``(N, d)`` output item table (the parameter itself; the input table when tied)."""
        return self.history_embedding.weight if self.output_weight is None else self.output_weight

    @property
    def item_bias(self) -> torch.Tensor:
        """``(N, 1)`` per-item bias (the parameter itself)."""
        return self.output_bias

    @property
    def input_embeddings(self) -> torch.Tensor:
        """``(N, d)`` input table that embeds the history bag (the parameter itself)."""
        return self.history_embedding.weight

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The lookup tables (history, user features, output items, item bias), each once: the parameters whose
        gradients are sparse when ``sparse`` is set (the output table's only under a sampled or in-batch loss)."""
        tables = [self.history_embedding.weight, self.output_bias]
        if self.user_feature_embedding is not None:
            tables.append(self.user_feature_embedding.weight)
        if self.output_weight is not None:
            tables.append(self.output_weight)
        return tables

    def item_embeddings(self) -> torch.Tensor:
        """``(N, d)`` each item's point in space: the output table, detached (row ``i`` is item ``i``)."""
        return self.item_table.detach()

    def user_vectors(
        self, history: SparseBatch, user_features: SparseBatch | None = None, dense: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, d)`` user vectors.

        Args:
            history: ``B`` bags of watched item IDs.
            user_features: ``B`` bags of categorical user-feature IDs; required iff ``num_user_features > 0``.
            dense: ``(B, num_dense_features)`` dense user features; required iff ``num_dense_features > 0``.
        """
        size = len(history)
        parts = [self.history_embedding(history)]
        if (user_features is None) != (self.user_feature_embedding is None):
            raise ValueError(_mismatch("user_features", "num_user_features", user_features is not None))
        if user_features is not None:
            if len(user_features) != size:
                raise ValueError(f"user_features has {len(user_features)} bags but history has {size}")
            parts.append(self.user_feature_embedding(user_features))
        if (dense is None) != (self.num_dense_features == 0):
            raise ValueError(_mismatch("dense", "num_dense_features", dense is not None))
        if dense is not None:
            if dense.shape != (size, self.num_dense_features):
                raise ValueError(f"dense must have shape ({size}, {self.num_dense_features}), got {tuple(dense.shape)}")
            parts.append(dense.to(parts[0].dtype))
        return self.tower(torch.cat(parts, dim=1))

    def forward(
        self, history: SparseBatch, user_features: SparseBatch | None = None, dense: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, d)`` user vectors; see :meth:`user_vectors`."""
        return self.user_vectors(history, user_features, dense)

    def logits(self, user_vectors: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``u · W[j] + b[j]``.

        Args:
            user_vectors: ``(B, d)``.
            item_ids: ``(M,)`` item IDs to score, or ``None`` for the whole catalogue.

        Returns:
            ``(B, N)``, or ``(B, M)`` for the given items.
        """
        if item_ids is None:
            return torch.addmm(self.output_bias.T, user_vectors, self.item_table.T)
        rows = F.embedding(item_ids, self.item_table, sparse=self.sparse)
        bias = F.embedding(item_ids, self.output_bias, sparse=self.sparse).squeeze(1)
        return user_vectors @ rows.T + bias

    def top_k(
        self, user_vectors: torch.Tensor, k: int, exclude: SparseBatch | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items by logit for each user vector, computed a few users at a time.

        Args:
            user_vectors: ``(B, d)``.
            k: Items per user, ``1 <= k <= N``.
            exclude: ``B`` bags of item IDs never to return (scored ``-inf``), e.g. the history; or ``None``.

        Returns:
            ``ids (B, k)`` int64 and ``scores (B, k)``, best first; ids ``-1`` / scores ``-inf`` pad a row with
            fewer than ``k`` eligible items.
        """
        _check_k(k, self.num_items)
        scores_of = lambda rows: self.logits(user_vectors[rows])  # noqa: E731
        return chunked_top_k(scores_of, len(user_vectors), k, exclude, chunk_size=budget_rows(self.num_items))

    @torch.no_grad()
    def recommend(
        self,
        histories: SparseBatch,
        k: int,
        exclude_seen: bool = True,
        item_titles: Sequence[str] | None = None,
        user_features: SparseBatch | None = None,
        dense: torch.Tensor | None = None,
    ) -> Recommendations:
        """Top-``k`` items for each user, in evaluation mode (no dropout).

        A user with an empty history is refused rather than given the same list as every other empty user:
        the model never saw an empty history in training, so its answer there means nothing; serve such users
        from a popularity baseline instead.

        Args:
            histories: ``B`` bags of watched item IDs, none empty.
            k: Items per user, ``1 <= k <= N``.
            exclude_seen: Never recommend an item in the user's history.
            item_titles: ``N`` titles (e.g. ``Interactions.item_titles``) to attach, or ``None``.
            user_features: As in :meth:`user_vectors`.
            dense: As in :meth:`user_vectors`.

        Raises:
            ValueError: An empty history ("user at position i has no history"), ``k`` out of ``[1, N]``, or
                titles of the wrong length.
        """
        if item_titles is not None and len(item_titles) != self.num_items:
            raise ValueError(f"item_titles has {len(item_titles)} entries but the model has {self.num_items} items")
        empty = (histories.lengths() == 0).nonzero()
        if len(empty):
            raise ValueError(
                f"user at position {int(empty[0])} has no history: the model needs at least one watched item "
                "(serve new users from a popularity baseline)"
            )
        _check_k(k, self.num_items)
        was_training = self.training
        self.eval()
        try:
            users = self.user_vectors(histories, user_features, dense)
            ids, scores = self.top_k(users, k, histories if exclude_seen else None)
        finally:
            self.train(was_training)
        return Recommendations(ids, scores, _titles(ids, item_titles))

    @torch.no_grad()
    def similar_items(
        self, item_ids: torch.Tensor | Sequence[int], k: int, item_titles: Sequence[str] | None = None
    ) -> Recommendations:
        """The ``k`` items nearest to each query item by cosine similarity of the output table (itself excluded).

        Args:
            item_ids: ``(M,)`` query item IDs.
            k: Neighbours per item, ``1 <= k <= N``; with ``k = N`` the last slot is padding (the item itself).
            item_titles: ``N`` titles to attach, or ``None``.

        Returns:
            :class:`Recommendations` with ``(M, k)`` ids and cosine similarities.
        """
        _check_k(k, self.num_items)
        queries = torch.as_tensor(item_ids, dtype=torch.long, device=self.item_table.device).flatten()
        if queries.numel() and (int(queries.min()) < 0 or int(queries.max()) >= self.num_items):
            raise ValueError(f"item IDs must be in [0, {self.num_items}), got {queries.tolist()}")
        table = self.item_table.detach()
        inv_norm = 1.0 / table.norm(dim=1).clamp_min(1e-12)
        query_vectors = table[queries] * inv_norm[queries, None]
        itself = SparseBatch(queries, torch.arange(len(queries), device=queries.device))
        scores_of = lambda rows: (query_vectors[rows] @ table.T) * inv_norm  # noqa: E731
        ids, scores = chunked_top_k(scores_of, len(queries), k, itself, chunk_size=budget_rows(self.num_items))
        return Recommendations(ids, scores, _titles(ids, item_titles))

    def save_pretrained(
        self,
        folder: str | os.PathLike,
        item_keys: Sequence[ItemKey] | None = None,
        item_titles: Sequence[str] | None = None,
        card: str | None = None,
        recent_items: int = 0,
    ) -> Path:
        """Write a pretrained folder (atomically; see :func:`jointembed.pretrained.write_folder`).

        ``config.json`` holds ``{"format": "jointembed.recommender", "version": 1, "model": <constructor
        arguments>, "recent_items", "item_keys", "item_titles"}``; ``model.safetensors`` the weights.

        Args:
            folder: Destination; an existing folder is replaced only once the new one is complete.
            item_keys: ``N`` raw item keys in ID order (``Interactions.item_vocab.values``, e.g. MovieLens movie
                IDs), each an ``int`` or a ``str``, all distinct; ``None`` keys the items by their IDs.
            item_titles: ``N`` titles in ID order (``Interactions.item_titles``), or ``None``.
            card: ``README.md`` text (see :func:`jointembed.pretrained.model_card`), or ``None``.
            recent_items: How many latest watches the data module put in the user-feature bag
                (``InteractionsDataModule.recent_items``), so inference builds the same inputs; 0 for none.

        Returns:
            The folder.

        Raises:
            ValueError: Keys or titles of the wrong length or type, repeated keys, or ``recent_items > 0`` on a
                model whose ``num_user_features`` is not the catalogue size.
        """
        config = {
            "format": FORMAT,
            "version": VERSION,
            "model": self.config,
            "recent_items": recent_items,
            "item_keys": None if item_keys is None else [_plain_key(key) for key in item_keys],
            "item_titles": None if item_titles is None else [str(title) for title in item_titles],
        }
        _check_catalogue(config)
        return write_folder(folder, config, state_for_saving(self), card=card)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> Recommender:
        """Load a folder written by :meth:`save_pretrained` (a local path or a Hugging Face hub id), in eval mode.

        Use :class:`PretrainedRecommender` to also get the item keys and titles.

        Args:
            path: The folder, or ``"owner/name"`` on the hub.
            strict: Require the weights' keys to match the model exactly (otherwise warn and load the common ones).
            map_location: Device of the returned model.

        Raises:
            CheckpointError: A missing or unreadable file, another format or version, a config field that does
                not fit (named), or weights that do not match the model.
        """
        return _load_pretrained(path, strict, map_location)[0]


def _mismatch(argument: str, setting: str, given: bool) -> str:
    if given:
        return f"{argument} was given but the model was built with {setting}=0"
    return f"the model was built with {setting} > 0: pass {argument}"


def _check_k(k: int, num_items: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_items:
        raise ValueError(f"k must be an integer in [1, {num_items}] (the catalogue size), got {k!r}")


def _titles(ids: torch.Tensor, item_titles: Sequence[str] | None) -> list[list[str]] | None:
    if item_titles is None:
        return None
    return [[item_titles[j] for j in row if j >= 0] for row in ids.tolist()]


class ItemScore(NamedTuple):
    """One recommended item.

    Attributes:
        key: The item's raw key (e.g. a MovieLens movie ID), or its ID when the model has no keys.
        title: Its title, ``""`` when unknown.
        score: Its logit (recommendations) or cosine similarity (similar items).
    """

    key: ItemKey
    title: str
    score: float


class UnknownItemError(KeyError):
    """A raw item key or title that is not in the model's catalogue; the message names it."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class PretrainedRecommender:
    """A trained :class:`Recommender` with its catalogue, answering in raw item keys (e.g. MovieLens movie IDs)
    and titles: ``PretrainedRecommender.from_pretrained(folder).recommend([50, 181, 1], k=10)``.

    A history is a list of raw keys (or titles) in watch order, oldest first: with ``recent_items > 0`` its last
    ``recent_items`` watches also form the user-feature bag, exactly as the data module built it in training
    (:func:`recent_watches`). A key is looked up as given, then as the other of ``int``/``str`` (``"50"`` finds
    movie 50), then as a title; a title shared by several items is refused.

    Args:
        model: The trained recommender (put in eval mode).
        item_keys: ``N`` distinct raw keys in ID order, or ``None`` to key items by their IDs.
        item_titles: ``N`` titles in ID order, or ``None``.
        recent_items: Latest watches in the user-feature bag (0: the model takes no user features).
    """

    def __init__(
        self,
        model: Recommender,
        item_keys: Sequence[ItemKey] | None = None,
        item_titles: Sequence[str] | None = None,
        recent_items: int = 0,
    ) -> None:
        num_items = model.num_items
        keys = list(range(num_items)) if item_keys is None else [_plain_key(key) for key in item_keys]
        titles = None if item_titles is None else list(item_titles)
        catalogue = {"model": model.config, "recent_items": recent_items, "item_keys": keys, "item_titles": titles}
        _check_catalogue(catalogue)
        self.model = model.eval()
        self.item_keys: list[ItemKey] = keys
        self.item_titles: list[str] | None = titles
        self.recent_items = recent_items
        self._ids = {key: i for i, key in enumerate(keys)}
        self._titles: dict[str, list[int]] = {}
        for i, title in enumerate(self.item_titles or []):
            self._titles.setdefault(title, []).append(i)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> PretrainedRecommender:
        """Load a folder written by :meth:`Recommender.save_pretrained` (or ``jointembed fit``'s
        ``<log_dir>/pretrained``); arguments and errors as :meth:`Recommender.from_pretrained`."""
        model, config = _load_pretrained(path, strict, map_location)
        return cls(model, config["item_keys"], config["item_titles"], config["recent_items"])

    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None) -> Path:
        """Write the model and its catalogue as a pretrained folder (see :meth:`Recommender.save_pretrained`)."""
        keys = None if self.item_keys == list(range(self.model.num_items)) else self.item_keys
        return self.model.save_pretrained(folder, keys, self.item_titles, card, recent_items=self.recent_items)

    def item_id(self, key: ItemKey) -> int:
        """The item ID of a raw key or a title.

        Raises:
            UnknownItemError: No item has that key or title, or several items share that title.
        """
        try:
            key = _plain_key(key)
        except ValueError as error:
            raise UnknownItemError(f"{error} (a raw key or a title)") from None
        found = self._ids.get(key)
        if found is None and isinstance(key, int):
            found = self._ids.get(str(key))
        if found is None and isinstance(key, str) and key.strip().lstrip("-").isdigit():
            found = self._ids.get(int(key))
        if found is not None:
            return found
        by_title = self._titles.get(key, []) if isinstance(key, str) else []
        if len(by_title) > 1:
            keys = [self.item_keys[i] for i in by_title]
            raise UnknownItemError(f"title {key!r} names {len(by_title)} items (keys {keys}): pass one of the keys")
        if by_title:
            return by_title[0]
        examples = ", ".join(repr(k) for k in self.item_keys[:3])
        raise UnknownItemError(
            f"item {key!r} is neither a key nor a title of this model's {self.model.num_items} items "
            f"(keys look like {examples})"
        )

    def _describe(self, ids: torch.Tensor, scores: torch.Tensor) -> list[list[ItemScore]]:
        titles = self.item_titles or [""] * self.model.num_items
        rows = zip(ids.tolist(), scores.tolist(), strict=True)
        return [
            [ItemScore(self.item_keys[j], titles[j], s) for j, s in zip(*row, strict=True) if j >= 0] for row in rows
        ]

    def _history_ids(self, histories: list[Sequence[ItemKey]], unknown: str) -> list[list[int]]:
        rows = []
        for user, history in enumerate(histories):
            row = []
            for key in history:
                try:
                    row.append(self.item_id(key))
                except UnknownItemError as error:
                    if unknown == "error":
                        raise UnknownItemError(f"history {user}: {error}") from None
                    warnings.warn(f"history {user}: skipped {error}", stacklevel=3)
            rows.append(row)
        return rows

    def recommend(
        self,
        history_keys: Sequence[ItemKey] | Sequence[Sequence[ItemKey]],
        k: int = 10,
        exclude_seen: bool = True,
        unknown: Literal["error", "skip"] = "error",
    ) -> list[ItemScore] | list[list[ItemScore]]:
        """The top ``k`` items for one history or for each of several.

        Args:
            history_keys: One history (a list of raw keys or titles, oldest first) or a list of histories.
            k: Items per history, ``1 <= k <= N``; fewer come back when fewer are left unwatched.
            exclude_seen: Never recommend a watched item.
            unknown: ``"error"`` raises on a key that is neither a key nor a title; ``"skip"`` leaves it out of
                the history with a warning naming it.

        Returns:
            For one history a list of :class:`ItemScore`, best first; for several, one such list each.

        Raises:
            UnknownItemError: An unknown or ambiguous key (with ``unknown="error"``); the message names it and
                its history.
            ValueError: An empty history, ``k`` out of range, or a model that needs user features a list of
                watches cannot supply (dense features, or categorical ones other than the recent watches).
        """
        if unknown not in ("error", "skip"):
            raise ValueError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        config = self.model.config
        if config["num_dense_features"] or (config["num_user_features"] and not self.recent_items):
            raise ValueError(
                "this model takes user features beyond the watch history (dense features, or a categorical bag "
                "other than the recent watches): call Recommender.recommend with user_features= and dense="
            )
        many = len(history_keys) > 0 and all(_is_history(h) for h in history_keys)
        histories = list(history_keys) if many else [history_keys]
        history = SparseBatch.from_lists(self._history_ids(histories, unknown))
        history = history.to(self.model.item_table.device)
        recent = recent_watches(history, self.recent_items) if self.recent_items else None
        recs = self.model.recommend(history, k, exclude_seen, user_features=recent)
        results = self._describe(recs.ids, recs.scores)
        return results if many else results[0]

    def similar_items(self, key: ItemKey, k: int = 10) -> list[ItemScore]:
        """The ``k`` items nearest to ``key`` (a raw key or title) by cosine similarity, itself excluded.

        Raises:
            UnknownItemError: An unknown or ambiguous key.
        """
        recs = self.model.similar_items([self.item_id(key)], k)
        return self._describe(recs.ids, recs.scores)[0]


def _is_history(value: Any) -> bool:
    """A list of keys (a history), as opposed to one key (a str is a key, not a list of letters)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _plain_key(key: Any) -> ItemKey:
    """A raw item key as a JSON-safe ``int`` or ``str`` (numpy and torch integers become Python ints).

    Raises:
        ValueError: ``key`` is neither a string nor an integer (a bool is refused).
    """
    if isinstance(key, str):
        return str(key)
    try:
        if not isinstance(key, bool):
            return operator.index(key)
    except TypeError:
        pass
    raise ValueError(f"item keys must be ints or strs, got {key!r} ({type(key).__name__})")


def _check_catalogue(config: dict[str, Any]) -> None:
    """Check the catalogue fields of a pretrained config against its ``model`` field.

    Raises:
        ValueError: A field of the wrong type or length, repeated keys, or an impossible ``recent_items``.
    """
    num_items = config["model"]["num_items"]
    for field in ("item_keys", "item_titles"):
        value = config[field]
        if value is not None and (not isinstance(value, list) or len(value) != num_items):
            size = len(value) if isinstance(value, list) else type(value).__name__
            raise ValueError(f"field {field!r} must list the model's {num_items} items, got {size}")
    keys = config["item_keys"]
    if keys is not None:
        if any(isinstance(key, bool) or not isinstance(key, (int, str)) for key in keys):
            raise ValueError("field 'item_keys' must hold ints and strs only")
        if len(set(keys)) != len(keys):
            seen: set[ItemKey] = set()
            repeated = next(key for key in keys if key in seen or seen.add(key))
            raise ValueError(f"field 'item_keys' repeats the key {repeated!r}; keys must be distinct")
    if config["item_titles"] is not None and not all(isinstance(t, str) for t in config["item_titles"]):
        raise ValueError("field 'item_titles' must hold strs only")
    recent = config["recent_items"]
    if isinstance(recent, bool) or not isinstance(recent, int) or recent < 0:
        raise ValueError(f"field 'recent_items' must be an integer >= 0, got {recent!r}")
    if recent and config["model"]["num_user_features"] != num_items:
        raise ValueError(
            f"recent_items={recent} feeds the latest watches to the user-feature table, so the model needs "
            f"num_user_features={num_items} (the catalogue size), got {config['model']['num_user_features']}"
        )


def _load_pretrained(
    path: str | os.PathLike, strict: bool, map_location: str | torch.device
) -> tuple[Recommender, dict[str, Any]]:
    """Read, check and build a pretrained recommender folder: ``(model in eval mode, its config)``."""
    folder = resolve_folder(path)
    config = read_config(folder, FORMAT, SUPPORTED_VERSIONS)
    where = folder / CONFIG_NAME
    missing = [f for f in ("model", "recent_items", "item_keys", "item_titles") if f not in config]
    if missing or not isinstance(config["model"], dict):
        raise CheckpointError(f"{where}: missing fields {missing} (or 'model' is not an object)")
    try:
        model = Recommender(**config["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: field 'model' does not fit Recommender's arguments: {error}") from error
    try:
        _check_catalogue(config)
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from error
    load_weights(model, folder / WEIGHTS_NAME, strict=strict, map_location=map_location)
    return model.to(map_location).eval(), config
