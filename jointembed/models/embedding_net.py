"""An embedding network: an embedding layer trained inside a deep network by the task's own supervision.

A bag of sparse IDs (a district's grid cell, an image's lit pixels) is embedded in ``d`` dimensions, joined with
any dense features, and passed through hidden layers to a task head: one output for regression, one logit per
class for classification. The embedding table is learnt only through the task's loss.

The sizes that describe the data (the number of IDs, the dense width, the number of outputs) may be left to the
data (``None``): the task then builds the network from its data module before the run
(:meth:`EmbeddingNet.set_sizes`), so a recipe states them nowhere. :class:`PretrainedEmbeddingNet` is the shared
base of the networks that leave a run as a pretrained folder with whatever reads their raw inputs.
"""

from __future__ import annotations

import abc
import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import nn

from jointembed.errors import CheckpointError
from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import SparseEmbedding
from jointembed.pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_weights,
    open_folder,
    state_for_saving,
    write_folder,
)
from jointembed.sparse import SparseBatch

__all__ = ["EmbeddingNet", "PretrainedEmbeddingNet", "load_network"]

# The sizes a network may leave to the data, with the smallest valid value of each.
_DATA_SIZES = {"num_embeddings": 1, "num_dense_features": 0, "out_features": 1}

_Pretrained = TypeVar("_Pretrained", bound="PretrainedEmbeddingNet")


def _check_size(name: str, value: int | None) -> None:
    if value is not None and value < _DATA_SIZES[name]:
        relation = "positive" if _DATA_SIZES[name] else ">= 0"
        raise ValueError(f"{name} must be {relation}, got {value}")


class EmbeddingNet(nn.Module):
    """``SparseEmbedding`` → concat dense features → ``MLP`` hidden layers → linear head.

    Input: a :class:`~jointembed.sparse.SparseBatch` of ``B`` bags (and ``(B, num_dense_features)`` dense
    features when ``num_dense_features > 0``). Output: ``(B, out_features)`` raw outputs (regression values or
    logits; the task applies the loss).

    ``num_embeddings``, ``num_dense_features`` and ``out_features`` may be ``None``: "the data's". The network then
    has no layers until :meth:`set_sizes` (which :class:`~jointembed.tasks.regression.RegressionTask` and
    :class:`~jointembed.tasks.classification.ClassificationTask` call with their data module's sizes before the
    run) builds them all at once, at their final sizes, drawing the initial weights in the same order as the
    constructor would. A size given explicitly is checked against the data instead.

    Args:
        num_embeddings: Size of the ID table (every ID must be ``< num_embeddings``), or ``None`` for the number
            of IDs the data produces.
        out_features: Width of the head: 1 for regression, the number of classes for classification; ``None`` for
            the task's (one output for regression, the data's classes for classification).
        embedding_dim: Width ``d`` of the embedding; ``None`` uses the rule of thumb of the final table size
            (:func:`~jointembed.nn.sparse_embedding.suggest_embedding_dim`, ``num_embeddings ** 0.25``).
        combiner: How the IDs of a bag combine: ``sum``, ``mean`` or ``sqrtn`` (weighted by the batch's weights).
        num_dense_features: Width of the dense features joined to the embedding (0 for none), or ``None`` for the
            data's.
        hidden_sizes: Width of each hidden layer between the embedding and the head.
        activation: Hidden-layer activation: ``relu``, ``gelu``, ``silu``, ``tanh`` or ``leaky_relu``.
        dropout: Dropout probability after each hidden activation.
        norm: ``batch`` or ``layer`` normalisation in each hidden layer, or ``None``.
    """

    def __init__(
        self,
        num_embeddings: int | None = None,
        out_features: int | None = None,
        embedding_dim: int | None = None,
        combiner: Literal["sum", "mean", "sqrtn"] = "mean",
        num_dense_features: int | None = 0,
        hidden_sizes: Sequence[int] = (64, 32),
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
        dropout: float = 0.0,
        norm: Literal["batch", "layer"] | None = None,
    ) -> None:
        super().__init__()
        sizes = {
            "num_embeddings": num_embeddings,
            "num_dense_features": num_dense_features,
            "out_features": out_features,
        }
        for name, value in sizes.items():
            _check_size(name, value)
        if embedding_dim is not None and embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        # None entries are filled by set_sizes: the config (and so a saved folder) ends up with the final sizes.
        self._config: dict[str, Any] = {
            "num_embeddings": None if num_embeddings is None else int(num_embeddings),
            "out_features": None if out_features is None else int(out_features),
            "embedding_dim": None if embedding_dim is None else int(embedding_dim),
            "combiner": combiner,
            "num_dense_features": None if num_dense_features is None else int(num_dense_features),
            "hidden_sizes": [int(size) for size in hidden_sizes],
            "activation": activation,
            "dropout": float(dropout),
            "norm": norm,
        }
        self.embedding: SparseEmbedding | None = None  # built with the tower, once every size is known
        self.tower: MLP | None = None
        self.num_dense_features = num_dense_features
        self.out_features = out_features
        if None not in sizes.values():
            self._build(num_embeddings, num_dense_features, out_features)

    def _build(self, num_embeddings: int, num_dense_features: int, out_features: int) -> None:
        config = self._config
        self.embedding = SparseEmbedding(num_embeddings, config["embedding_dim"], combiner=config["combiner"])
        self.tower = MLP(
            self.embedding.embedding_dim + num_dense_features,
            config["hidden_sizes"],
            out_features=out_features,
            activation=config["activation"],
            dropout=config["dropout"],
            norm=config["norm"],
        )
        # Resolved: a reload must not re-run the rule of thumb.
        config.update(
            num_embeddings=int(num_embeddings),
            num_dense_features=int(num_dense_features),
            out_features=int(out_features),
            embedding_dim=int(self.embedding.embedding_dim),
        )
        self.num_dense_features, self.out_features = int(num_dense_features), int(out_features)

    @property
    def sized(self) -> bool:
        """Whether the layers exist (every size given to the constructor, or by :meth:`set_sizes`)."""
        return self.embedding is not None

    def set_sizes(self, num_embeddings: int, num_dense_features: int, out_features: int) -> None:
        """Build the layers at the data's sizes, filling the sizes the constructor left to the data (``None``).

        Idempotent: on a built network it only checks the sizes. The weights are drawn in the same order as when
        every size is given to the constructor, so a seeded run starts from the same weights either way.

        Args:
            num_embeddings: Number of distinct sparse IDs the data produces (IDs ``0 .. num_embeddings - 1``).
            num_dense_features: Width of the data's dense features (0 for none).
            out_features: Outputs the task needs (1 for regression, the number of classes for classification).

        Raises:
            ValueError: A size that differs from one the network was given (both named), or out of range.
        """
        sizes = {"num_embeddings": num_embeddings, "num_dense_features": num_dense_features}
        for name, value in (sizes | {"out_features": out_features}).items():
            _check_size(name, value)
        self.check_input_sizes(num_embeddings, num_dense_features)
        given = self._config["out_features"]
        if given is not None and given != out_features:
            raise ValueError(
                f"the task needs {out_features} output(s) but the network has out_features={given}: set the "
                f"model's out_features to {out_features} (or leave it null to take the task's)"
            )
        if not self.sized:
            self._build(num_embeddings, num_dense_features, out_features)

    def set_sizes_from_state_dict(self, state: Mapping[str, torch.Tensor], prefix: str = "") -> None:
        """:meth:`set_sizes` from the shapes of a saved ``state_dict`` (keys under ``prefix``), so that a
        checkpoint loads into a network built with its sizes left to the data."""
        table = state[f"{prefix}embedding.bag.weight"]
        tower = f"{prefix}tower."
        linears = {  # the Linear layers' weights, by their index in the tower (norm layers' weights are 1-D)
            int(key[len(tower) :].split(".")[0]): value
            for key, value in state.items()
            if key.startswith(tower) and key.endswith(".weight") and value.dim() == 2
        }
        first, last = linears[min(linears)], linears[max(linears)]
        self.set_sizes(table.shape[0], first.shape[1] - table.shape[1], last.shape[0])

    def require_sizes(self) -> None:
        """Raise a ``RuntimeError`` saying what to do if sizes are still left to the data (no layers yet)."""
        if not self.sized:
            left = [name for name in _DATA_SIZES if self._config[name] is None]
            raise RuntimeError(
                f"the network leaves {', '.join(left)} to the data (None) and has no layers yet: train it with "
                "RegressionTask or ClassificationTask, which size it from the data module before the run, or call "
                "set_sizes(num_embeddings, num_dense_features, out_features)"
            )

    @property
    def num_embeddings(self) -> int | None:
        """Size of the ID table (``None`` while it is left to the data)."""
        return self._config["num_embeddings"]

    @property
    def embedding_dim(self) -> int | None:
        """Width ``d`` of the embedding (the rule of thumb's value when none was given; ``None`` until then)."""
        return self._config["embedding_dim"]

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON types (sizes and ``embedding_dim`` resolved once built), so that
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
        self.require_sizes()
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
        """Raise ``ValueError`` unless the data's ID count and dense width match the sizes this network was given
        (a size left to the data, ``None``, matches any).

        Args:
            num_ids: Number of distinct sparse IDs the data produces (IDs are ``0 .. num_ids - 1``).
            num_dense_features: Width of the data's dense features.
        """
        table, dense = self._config["num_embeddings"], self._config["num_dense_features"]
        if table is not None and num_ids != table:
            raise ValueError(
                f"the data produces {num_ids} sparse IDs but the network's table has num_embeddings={table}: set "
                f"the model's num_embeddings to {num_ids} (or leave it null to take the data's)"
            )
        if dense is not None and num_dense_features != dense:
            raise ValueError(
                f"the data has {num_dense_features} dense features but the network takes num_dense_features="
                f"{dense}: set the model's num_dense_features to {num_dense_features} (or leave it null to take "
                "the data's)"
            )

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts: ``{"embedding": ..., "total": ...}``."""
        self.require_sizes()
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
        CheckpointError: The ``network`` field is missing, does not build a network or leaves a size to the data
            (``null``), or the weights are missing, truncated or do not match; the message names the file and the
            field or keys.
    """
    folder = Path(folder)
    spec = config.get("network")
    if not isinstance(spec, Mapping):
        raise CheckpointError(f"{folder / CONFIG_NAME}: field 'network' must hold the EmbeddingNet's arguments")
    try:
        network = EmbeddingNet.from_config(spec)
    except ValueError as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: field 'network': {error}") from error
    unsized = [name for name in _DATA_SIZES if spec.get(name) is None]
    if unsized:
        raise CheckpointError(
            f"{folder / CONFIG_NAME}: field 'network' leaves {', '.join(unsized)} null; a pretrained folder must "
            "record the network's final sizes"
        )
    load_weights(network, folder / WEIGHTS_NAME, strict=strict, map_location=map_location)
    return network.to(map_location)


class PretrainedEmbeddingNet(nn.Module, abc.ABC):
    """A trained :class:`EmbeddingNet` with what reads its raw inputs (a featurizer, an image preprocessing),
    saved and loaded as one pretrained folder (see :mod:`jointembed.pretrained`):

    - ``config.json``: ``{"format": FORMAT, "version": FORMAT_VERSION, "network": EmbeddingNet arguments}`` plus
      the parts' settings (:meth:`parts_config`);
    - ``model.safetensors``: the network's ``state_dict``;
    - ``README.md``: a model card with the run's test metrics (:meth:`model_card`).

    A subclass names ``FORMAT`` and ``FORMAT_VERSION``, takes the network as its first constructor argument and
    the parts as keyword arguments named as in :meth:`parts_config`, and reads them back in
    :meth:`parts_from_config`.

    Args:
        network: The trained network, with its sizes (not left to the data).
    """

    FORMAT: ClassVar[str]
    FORMAT_VERSION: ClassVar[int]

    def __init__(self, network: EmbeddingNet) -> None:
        super().__init__()
        network.require_sizes()
        self.network = network

    @abc.abstractmethod
    def parts_config(self) -> dict[str, Any]:
        """The settings of everything the folder holds besides the network, as JSON types, by argument name."""

    @classmethod
    @abc.abstractmethod
    def parts_from_config(cls, config: Mapping[str, Any], where: Path) -> dict[str, Any]:
        """The constructor's keyword arguments besides the network, from ``config.json`` (read from ``where``).

        Raises:
            CheckpointError: A malformed field; the message names ``where`` and the field.
        """

    @abc.abstractmethod
    def model_card(self, folder: Path, metrics: Mapping[str, Any] | None) -> str:
        """The ``README.md`` of the folder (see :func:`jointembed.pretrained.model_card`)."""

    def get_config(self) -> dict[str, Any]:
        """The ``config.json`` content: format, version, network arguments and the parts' settings."""
        base = {"format": self.FORMAT, "version": self.FORMAT_VERSION, "network": self.network.get_config()}
        return base | self.parts_config()

    def save_pretrained(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the pretrained folder (atomically: an interrupted save leaves any previous folder whole).

        Args:
            folder: Destination folder.
            metrics: Test metrics for the model card (``test_metrics.json`` of the run).

        Returns:
            The folder.
        """
        card = self.model_card(Path(folder), metrics)
        return write_folder(folder, self.get_config(), state_for_saving(self.network), card=card)

    @classmethod
    def from_pretrained(
        cls: type[_Pretrained],
        name_or_path: str | os.PathLike,
        strict: bool = True,
        map_location: str | torch.device = "cpu",
    ) -> _Pretrained:
        """Load a folder written by :meth:`save_pretrained`, in eval mode.

        Args:
            name_or_path: The folder (or a Hugging Face hub repo id, see :func:`~jointembed.pretrained.resolve_folder`).
            strict: Require the weights' keys to match the network's exactly.
            map_location: Device to load onto.

        Raises:
            CheckpointError: The folder or a file is missing, truncated or of another format or version, a field is
                malformed, or the weights do not match; the message names the file and the field or keys.
        """
        with open_folder(name_or_path, cls.FORMAT, (cls.FORMAT_VERSION,)) as (folder, config):
            parts = cls.parts_from_config(config, folder / CONFIG_NAME)
            network = load_network(folder, config, strict=strict, map_location=map_location)
            try:
                model = cls(network, **parts)
            except ValueError as error:
                what = " and ".join(parts)
                message = f"{folder / CONFIG_NAME}: the network does not fit the {what}: {error}"
                raise CheckpointError(message) from error
        return model.to(map_location).eval()
