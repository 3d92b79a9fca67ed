"""A multi-layer perceptron tower: the hidden layers between an embedding and a task head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

__all__ = ["MLP"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
_NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class MLP(nn.Sequential):
    """``Linear → [norm] → activation → [dropout]`` for each hidden size, then an optional output ``Linear``.

    Input ``(B, in_features)``, output ``(B, out_dim)`` where ``out_dim`` is ``out_features`` if given, else the
    last hidden size (else ``in_features``: with no layers the tower is the identity).

    Args:
        in_features: Width of the input.
        hidden_sizes: Width of each hidden layer.
        out_features: Width of a final linear layer without activation, or ``None`` to end on the last hidden layer.
        activation: ``relu``, ``gelu``, ``silu``, ``tanh`` or ``leaky_relu``.
        dropout: Dropout probability after each hidden activation.
        norm: ``batch`` or ``layer`` normalisation before each hidden activation, or ``None``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (),
        out_features: int | None = None,
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
        dropout: float = 0.0,
        norm: Literal["batch", "layer"] | None = None,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if norm is not None and norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)} or None, got {norm!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            if size < 1:
                raise ValueError(f"hidden sizes must be positive, got {list(hidden_sizes)}")
            layers.append(nn.Linear(width, size))
            if norm is not None:
                layers.append(_NORMS[norm](size))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        if out_features is not None:
            layers.append(nn.Linear(width, out_features))
            width = out_features
        super().__init__(*layers)
        self.in_features = in_features
        self.out_dim = width
