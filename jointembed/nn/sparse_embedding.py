"""Embedding layer for bags of sparse IDs, and the rule of thumb for its width."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from jointembed.kernels import HashTable
from jointembed.nn.bag_rows import bag_rows_apply, embedding_bag_rows
from jointembed.sparse import SparseBatch

__all__ = ["SparseEmbedding", "suggest_embedding_dim"]

Combiner = Literal["sum", "mean", "sqrtn"]


def suggest_embedding_dim(num_values: int, minimum: int = 2, maximum: int | None = None) -> int:
    """Rule-of-thumb embedding width: ``num_values ** 0.25``, rounded half up, then clamped.

    The fourth root keeps the table small for huge vocabularies (1,000,000 values → 32 dimensions, 64 pixel IDs
    → 3) while growing with the number of things to tell apart. The result is clamped to ``[minimum, maximum]``;
    the default minimum of 2 is there because a 1-dimensional embedding can only order values on a line.

    Args:
        num_values: Number of distinct IDs (the vocabulary size), >= 1.
        minimum: Smallest width returned.
        maximum: Largest width returned, or ``None`` for no cap.
    """
    if isinstance(num_values, bool) or not isinstance(num_values, int) or num_values < 1:
        raise ValueError(f"num_values must be a positive integer, got {num_values!r}")
    if minimum < 1 or (maximum is not None and maximum < minimum):
        raise ValueError(f"need 1 <= minimum <= maximum, got minimum={minimum}, maximum={maximum}")
    dim = max(minimum, math.floor(num_values**0.25 + 0.5))
    return dim if maximum is None else min(dim, maximum)


class SparseEmbedding(nn.Module):
    """Embeds each bag of a :class:`~jointembed.sparse.SparseBatch` as one vector (built on ``nn.EmbeddingBag``).

    A bag's vector combines its IDs' rows, each scaled by its weight ``w`` (1 when the batch has none):

    - ``sum``: ``Σ w·e``
    - ``mean``: ``Σ w·e / Σ w``
    - ``sqrtn``: ``Σ w·e / sqrt(Σ w²)`` (keeps the norm steady as bags grow)

    Empty bags, and bags whose IDs are all ``padding_idx``, give zeros.

    Args:
        num_embeddings: Size of the ID table (the vocabulary size).
        embedding_dim: Width of each embedding; ``None`` uses :func:`suggest_embedding_dim`.
        combiner: How a bag's rows are combined: ``sum``, ``mean`` or ``sqrtn``.
        padding_idx: An ID that contributes nothing (its row stays zero and gets no gradient), or ``None``.
        sparse: Produce sparse gradients for the table (use with :class:`~jointembed.optim.LazyAdam`,
            :class:`~jointembed.optim.RowWiseAdagrad`, ``torch.optim.SparseAdam`` or SGD); pays off for large tables
            where a batch touches a small fraction of the rows. On CPU with numba the gradient holds one row per
            distinct ID of the batch (summed), not one per lookup (:mod:`jointembed.nn.bag_rows`).
        init_std: Standard deviation of the normal initialisation; ``None`` uses ``1 / sqrt(embedding_dim)``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int | None = None,
        combiner: Combiner = "mean",
        padding_idx: int | None = None,
        sparse: bool = False,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if combiner not in ("sum", "mean", "sqrtn"):
            raise ValueError(f"combiner must be 'sum', 'mean' or 'sqrtn', got {combiner!r}")
        if embedding_dim is None:
            embedding_dim = suggest_embedding_dim(num_embeddings)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.combiner = combiner
        self.padding_idx = padding_idx
        self.bag = nn.EmbeddingBag(num_embeddings, embedding_dim, mode="sum", sparse=sparse, padding_idx=padding_idx)
        self._bag_rows_table = HashTable()  # scratch space of the sparse backward, kept between steps
        std = init_std if init_std is not None else embedding_dim**-0.5
        with torch.no_grad():
            self.bag.weight.normal_(0.0, std)
            if padding_idx is not None:
                self.bag.weight[padding_idx].zero_()

    @property
    def weight(self) -> torch.Tensor:
        """``(num_embeddings, embedding_dim)`` the embedding table: row ``i`` is ID ``i``'s point in space."""
        return self.bag.weight

    def forward(self, batch: SparseBatch) -> torch.Tensor:
        """Embed a batch.

        Args:
            batch: ``B`` bags of IDs, each ``< num_embeddings``.

        Returns:
            ``(B, embedding_dim)`` one vector per bag.

        Raises:
            ValueError: An ID outside ``[0, num_embeddings)``; the message names the ID and its bag.
        """
        values, offsets = batch.values, batch.offsets
        self._check_ids(batch)
        weights = batch.weights
        if weights is not None:
            weights = weights.to(self.weight.dtype)
        if self.padding_idx is not None:
            keep = values != self.padding_idx
            weights = keep.to(self.weight.dtype) if weights is None else weights * keep
        denominators = self._denominators(batch, weights)
        if self._merges_gradient(weights):
            table = self._bag_rows_table
            return embedding_bag_rows(self.weight, values, offsets, weights, denominators, self.padding_idx, table)
        if weights is None:
            weights = torch.ones(values.shape, dtype=self.weight.dtype, device=values.device)
        out = self.bag(values, offsets, per_sample_weights=weights)
        return out if self.combiner == "sum" else out / denominators.unsqueeze(1)

    def _merges_gradient(self, weights: torch.Tensor | None) -> bool:
        """Whether this forward gives a sparse gradient of one row per distinct ID (:mod:`jointembed.nn.bag_rows`)
        rather than autograd's one row per lookup."""
        return self.bag.sparse and bag_rows_apply(self.weight, weights)

    def _denominators(self, batch: SparseBatch, weights: torch.Tensor | None) -> torch.Tensor:
        """``(B,)`` what each bag's weighted sum is divided by: 1 (``sum``), ``Σ w`` (``mean``) or ``sqrt(Σ w²)``
        (``sqrtn``), with 1 for empty bags (which sum to zero and stay zero instead of NaN)."""
        dtype, device = self.weight.dtype, batch.values.device
        if self.combiner == "sum":
            return torch.ones(len(batch), dtype=dtype, device=device)
        if weights is None:
            denom = batch.lengths().to(dtype)  # counts: exactly the sum of unit weights
        else:
            sq = weights if self.combiner == "mean" else weights * weights
            denom = torch.zeros(len(batch), dtype=dtype, device=device).index_add_(0, batch.bag_ids(), sq)
        if self.combiner == "sqrtn":
            denom = denom.sqrt()
        return torch.where(denom == 0, torch.ones_like(denom), denom)

    def _check_ids(self, batch: SparseBatch) -> None:
        """Refuse IDs outside the table, which ``nn.EmbeddingBag`` would report without the bag (or, on a GPU,
        as a device-side assert); one min/max reduction and one synchronisation when all is well."""
        values = batch.values
        if values.numel() == 0:
            return
        low, high = torch.aminmax(values)
        if not bool((low < 0) | (high >= self.num_embeddings)):
            return
        pos = int(((values < 0) | (values >= self.num_embeddings)).nonzero()[0])
        raise ValueError(
            f"ID {int(values[pos])} in bag {batch.bag_of(pos)} is out of range for this table of "
            f"{self.num_embeddings} embeddings: IDs must be in [0, {self.num_embeddings})"
        )

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, combiner={self.combiner!r}"
