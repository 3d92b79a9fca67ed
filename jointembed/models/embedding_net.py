"""An embedding network: an embedding layer trained inside a deep network by the task's own supervision.

A bag of sparse IDs (a district's grid cell, an image's lit pixels) is embedded in ``d`` dimensions, joined with
any dense features, and passed through hidden layers to a task head: one output for regression, one logit per
class for classification. The embedding table is learnt only through the task's loss.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from jointembed.errors import CheckpointError
from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import SparseEmbedding
from jointembed.pretrained import CONFIG_NAME, WEIGHTS_NAME, load_weights
from jointembed.sparse import SparseBatch

__all__ = ["EmbeddingNet", "load_network"]


class EmbeddingNet(nn.Module):
    """``SparseEmbedding`` → concat dense features → ``MLP`` hidden layers → linear head.

    Input: a :class:`~jointembed.sparse.SparseBatch` of ``B`` bags (and ``(B, num_dense_features)`` dense
    features when ``num_dense_features > 0``). Output: ``(B, out_features)`` raw outputs (regression values or
    logits; the task applies the loss).

    Args:
        num_embeddings: Size of the ID table; every ID must be ``< num_embeddings``.
        out_features: Width of the head: 1 for regression, the number of classes for classification.
        embedding_dim: Width ``d`` of the embedding; ``None`` uses the rule of thumb
            (:func:`~jointembed.nn.sparse_embedding.suggest_embedding_dim`, ``num_embeddings ** 0.25``).
        combiner: How the IDs of a bag combine: ``sum``, ``mean`` or ``sqrtn`` (weighted by the batch's weights).
        num_dense_features: Width of the dense features joined to the embedding (0 for none).
        hidden_sizes: Width of each hidden layer between the embedding and the head.
        activation: Hidden-layer activation: ``relu``, ``gelu``, ``silu``, ``tanh`` or ``leaky_relu``.
        dropout: Dropout probability after each hidden activation.
        norm: ``batch`` or ``layer`` normalisation in each hidden layer, or ``None``.
    """

    def __init__(
        self,
        num_embeddings: int,
        out_features: int,
        embedding_dim: int | None = None,
        combiner: Literal["sum", "mean", "sqrtn"] = "mean",
        num_dense_features: int = 0,
        hidden_sizes: Sequence[int] = (64, 32),
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
        dropout: float = 0.0,
        norm: Literal["batch", "layer"] | None = None,
    ) -> None:
        super().__init__()
        if out_features < 1:
            raise ValueError(f"out_features must be positive, got {out_features}")
        if num_dense_features < 0:
            raise ValueError(f"num_dense_features must be >= 0, got {num_dense_features}")
        self.embedding = SparseEmbedding(num_embeddings, embedding_dim, combiner=combiner)
        self._config = {
            "num_embeddings": int(num_embeddings),
            "out_features": int(out_features),
            "embedding_dim": int(self.embedding.embedding_dim),  # resolved: a reload must not re-run the rule
            "combiner": combiner,
            "num_dense_features": int(num_dense_features),
            "hidden_sizes": [int(size) for size in hidden_sizes],
            "activation": activation,
            "dropout": float(dropout),
            "norm": norm,
        }
        self.num_dense_features = num_dense_features
        self.out_features = out_features
        self.tower = MLP(
            self.embedding.embedding_dim + num_dense_features,
            list(hidden_sizes),
            out_features=out_features,
            activation=activation,
            dropout=dropout,
            norm=norm,
        )

    @property
    def num_embeddings(self) -> int:
        """Size of the ID table."""
        return self.embedding.num_embeddings

    @property
    def embedding_dim(self) -> int:
        """Width ``d`` of the embedding (the rule of thumb's value when none was given)."""
        return self.embedding.embedding_dim

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON types (``embedding_dim`` resolved), so that
        ``EmbeddingNet(**net.get_config())`` rebuilds the same architecture; pretrained folders save it."""
        return dict(self._config, hidden_sizes=list(self._config["hidden_sizes"]))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EmbeddingNet:
        """Build the network :meth:`get_config` describes (fresh weights).

        Raises:
            ValueError: ``config`` names an argument the constructor does not take, lacks a required one, or
                holds an invalid value; the message names it.
        """
        known = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ValueError(f"unknown EmbeddingNet argument(s) {unknown}; it takes {known}")
        try:
            return cls(**config)
        except TypeError as error:  # a required argument is missing
            raise ValueError(f"cannot build an EmbeddingNet from {dict(config)}: {error}") from error

    def embed(self, sparse: SparseBatch) -> torch.Tensor:
        """The learnt embedding of each bag: ``(B, embedding_dim)``, before the dense features and hidden layers."""
        return self.embedding(sparse)

    def forward(self, sparse: SparseBatch, dense: torch.Tensor | None = None) -> torch.Tensor:
        """Run the network.

        Args:
            sparse: ``B`` bags of IDs (with optional weights).
            dense: ``(B, num_dense_features)`` dense features; required when ``num_dense_features > 0``, else
                must be ``None``.

        Returns:
            ``(B, out_features)`` outputs.
        """
        x = self.embed(sparse)
        if self.num_dense_features:
            if dense is None:
                raise ValueError(f"this network takes {self.num_dense_features} dense features but got none")
            if dense.dim() != 2 or dense.shape != (x.shape[0], self.num_dense_features):
                raise ValueError(
                    f"dense features must have shape ({x.shape[0]}, {self.num_dense_features}), "
                    f"got {tuple(dense.shape)}"
                )
            x = torch.cat([x, dense.to(x.dtype)], dim=1)
        elif dense is not None:
            raise ValueError(f"this network takes no dense features (num_dense_features=0), got {tuple(dense.shape)}")
        return self.tower(x)

    def check_input_sizes(self, num_ids: int, num_dense_features: int) -> None:
        """Raise ``ValueError`` unless the data's ID count and dense width match this network's.

        Args:
            num_ids: Number of distinct sparse IDs the data produces (IDs are ``0 .. num_ids - 1``).
            num_dense_features: Width of the data's dense features.
        """
        if num_ids != self.num_embeddings:
            raise ValueError(
                f"the data produces {num_ids} sparse IDs but the network's table has num_embeddings="
                f"{self.num_embeddings}: set the model's num_embeddings to {num_ids}"
            )
        if num_dense_features != self.num_dense_features:
            raise ValueError(
                f"the data has {num_dense_features} dense features but the network takes num_dense_features="
                f"{self.num_dense_features}: set the model's num_dense_features to {num_dense_features}"
            )

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts: ``{"embedding": ..., "total": ...}``."""
        embedding = sum(p.numel() for p in self.embedding.parameters())
        return {"embedding": embedding, "total": sum(p.numel() for p in self.parameters())}


def load_network(
    folder: str | os.PathLike,
    config: Mapping[str, Any],
    strict: bool = True,
    map_location: str | torch.device = "cpu",
) -> EmbeddingNet:
    """The :class:`EmbeddingNet` of a pretrained folder: built from ``config["network"]`` (its
    :meth:`~EmbeddingNet.get_config`), weights read from the folder's ``model.safetensors`` (the network's own
    ``state_dict`` keys).

    Args:
        folder: The pretrained folder.
        config: Its ``config.json``, already read and checked for format and version.
        strict: Require the weights' keys to match exactly.
        map_location: Device the weights are read onto.

    Raises:
        CheckpointError: The ``network`` field is missing or does not build a network, or the weights are missing,
            truncated or do not match; the message names the file and the field or keys.
    """
    folder = Path(folder)
    spec = config.get("network")
    if not isinstance(spec, Mapping):
        raise CheckpointError(f"{folder / CONFIG_NAME}: field 'network' must hold the EmbeddingNet's arguments")
    try:
        network = EmbeddingNet.from_config(spec)
    except ValueError as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: field 'network': {error}") from error
    load_weights(network, folder / WEIGHTS_NAME, strict=strict, map_location=map_location)
    return network.to(map_location)
