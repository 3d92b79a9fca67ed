"""A retrieval recommender: the bag of items a user watched → a user vector → a score for every item.

The architecture of the YouTube candidate-generation network (Covington et al. 2016): the history bag is
embedded and pooled, optional user features (a bag of categorical IDs, dense values) are concatenated, an MLP
tower maps the result to a user vector ``u``, and item ``j`` scores ``u · W[j] + b[j]``, where ``W`` is the output
item table. ``W[j]`` is item ``j``'s point in space, used for "similar items" by cosine similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.metrics.ranking import SCORE_BUDGET
from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import Combiner, SparseEmbedding, suggest_embedding_dim
from jointembed.sparse import SparseBatch

__all__ = ["Recommender", "Recommendations"]


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
        scores_of = lambda rows: self.logits(user_vectors[rows])  # noqa: E731
        return _chunked_top_k(scores_of, len(user_vectors), self.num_items, k, exclude)

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
        ids, scores = _chunked_top_k(
            lambda rows: (query_vectors[rows] @ table.T) * inv_norm, len(queries), self.num_items, k, itself
        )
        return Recommendations(ids, scores, _titles(ids, item_titles))


def _mismatch(argument: str, setting: str, given: bool) -> str:
    if given:
        return f"{argument} was given but the model was built with {setting}=0"
    return f"the model was built with {setting} > 0: pass {argument}"


def _check_k(k: int, num_items: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_items:
        raise ValueError(f"k must be an integer in [1, {num_items}] (the catalogue size), got {k!r}")


def _chunked_top_k(
    scores_of: Callable[[slice], torch.Tensor],
    num_queries: int,
    num_items: int,
    k: int,
    exclude: SparseBatch | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of ``scores_of(rows)`` ``(len(rows), N)`` over all query rows, a budget-sized block at a time,
    with ``exclude``'s bag ``i`` scored ``-inf`` in row ``i``."""
    _check_k(k, num_items)
    if exclude is not None and len(exclude) != num_queries:
        raise ValueError(f"exclude has {len(exclude)} bags but there are {num_queries} queries")
    step = max(1, SCORE_BUDGET // num_items)
    bag_ids = None if exclude is None else exclude.bag_ids()
    ids, scores = [], []
    for start in range(0, num_queries, step):
        stop = min(start + step, num_queries)
        block = scores_of(slice(start, stop)).float()
        if exclude is not None:
            lo = int(exclude.offsets[start])
            hi = int(exclude.offsets[stop]) if stop < num_queries else exclude.values.numel()
            block[bag_ids[lo:hi] - start, exclude.values[lo:hi]] = float("-inf")
        top = block.topk(k, dim=1)
        ids.append(top.indices)
        scores.append(top.values)
    if not ids:
        empty = torch.empty(0, k)
        return empty.long(), empty
    ids_t, scores_t = torch.cat(ids), torch.cat(scores)
    return ids_t.masked_fill(scores_t == float("-inf"), -1), scores_t


def _titles(ids: torch.Tensor, item_titles: Sequence[str] | None) -> list[list[str]] | None:
    if item_titles is None:
        return None
    return [[item_titles[j] for j in row if j >= 0] for row in ids.tolist()]
