"""IDs: a bag of sparse IDs → sparse embedding → MLP → projection head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from jointembed.encoders.base import Encoder, ProjectionHead
from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import SparseEmbedding
from jointembed.registry import register_encoder
from jointembed.sparse import SparseBatch

__all__ = ["IdEncoder"]


@register_encoder("ids")
class IdEncoder(Encoder):
    """Embeds each bag of IDs (e.g. the items a user touched, the pixels lit in an image) as one unit vector.

    Input: a :class:`~jointembed.sparse.SparseBatch` of ``n`` bags, IDs in ``[0, num_embeddings)``.
    Output: ``(n, output_dim)``. An empty bag embeds as the head applied to zeros.

    Args:
        num_embeddings: Size of the ID table; ``None`` takes the size of the bound ids input's vocabulary (see
            :class:`~jointembed.modalities.ids.IdsModality`), so a recipe never repeats the data's size.
        embedding_dim: Width of each ID's embedding; ``None`` uses the fourth-root rule of thumb (then
            ``num_embeddings`` must be given).
        combiner: How a bag's rows combine: ``sum``, ``mean`` or ``sqrtn``.
        hidden_sizes: Widths of the MLP tower between the bag embedding and the head; empty for none.
        dropout: Dropout after each hidden layer of the tower.
        padding_idx: An ID that contributes nothing, or ``None``.
        sparse: Sparse gradients for the table (use an optimiser that accepts them).
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
    """

    modality = "ids"

    def __init__(
        self,
        num_embeddings: int | None = None,
        embedding_dim: int | None = 64,
        combiner: Literal["sum", "mean", "sqrtn"] = "mean",
        hidden_sizes: Sequence[int] = (256,),
        dropout: float = 0.0,
        padding_idx: int | None = None,
        sparse: bool = False,
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self._set_config(locals())
        if num_embeddings is not None and num_embeddings < 1:
            raise ValueError(f"num_embeddings must be >= 1 (or null to size it from the data), got {num_embeddings}")
        if num_embeddings is None and embedding_dim is None:
            raise ValueError("give num_embeddings or embedding_dim: the rule of thumb needs the table size")
        self._table_args = {"combiner": combiner, "padding_idx": padding_idx, "sparse": sparse}
        self.sized = num_embeddings is not None
        self.embedding = SparseEmbedding(num_embeddings or 1, embedding_dim, **self._table_args)
        self.tower = MLP(self.embedding.embedding_dim, list(hidden_sizes), dropout=dropout) if hidden_sizes else None
        self.feature_dim = self.tower.out_dim if self.tower is not None else self.embedding.embedding_dim
        self.head = ProjectionHead(self.feature_dim, output_dim, head_hidden_sizes)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {"num_embeddings": 20, "embedding_dim": 8, "hidden_sizes": [16], "output_dim": 8}

    def ensure_num_embeddings(self, num_ids: int, field: str = "ids") -> None:
        """Size the table to ``num_ids`` rows if it was built with ``num_embeddings: null``; else check it fits.

        Raises:
            ValueError: The table has fewer rows than the input's IDs need (both numbers named).
        """
        if not self.sized:
            dim = self.embedding.embedding_dim
            self.embedding = SparseEmbedding(num_ids, dim, **self._table_args).to(self.device)
            self._config["num_embeddings"] = num_ids
            self.sized = True
        elif self.embedding.num_embeddings < num_ids:
            raise ValueError(
                f"field {field!r}: the IdEncoder's table has {self.embedding.num_embeddings} rows but its input has "
                f"{num_ids} IDs; set num_embeddings to {num_ids} or leave it null to size it from the data"
            )

    def encode_backbone(self, inputs: SparseBatch) -> torch.Tensor:
        """``n`` bags → ``(n, feature_dim)``.

        Raises:
            TypeError: ``inputs`` is not a SparseBatch.
            ValueError: An ID is out of range; the message names the ID and its bag.
        """
        if not isinstance(inputs, SparseBatch):
            raise TypeError(f"IdEncoder expects a jointembed.sparse.SparseBatch, got {type(inputs).__name__}")
        if not self.sized:
            raise ValueError("the IdEncoder's table is not sized yet: bind it to an ids input or give num_embeddings")
        inputs.validate(self.embedding.num_embeddings)
        x = self.embedding(inputs.to(self.device))
        return self.tower(x) if self.tower is not None else x

    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> SparseBatch:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(1, 6, (batch_size,), generator=g)
        values = torch.randint(0, self.embedding.num_embeddings, (int(lengths.sum()),), generator=g)
        return SparseBatch.from_tensors(values, lengths=lengths)
