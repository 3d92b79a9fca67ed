"""A retrieval recommender: the bag of items a user watched → a user vector → a score for every item.

The architecture of the YouTube candidate-generation network (Covington et al. 2016): the history bag is
embedded and pooled, optional user features (a bag of categorical IDs, dense values) are concatenated, an MLP
tower maps the result to a user vector ``u``, and item ``j`` scores ``u · W[j] + b[j]``, where ``W`` is the output
item table. ``W[j]`` is item ``j``'s point in space, used for "similar items" by cosine similarity.

A trained recommender leaves its run as a pretrained folder (:meth:`Recommender.save_pretrained`): its
configuration (at its final sizes), weights, the raw key of every item (e.g. MovieLens movie IDs), their titles,
and how many latest watches feed the user-feature bag.
:class:`~jointembed.models.pretrained_recommender.PretrainedRecommender` loads one and answers in raw keys and
titles.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.metrics.ranking import budget_rows, chunked_top_k
from jointembed.models.user_encoders import check_user_encoder, create_user_encoder
from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import Combiner, SparseEmbedding, suggest_embedding_dim
from jointembed.search.backends import exact_top_k
from jointembed.sparse import SparseBatch

__all__ = ["Recommender", "Recommendations", "recent_watches"]

# Names that moved out of this module, still importable from it (model cards of earlier runs use this path).
_MOVED = {
    "PretrainedRecommender": "jointembed.models.pretrained_recommender",
    "ItemScore": "jointembed.models.pretrained_recommender",
    "FORMAT": "jointembed.models.pretrained_recommender",
    "VERSION": "jointembed.models.pretrained_recommender",
    "UnknownItemError": "jointembed.errors",
}

ItemKey = int | str


def recent_watches(history: SparseBatch, recent_items: int) -> SparseBatch:
    """The user-feature bag of the ``recent_items`` latest watches of each time-ordered history bag.

    The one definition of that bag: the data modules add it to every batch (``recent_items``) and
    :class:`~jointembed.models.pretrained_recommender.PretrainedRecommender` builds it at inference, so
    training and serving cannot drift apart.

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

    The two sizes that belong to the data may be left to it: with ``num_items=None`` (``null`` in a recipe) or
    ``num_user_features=None`` the model has no tables yet, and
    :meth:`RecommendationTask.bind_data <jointembed.tasks.recommendation.RecommendationTask.bind_data>` creates
    them at the data module's sizes before the run (or call :meth:`set_sizes`). A size given here is checked
    against the data instead. Either way the saved configuration holds the final sizes.

    Args:
        num_items: Catalogue size N (item IDs are ``0..N-1``), or ``None`` for the data's.
        embedding_dim: Width d of the item tables and of the user vector; ``None`` uses
            :func:`~jointembed.nn.sparse_embedding.suggest_embedding_dim` of the final N (32 for a million items).
        hidden_sizes: Hidden layer widths of the tower; a final linear layer projects to d.
        combiner: How a history bag's embeddings are pooled: ``sum``, ``mean`` or ``sqrtn``.
        dropout: Dropout after each hidden layer.
        sparse: Give the item tables sparse gradients (only the rows a batch touches), for sparse optimisers.
        num_user_features: Size of an extra table of categorical user features (a bag per user, e.g. country
            and age bucket IDs), 0 for none, or ``None`` for the data's (for an
            :class:`~jointembed.data.recommendation.InteractionsDataModule`: the catalogue size when it adds the
            recent-watches bag, ``recent_items > 0``, else 0).
        num_dense_features: Number of dense user features, or 0 for none.
        tie_output_embeddings: Score items with the input (history) table instead of a separate output table.
        user_encoder: Registered name of how the history becomes a vector
            (:mod:`jointembed.models.user_encoders`): ``bag`` (pooled by ``combiner``, order ignored), ``sasrec``
            (self-attention over the ordered latest items) or ``gru``.
        user_encoder_config: The user encoder's own arguments, e.g. ``{"max_length": 50, "num_layers": 2}`` (its
            width is ``embedding_dim``); the saved configuration holds all of them, defaults included.
    """

    def __init__(
        self,
        num_items: int | None = None,
        embedding_dim: int | None = None,
        hidden_sizes: Sequence[int] = (64,),
        combiner: Combiner = "sqrtn",
        dropout: float = 0.0,
        sparse: bool = True,
        num_user_features: int | None = 0,
        num_dense_features: int = 0,
        tie_output_embeddings: bool = False,
        user_encoder: str = "bag",
        user_encoder_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(num_items, num_user_features)
        check_user_encoder(user_encoder, user_encoder_config)
        if num_dense_features < 0:
            raise ValueError(f"num_dense_features must be >= 0, got {num_dense_features}")
        if embedding_dim is not None and embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        # None entries are filled by set_sizes: the config (and so a saved folder) ends up with the final sizes.
        self.config: dict[str, Any] = {
            "num_items": num_items,
            "embedding_dim": embedding_dim,
            "hidden_sizes": list(hidden_sizes),
            "combiner": combiner,
            "dropout": dropout,
            "sparse": sparse,
            "num_user_features": num_user_features,
            "num_dense_features": num_dense_features,
            "tie_output_embeddings": tie_output_embeddings,
            "user_encoder": user_encoder,
            "user_encoder_config": dict(user_encoder_config or {}),
        }
        self.num_items: int | None = None  # set with the tables
        self.embedding_dim: int | None = None
        self.sparse = sparse
        self.num_dense_features = num_dense_features
        if num_items is not None and num_user_features is not None:
            self._build(num_items, num_user_features)

    @property
    def sized(self) -> bool:
        """Whether the tables exist (sizes given to the constructor, or by :meth:`set_sizes`)."""
        return self.num_items is not None

    def set_sizes(self, num_items: int, num_user_features: int) -> None:
        """Create the tables at the data's sizes, filling the sizes the constructor left to the data (``None``).

        Idempotent: on a sized model it only checks the sizes. Parameters are drawn in the same order as when
        the sizes are given to the constructor, so a seeded run starts from the same weights either way.

        Args:
            num_items: The data's catalogue size.
            num_user_features: The size of the data's categorical user-feature table (0 for none).

        Raises:
            ValueError: A size that disagrees with the one the model was built with (both named), or out of range.
        """
        for name, value in (("num_items", num_items), ("num_user_features", num_user_features)):
            built = self.config[name]
            if built is not None and built != value:
                raise ValueError(f"the model was built with {name}={built} but the data has {name}={value}")
        if not self.sized:
            self._build(num_items, num_user_features)

    def _build(self, num_items: int, num_user_features: int) -> None:
        _check_sizes(num_items, num_user_features)
        config = self.config
        dim = suggest_embedding_dim(num_items) if config["embedding_dim"] is None else config["embedding_dim"]
        combiner, sparse = config["combiner"], config["sparse"]
        self.history_embedding = SparseEmbedding(num_items, dim, combiner=combiner, sparse=sparse)
        self.user_feature_embedding = (
            SparseEmbedding(num_user_features, combiner=combiner, sparse=sparse) if num_user_features else None
        )
        width = dim + self.num_dense_features
        width += 0 if self.user_feature_embedding is None else self.user_feature_embedding.embedding_dim
        self.tower = MLP(width, config["hidden_sizes"], out_features=dim, dropout=config["dropout"])
        tied = config["tie_output_embeddings"]
        self.output_weight = None if tied else nn.Parameter(torch.randn(num_items, dim) * dim**-0.5)
        # (N, 1) rather than (N,): a sparse gradient cannot flow back through the reshape to 1-D.
        self.output_bias = nn.Parameter(torch.zeros(num_items, 1))
        # built last: the bag encoder has no parameters, so a bag model draws the same weights as before
        encoder_settings = config["user_encoder_config"]
        self.user_encoder = create_user_encoder(config["user_encoder"], embedding_dim=dim, **encoder_settings)
        settings = {k: v for k, v in self.user_encoder.get_config().items() if k != "embedding_dim"}
        config.update(num_items=num_items, embedding_dim=dim, num_user_features=num_user_features)
        config.update(user_encoder_config=settings)
        self.num_items, self.embedding_dim = num_items, dim

    def require_sizes(self) -> None:
        """Raise a ``RuntimeError`` saying what to do if the sizes are still left to the data (no tables yet)."""
        if not self.sized:
            raise RuntimeError(
                f"the recommender's sizes are left to the data (num_items={self.config['num_items']}, "
                f"num_user_features={self.config['num_user_features']}) and no tables exist yet: train it with "
                "RecommendationTask, which sizes it from the data module before the run, or call "
                "set_sizes(num_items, num_user_features)"
            )

    @property
    def item_table(self) -> torch.Tensor:
        """``(N, d)`` output item table (the parameter itself; the input table when tied)."""
        self.require_sizes()
        return self.history_embedding.weight if self.output_weight is None else self.output_weight

    @property
    def item_bias(self) -> torch.Tensor:
        """``(N, 1)`` per-item bias (the parameter itself)."""
        self.require_sizes()
        return self.output_bias

    @property
    def input_embeddings(self) -> torch.Tensor:
        """``(N, d)`` input table that embeds the history bag (the parameter itself)."""
        self.require_sizes()
        return self.history_embedding.weight

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The lookup tables (history, user features, output items, item bias), each once: the parameters whose
        gradients are sparse when ``sparse`` is set (the output table's only under a sampled or in-batch loss)."""
        self.require_sizes()
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
            history: ``B`` bags of watched item IDs, oldest first (the order matters to a sequential user encoder).
            user_features: ``B`` bags of categorical user-feature IDs; required iff ``num_user_features > 0``.
            dense: ``(B, num_dense_features)`` dense user features; required iff ``num_dense_features > 0``.
        """
        self.require_sizes()
        size = len(history)
        parts = [self.user_encoder(history, self.history_embedding)]
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
        """Top-``k`` items by logit for each user vector, without gradients.

        Exact, by :func:`~jointembed.search.backends.exact_top_k`: a few users in one pass over the item table
        that keeps each user's best k as the rows stream by (one user over 1,000,000 movies: 5.2 ms at 32
        dimensions, about FAISS flat's speed), a batch of users in cache-sized blocks that read the table once
        per 128 users (1,000 users: 3-4× FAISS flat); never a million scores in memory.

        Args:
            user_vectors: ``(B, d)``.
            k: Items per user, ``1 <= k <= N``.
            exclude: ``B`` bags of item IDs never to return (scored ``-inf``), e.g. the history; or ``None``.

        Returns:
            ``ids (B, k)`` int64 and ``scores (B, k)`` float32, best first; ids ``-1`` / scores ``-inf`` pad a row
            with fewer than ``k`` eligible items (a non-finite score, from a diverged model, is never returned).
        """
        self.require_sizes()
        check_k(k, self.num_items)
        dim = self.item_table.shape[1]
        if not isinstance(user_vectors, torch.Tensor) or user_vectors.ndim != 2 or user_vectors.shape[1] != dim:
            shown = tuple(user_vectors.shape) if isinstance(user_vectors, torch.Tensor) else type(user_vectors).__name__
            raise TypeError(f"user_vectors must be a (B, {dim}) tensor (see user_vectors()), got {shown}")
        if exclude is not None:
            _check_bags(exclude, "exclude")
            if len(exclude) != len(user_vectors):
                raise ValueError(f"exclude has {len(exclude)} bags but there are {len(user_vectors)} user vectors")
        users = user_vectors.detach().float()
        table, bias = self.item_table.detach().float(), self.output_bias.detach().float().squeeze(1)
        scores, ids = exact_top_k(users, table, k, bias=bias, seen=exclude)
        return ids, scores

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
            TypeError: ``histories`` is not a :class:`SparseBatch` (e.g. raw keys: use
                :class:`~jointembed.PretrainedRecommender`).
            ValueError: An empty history ("user at position i has no history"), ``k`` out of ``[1, N]``, or
                titles of the wrong length.
        """
        self.require_sizes()
        if item_titles is not None and len(item_titles) != self.num_items:
            raise ValueError(f"item_titles has {len(item_titles)} entries but the model has {self.num_items} items")
        check_k(k, self.num_items)
        users = self.serving_user_vectors(histories, user_features, dense)
        ids, scores = self.top_k(users, k, histories if exclude_seen else None)
        return Recommendations(ids, scores, _titles(ids, item_titles))

    @torch.no_grad()
    def serving_user_vectors(
        self, histories: SparseBatch, user_features: SparseBatch | None = None, dense: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, d)`` user vectors for serving: in evaluation mode (no dropout), without gradients, refusing an
        empty history (the model never saw one in training, so its answer there means nothing; serve such users
        from a popularity baseline instead).

        Raises:
            TypeError: ``histories`` is not a :class:`SparseBatch` (the message says how to make one).
            ValueError: "user at position i has no history".
        """
        self.require_sizes()
        _check_bags(histories, "histories")
        empty = (histories.lengths() == 0).nonzero()
        if len(empty):
            raise ValueError(
                f"user at position {int(empty[0])} has no history: the model needs at least one watched item "
                "(serve new users from a popularity baseline)"
            )
        was_training = self.training
        self.eval()
        try:
            return self.user_vectors(histories, user_features, dense)
        finally:
            self.train(was_training)

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

        Raises:
            TypeError: ``item_ids`` are not integers (e.g. a title: use :class:`~jointembed.PretrainedRecommender`).
            ValueError: An ID outside ``[0, N)``, or ``k`` out of ``[1, N]``.
        """
        self.require_sizes()
        check_k(k, self.num_items)
        queries = _item_ids(item_ids).to(self.item_table.device)
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
        item_metadata: Mapping[str, Sequence[Any]] | None = None,
    ) -> Path:
        """Write a pretrained folder (atomically; see :func:`jointembed.pretrained.write_folder`).

        ``config.json`` holds ``{"format": "jointembed.recommender", "version": 1, "model": <constructor
        arguments, with the final sizes>, "recent_items", "item_keys", "item_titles"}`` (plus ``"item_metadata"``
        when given); ``model.safetensors`` the weights. Loading it needs no data.

        Args:
            folder: Destination; an existing folder is replaced only once the new one is complete.
            item_keys: ``N`` raw item keys in ID order (``Interactions.item_vocab.values``, e.g. MovieLens movie
                IDs), each an ``int`` or a ``str``, all distinct; ``None`` keys the items by their IDs.
            item_titles: ``N`` titles in ID order (``Interactions.item_titles``), or ``None``.
            card: ``README.md`` text (see :func:`jointembed.pretrained.model_card`), or ``None``.
            recent_items: How many latest watches the data module put in the user-feature bag
                (``InteractionsDataModule.recent_items``), so inference builds the same inputs; 0 for none.
            item_metadata: ``{column: N values in ID order}`` (numbers, strs or ``None``) kept for maps of the
                item space (``jointembed export``), e.g. training watches or a synthetic world's true aspects.

        Returns:
            The folder.

        Raises:
            ValueError: Keys or titles of the wrong length or type, repeated keys, or ``recent_items > 0`` on a
                model whose ``num_user_features`` is not the catalogue size.
            RuntimeError: The model's sizes were left to the data and never given (see :meth:`set_sizes`).
        """
        from jointembed.models.pretrained_recommender import write_pretrained  # it imports this module

        self.require_sizes()
        return write_pretrained(self, folder, item_keys, item_titles, card, recent_items, item_metadata)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> Recommender:
        """Load a folder written by :meth:`save_pretrained` (a local path or a Hugging Face hub id), in eval mode.

        Use :class:`~jointembed.models.pretrained_recommender.PretrainedRecommender` to also get the item keys and
        titles.

        Args:
            path: The folder, or ``"owner/name"`` on the hub.
            strict: Require the weights' keys to match the model exactly (otherwise warn and load the common ones).
            map_location: Device of the returned model.

        Raises:
            CheckpointError: A missing or unreadable file, another format or version, a config field that does
                not fit (named), or weights that do not match the model.
        """
        from jointembed.models.pretrained_recommender import read_pretrained  # it imports this module

        return read_pretrained(path, strict, map_location)[0]


def _mismatch(argument: str, setting: str, given: bool) -> str:
    if given:
        return f"{argument} was given but the model was built with {setting}=0"
    return f"the model was built with {setting} > 0: pass {argument}"


def _check_sizes(num_items: int | None, num_user_features: int | None) -> None:
    if num_items is not None and (isinstance(num_items, bool) or num_items < 1):
        raise ValueError(f"num_items must be >= 1 (or None for the data's), got {num_items}")
    if num_user_features is not None and num_user_features < 0:
        raise ValueError(f"num_user_features must be >= 0 (or None for the data's), got {num_user_features}")


def _check_bags(value: Any, argument: str) -> None:
    if not isinstance(value, SparseBatch):
        raise TypeError(
            f"{argument} must be a SparseBatch of item IDs, e.g. SparseBatch.from_lists([[3, 17, 42]]), got "
            f"{type(value).__name__}; to pass raw item keys or titles, use PretrainedRecommender"
        )


def _item_ids(item_ids: Any) -> torch.Tensor:
    """``(M,)`` int64 IDs from a tensor, an array, a list or one int.

    Raises:
        TypeError: Anything else (a title, ``None``, floats).
    """
    error = TypeError(
        f"item_ids must be item IDs (an int, or a list or tensor of ints), got {type(item_ids).__name__} "
        f"{item_ids!r:.60}; to pass raw item keys or titles, use PretrainedRecommender.similar_items"
    )
    if item_ids is None or isinstance(item_ids, (str, bytes, bool)):
        raise error
    try:
        ids = torch.as_tensor(item_ids).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise error from None
    if ids.numel() == 0:
        return ids.long()
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise error
    return ids.long()


def check_k(k: int, num_items: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_items:
        raise ValueError(f"k must be an integer in [1, {num_items}] (the catalogue size), got {k!r}")


def _titles(ids: torch.Tensor, item_titles: Sequence[str] | None) -> list[list[str]] | None:
    if item_titles is None:
        return None
    return [[item_titles[j] for j in row if j >= 0] for row in ids.tolist()]


def __getattr__(name: str) -> Any:
    # PEP 562, lazily: pretrained_recommender imports this module, so an eager import here would be circular.
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
