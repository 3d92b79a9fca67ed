"""The encoder interface shared by every data type, the projection head, and masked pooling.

An encoder is ``backbone → pooled features (n, F) → ProjectionHead → (n, D), L2-normalised``. Everything that is
not the head counts as the backbone: ``freeze()`` stops its gradients and ``backbone_parameters()`` /
``head_parameters()`` let a training task give each part its own learning rate.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.config import constructor_config
from jointembed.nn.mlp import MLP

__all__ = ["Encoder", "ProjectionHead", "masked_mean", "longest_first", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ProjectionHead(nn.Module):
    """Maps backbone features to the shared space: ``Linear`` (or a small MLP) to ``out_features``, then L2 norm.

    Input ``(n, in_features)``, output ``(n, out_features)`` with every row of unit length.

    Args:
        in_features: Width of the backbone's pooled features.
        out_features: The shared dimension D.
        hidden_sizes: Hidden layer widths of an MLP before the output layer; empty for a single ``Linear``.
        dropout: Dropout after each hidden layer.
    """

    def __init__(
        self, in_features: int, out_features: int, hidden_sizes: Sequence[int] = (), dropout: float = 0.0
    ) -> None:
        super().__init__()
        if out_features < 1:
            raise ValueError(f"output_dim must be a positive integer, got {out_features}")
        self.in_features = in_features
        self.out_features = out_features
        self.mlp = MLP(in_features, list(hidden_sizes), out_features=out_features, activation="gelu", dropout=dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(n, in_features)`` → ``(n, out_features)`` unit-norm rows."""
        return F.normalize(self.mlp(features), dim=-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over its second dimension, counting only positions where ``mask`` is true.

    Args:
        x: ``(n, L, F)`` features per position.
        mask: ``(n, L)`` bool or 0/1, true for real positions.

    Returns:
        ``(n, F)``; rows with no real position are zeros.
    """
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Positions ``0..n-1`` by descending length, equal lengths in the given order.

    Batching values in this order puts similar lengths together, so a short text pads to its neighbours rather
    than to the longest of a random batch; longest first, so a batch too large for memory fails at once.
    """
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


class Encoder(nn.Module, abc.ABC):
    """Base class of every encoder: a modality's batch in, ``(n, output_dim)`` unit vectors out.

    Subclasses build ``self.head`` (a :class:`ProjectionHead`) and everything else they need, call
    ``self._set_config(locals())`` right after ``super().__init__()`` so ``get_config`` can rebuild them, and
    implement ``encode_backbone``, ``example_inputs`` and the ``tiny_config`` classmethod. ``registry_name`` is
    set by :func:`jointembed.registry.register_encoder`.

    Attributes:
        modality: The batch key this encoder reads by default (the joint model keys encoders by its own dict key).
        feature_dim: Width F of the pooled backbone features, before the head.
        frozen: Whether the backbone is frozen.
    """

    modality: ClassVar[str] = ""
    registry_name: ClassVar[str] = ""
    head: ProjectionHead
    feature_dim: int

    def __init__(self) -> None:
        super().__init__()
        self.frozen = False
        self._config: dict[str, Any] = {}

    def _set_config(self, arguments: Mapping[str, Any]) -> None:
        """Record the constructor arguments (pass ``locals()``), normalised to JSON types (tuples → lists)."""
        self._config = constructor_config(type(self), arguments)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON types): ``create_encoder(self.registry_name, **self.get_config())``."""
        return copy.deepcopy(self._config)

    def save_to(self, folder: Path) -> dict[str, Any]:
        """Write any files the encoder needs besides its weights (a tokenizer) into ``folder`` (created by the
        caller) and return the config to save, which refers to them relative to ``folder`` and to nothing outside
        it. Default: no files, ``get_config()``."""
        return self.get_config()

    @classmethod
    def load_from(cls, config: Mapping[str, Any], folder: Path) -> Encoder:
        """Rebuild an encoder (random weights; the caller loads the saved ones) from what :meth:`save_to` returned
        and wrote into ``folder``."""
        return cls(**config)

    @classmethod
    @abc.abstractmethod
    def tiny_config(cls) -> dict[str, Any]:
        """Constructor arguments of a test-sized, randomly initialised instance that needs no files or network."""

    @abc.abstractmethod
    def encode_backbone(self, inputs: Any) -> torch.Tensor:
        """Pooled backbone features ``(n, feature_dim)`` of a batch, before the projection head."""

    @abc.abstractmethod
    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> Any:
        """A random valid batch of ``batch_size`` examples for this encoder (for tests and docs), on CPU."""

    def forward(self, inputs: Any) -> torch.Tensor:
        """Embed a batch of this modality.

        Args:
            inputs: The modality's batch entry from the data module (see the subclass).

        Returns:
            ``(n, output_dim)`` L2-normalised embeddings.
        """
        return self.head(self.encode_backbone(inputs))

    def input_lengths(self, items: Sequence[Any]) -> list[int] | None:
        """How long each item of a batch is once the encoder pads it (tokens, words), or ``None`` when the
        encoder pads nothing that grows with the item; the embedding paths batch many items in
        :func:`longest_first` order when it is not ``None``."""
        return None

    @property
    def output_dim(self) -> int:
        """The shared dimension D of the embeddings."""
        return self.head.out_features

    @property
    def device(self) -> torch.device:
        """Device of the encoder's parameters (inputs are moved here inside ``forward``)."""
        return next(self.head.parameters()).device

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the projection head."""
        return self.head.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not in the projection head."""
        head = {id(p) for p in self.head.parameters()}
        return (p for p in self.parameters() if id(p) not in head)

    def freeze(self, frozen: bool = True) -> Encoder:
        """Freeze (or unfreeze) the backbone: no gradients, and kept in eval mode (no dropout, fixed norm stats).

        The projection head stays trainable.
        """
        self.frozen = frozen
        for p in self.backbone_parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> Encoder:
        """Set train/eval mode; a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.frozen:
            for child in self.children():
                if child is not self.head:
                    child.eval()
        return self

    def extra_repr(self) -> str:
        return f"registry_name={self.registry_name!r}, output_dim={self.output_dim}, frozen={self.frozen}"
