"""User encoders: how a recommender turns a user's watch history into one vector, by registered name.

A history reaches the recommender as a :class:`~jointembed.sparse.SparseBatch` of item IDs, oldest first (the data
modules and :class:`~jointembed.models.pretrained_recommender.PretrainedRecommender` keep the watch order). A user
encoder maps it to ``(B, d)`` through the recommender's input item table, which it reads but does not own, so the
table (and, with ``tie_output_embeddings``, the output table) stays one parameter of the recommender and a
``bag`` model keeps the exact weights and parameter names it had before encoders were a choice:

- ``bag``: the table's pooled bag (``sum``/``mean``/``sqrtn``); order is ignored (the YouTube network).
- ``sasrec``: causal self-attention over the last ``max_length`` items with learned positions; the user vector is
  the output at the newest position (Kang & McAuley 2018, "Self-Attentive Sequential Recommendation").
- ``gru``: a GRU over the last ``max_length`` items; the user vector is its last hidden state (GRU4Rec,
  Hidasi et al. 2016).

They have a registry of their own rather than a place among :data:`jointembed.registry.ENCODERS`: those
encoders own their inputs' whole path (preprocessing, tables) and are built standalone, while these take a table
that belongs to the model around them.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.nn.sparse_embedding import SparseEmbedding
from jointembed.registry import Registry
from jointembed.sparse import SparseBatch

__all__ = [
    "USER_ENCODERS",
    "UserEncoder",
    "BagUserEncoder",
    "SASRecUserEncoder",
    "GRUUserEncoder",
    "register_user_encoder",
    "create_user_encoder",
    "get_user_encoder_class",
    "list_user_encoders",
    "check_user_encoder",
    "padded_sequences",
]

USER_ENCODERS = Registry("user encoder", "jointembed.models.user_encoders")
register_user_encoder = USER_ENCODERS.register
create_user_encoder = USER_ENCODERS.create
get_user_encoder_class = USER_ENCODERS.get
list_user_encoders = USER_ENCODERS.names


def check_user_encoder(name: str, config: Mapping[str, Any] | None) -> None:
    """Refuse an unknown user encoder, or arguments it does not take, when a recommender is built (its layers are
    built later, with the tables)."""
    if not isinstance(name, str) or name not in list_user_encoders():
        raise ValueError(f"user_encoder must be one of {list_user_encoders()}, got {name!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"user_encoder_config must be a mapping of the encoder's arguments, got {config!r}")
    try:
        inspect.signature(get_user_encoder_class(name)).bind(embedding_dim=1, **(config or {}))
    except TypeError as error:
        raise ValueError(f"user_encoder_config does not fit user encoder {name!r}: {error}") from None


class UserEncoder(nn.Module, abc.ABC):
    """Base class: ``forward(history, items) -> (B, d)``, built with the item table's width ``embedding_dim``.

    Subclasses take their settings as typed keyword arguments (a recipe's ``user_encoder_config``) and return them
    from :meth:`get_config`, so ``create_user_encoder(enc.registry_name, **enc.get_config())`` rebuilds one.
    """

    registry_name: str
    #: Whether the vector depends on the order of the history (the contract test checks it either way).
    order_sensitive: bool = False

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be an integer >= 1, got {embedding_dim!r}")
        self.embedding_dim = embedding_dim

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, ``embedding_dim`` included."""
        return {"embedding_dim": self.embedding_dim}

    @classmethod
    def tiny(cls, embedding_dim: int = 8) -> UserEncoder:
        """A test-sized encoder of this kind."""
        return cls(embedding_dim)

    @abc.abstractmethod
    def forward(self, history: SparseBatch, items: SparseEmbedding) -> torch.Tensor:
        """``(B, d)`` one vector per history.

        Args:
            history: ``B`` bags of item IDs, oldest first; a bag may be empty.
            items: The recommender's ``(N, d)`` input item table.
        """


@register_user_encoder("bag")
class BagUserEncoder(UserEncoder):
    """The history as an unordered bag: the item table's pooled rows (its ``combiner``); an empty bag gives zeros.

    Has no parameters of its own, so a recommender with this encoder has the same weights, names and seeded
    initial values as before encoders were a choice.

    Args:
        embedding_dim: Width d of the item table.
    """

    def forward(self, history: SparseBatch, items: SparseEmbedding) -> torch.Tensor:
        """``(B, d)`` pooled bags."""
        return items(history)


def padded_sequences(history: SparseBatch, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``max_length`` IDs of each bag, left-padded so the newest item is in the last column.

    Args:
        history: ``B`` bags, oldest first.
        max_length: Items kept per bag (>= 1).

    Returns:
        ``ids (B, L)`` int64 (0 where padded) and ``mask (B, L)`` bool (True on a real item), with ``L`` the
        longest kept bag (at least 1).
    """
    tail = history.tail(max_length)
    lengths = tail.lengths()
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    bag = tail.bag_ids()
    within = torch.arange(tail.values.numel(), device=bag.device) - torch.repeat_interleave(tail.offsets, lengths)
    column = width - lengths[bag] + within
    ids = torch.zeros(len(tail), width, dtype=torch.long, device=bag.device)
    mask = torch.zeros(len(tail), width, dtype=torch.bool, device=bag.device)
    ids[bag, column] = tail.values
    mask[bag, column] = True
    return ids, mask


class _SequenceEncoder(UserEncoder):
    """Shared parts of the ordered encoders: settings checks and the lookup of the padded sequence's rows."""

    order_sensitive = True

    def __init__(self, embedding_dim: int, max_length: int, dropout: float) -> None:
        super().__init__(embedding_dim)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be an integer >= 1, got {max_length!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.max_length, self.dropout = max_length, dropout

    def _rows(self, history: SparseBatch, items: SparseEmbedding) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, d)`` item rows (zeros where padded) and the ``(B, L)`` mask of real items."""
        if history.weights is not None:
            raise ValueError(f"the {self.registry_name!r} user encoder reads an ordered history, not weighted bags")
        ids, mask = padded_sequences(history, self.max_length)
        rows = F.embedding(ids, items.weight, sparse=items.bag.sparse)
        return rows * mask.unsqueeze(-1).to(rows.dtype), mask


@register_user_encoder("sasrec")
class SASRecUserEncoder(_SequenceEncoder):
    """Self-attention over the last ``max_length`` items, with learned positions; the vector at the newest one.

    Item rows come from the recommender's input table (with ``tie_output_embeddings: true`` it is also the output
    table, as in SASRec); positions count back from the newest item, so the newest always has position 0 whatever
    the history's length. Pre-norm transformer blocks (``num_layers``, ``num_heads``, a ``ffn_factor``-wide
    feed-forward) and a final layer norm. Every position may attend to itself, so padded positions and empty
    histories stay finite (an empty history gives a learned vector from position 0 alone).

    Args:
        embedding_dim: Width d of the item table (the blocks' width).
        max_length: Latest items attended to.
        num_layers: Transformer blocks.
        num_heads: Attention heads (must divide d).
        ffn_factor: Feed-forward width as a multiple of d.
        dropout: Dropout on the input rows and inside the blocks.
        causal: Each position attends only to itself and older items (SASRec); ``False`` lets every position
            see the whole window (only the newest position's output is used either way).
    """

    def __init__(
        self,
        embedding_dim: int,
        max_length: int = 50,
        num_layers: int = 2,
        num_heads: int = 1,
        ffn_factor: int = 1,
        dropout: float = 0.2,
        causal: bool = True,
    ) -> None:
        super().__init__(embedding_dim, max_length, dropout)
        if num_layers < 1 or num_heads < 1 or embedding_dim % num_heads:
            raise ValueError(
                f"need num_layers >= 1 and num_heads >= 1 dividing embedding_dim={embedding_dim}, got "
                f"num_layers={num_layers}, num_heads={num_heads}"
            )
        if ffn_factor < 1:
            raise ValueError(f"ffn_factor must be >= 1, got {ffn_factor}")
        self.num_layers, self.num_heads, self.ffn_factor, self.causal = num_layers, num_heads, ffn_factor, causal
        self.positions = nn.Parameter(torch.randn(max_length, embedding_dim) * embedding_dim**-0.5)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            _Block(embedding_dim, num_heads, ffn_factor * embedding_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(embedding_dim)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments."""
        keys = ("max_length", "num_layers", "num_heads", "ffn_factor", "dropout", "causal")
        return {**super().get_config(), **{key: getattr(self, key) for key in keys}}

    @classmethod
    def tiny(cls, embedding_dim: int = 8) -> SASRecUserEncoder:
        """One block, one head, 8 positions, no dropout."""
        return cls(embedding_dim, max_length=8, num_layers=1, num_heads=1, dropout=0.0)

    def forward(self, history: SparseBatch, items: SparseEmbedding) -> torch.Tensor:
        """``(B, d)`` the output at each history's newest position."""
        rows, mask = self._rows(history, items)
        width = rows.shape[1]
        x = self.input_dropout(rows + self.positions[:width].flip(0))
        # True = may attend: real items (and the query itself, so no row is all masked and padding stays finite)
        allowed = mask.unsqueeze(1).expand(-1, width, -1)
        if self.causal:
            allowed = allowed & torch.ones(width, width, dtype=torch.bool, device=rows.device).tril()
        allowed = (allowed | torch.eye(width, dtype=torch.bool, device=rows.device)).unsqueeze(1)
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, last_only=i == len(self.blocks) - 1)
        return self.norm(x[:, -1])


class _Block(nn.Module):
    """A pre-norm transformer block (attention, then a ReLU feed-forward, each residual with dropout), written
    out rather than ``nn.TransformerEncoderLayer`` so the last block can compute the newest position only (the
    one output the user vector needs) and the mask broadcasts over heads instead of being copied per head."""

    def __init__(self, width: int, num_heads: int, ffn_width: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.attention_norm, self.ffn_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.query, self.key_value = nn.Linear(width, width), nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_width), nn.ReLU(), nn.Linear(ffn_width, width))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``x (B, L, d)``, ``allowed (B, 1, L, L)`` (True: query may attend to key) → ``(B, L, d)``, or
        ``(B, 1, d)`` for the newest position alone with ``last_only``."""
        batch, length, width = x.shape
        heads = lambda t: t.view(batch, t.shape[1], self.num_heads, -1).transpose(1, 2)  # noqa: E731
        normed = self.attention_norm(x)
        if last_only:
            x, allowed = x[:, -1:], allowed[:, :, -1:]
        keys, values = self.key_value(normed).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(
            heads(self.query(normed[:, -x.shape[1] :])),
            heads(keys),
            heads(values),
            attn_mask=allowed,  # no dropout on the attention weights: on a CPU it costs as much as the rest
        )
        attended = attended.transpose(1, 2).reshape(batch, x.shape[1], width)
        x = x + F.dropout(self.out(attended), self.dropout, self.training)
        return x + F.dropout(self.ffn(self.ffn_norm(x)), self.dropout, self.training)


@register_user_encoder("gru")
class GRUUserEncoder(_SequenceEncoder):
    """A GRU over the last ``max_length`` items, oldest first; the vector is its last layer's final hidden state.

    Item rows come from the recommender's input table; an empty history is read as one all-zero step.

    Args:
        embedding_dim: Width d of the item table (and of the hidden state).
        max_length: Latest items read.
        num_layers: Stacked GRU layers.
        dropout: Dropout on the input rows (and between layers).
    """

    def __init__(self, embedding_dim: int, max_length: int = 50, num_layers: int = 1, dropout: float = 0.2) -> None:
        super().__init__(embedding_dim, max_length, dropout)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = num_layers
        self.input_dropout = nn.Dropout(dropout)
        between = dropout if num_layers > 1 else 0.0
        self.gru = nn.GRU(embedding_dim, embedding_dim, num_layers, batch_first=True, dropout=between)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments."""
        return {
            **super().get_config(),
            "max_length": self.max_length,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        }

    @classmethod
    def tiny(cls, embedding_dim: int = 8) -> GRUUserEncoder:
        """One layer, 8 steps, no dropout."""
        return cls(embedding_dim, max_length=8, dropout=0.0)

    def forward(self, history: SparseBatch, items: SparseEmbedding) -> torch.Tensor:
        """``(B, d)`` the final hidden state of each history."""
        rows, mask = self._rows(history, items)
        lengths = mask.sum(1)
        # right-aligned rows: roll each to start at column 0 so packing reads only its real steps
        width = rows.shape[1]
        shift = (torch.arange(width, device=rows.device) + (width - lengths).unsqueeze(1)) % width
        rows = rows.gather(1, shift.unsqueeze(-1).expand_as(rows))
        packed = nn.utils.rnn.pack_padded_sequence(
            self.input_dropout(rows), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, hidden = self.gru(packed)
        return hidden[-1]
