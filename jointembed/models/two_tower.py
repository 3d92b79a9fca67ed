"""The two-tower cold-start recommender: users and movies in one contrastively trained space, movies bound to
their content so that a movie nobody has watched is placed from its content alone.

- **User tower**: the watched item IDs through a registered user encoder (:mod:`jointembed.models.user_encoders`:
  the ``bag`` of IDs, or ``sasrec`` / ``gru`` over the ordered latest watches; and, optionally, the recent-watches
  bag) → an MLP → a unit vector.
- **Movie tower**: ``normalize(content(text) + keep · normalize(E[j]))``: the content encoder (any registered
  text encoder: from scratch, or a pretrained transformer) over the movie's text, plus its ID embedding ``E[j]``
  when the movie has been watched. ``keep`` is dropped at random in training (``id_dropout``), so content alone
  must place a movie; a cold movie (no watches) always has ``keep = 0``.

A user scores a movie by ``cos(u, v) / temperature + b``, the bias learned per ID and predicted from the content;
recommendation is then a maximum-inner-product search of ``[u / temperature, 1]`` among ``[v, b]`` over warm and
cold movies together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.encoders.base import Encoder, longest_first
from jointembed.models.user_encoders import check_user_encoder, create_user_encoder
from jointembed.models.wide import WideContent
from jointembed.nn.mlp import MLP
from jointembed.nn.sparse_embedding import SparseEmbedding
from jointembed.sparse import SparseBatch

__all__ = ["TwoTowerRecommender"]


class TwoTowerRecommender(nn.Module):
    """A user tower over watched IDs (a registered user encoder) and a movie tower over ID + content, in one
    ``output_dim`` space.

    Args:
        content: The movie content encoder (a text :class:`~jointembed.encoders.base.Encoder` whose
            ``output_dim`` is this model's).
        num_items: Catalogue size N; ``None`` takes it from the data before training (:meth:`set_num_items`).
        id_dim: Width of the user tower's item-ID embeddings.
        hidden_sizes: Hidden widths of the user tower's MLP.
        recent_items: Also embed the user's ``recent_items`` latest watches as a bag of their own (0: off).
        combiner: How a bag of IDs is pooled (``sum``, ``mean``, ``sqrtn``).
        dropout: Dropout in the user tower.
        id_dropout: Probability, per movie and step, that its ID part is left out in training.
        temperature: Softmax temperature of the cosine scores.
        history_content: Describe a user also by the mean content vector of their watched movies (beside the
            ID bags), so taste in content reaches the user tower directly.
        freeze_content: Freeze the content encoder's backbone (a pretrained transformer): only its projection
            head trains, and its features of every movie are computed once (:meth:`cache_content`).
        wide: Add the wide part (:class:`~jointembed.models.wide.WideContent`): the raw-words profile affinity
            and a popularity predicted from the words beside the deep score, and a learned gate of the personal
            part on the history's length.
        wide_vocabulary: The wide part's words; ``None`` fits them on the warm movies' texts (:meth:`fit_wide`).
        cold_deep: Weight of the deep part (content vector and content-predicted bias) of a movie placed without
            its ID (cold, new, or its ID dropped in training), in training and scoring alike; 0 leaves such a
            movie to the wide part (the words). A movie's vector and bias are then scaled, not renormalised.
        user_encoder: Registered name of how the history of watched IDs becomes the user tower's input
            (:mod:`jointembed.models.user_encoders`): ``bag`` (pooled by ``combiner``, order ignored), ``sasrec``
            (self-attention over the ordered latest watches) or ``gru``; each reads the ``id_dim``-wide history
            table.
        user_encoder_config: The user encoder's own arguments, e.g. ``{"max_length": 20}`` (its width is
            ``id_dim``); the saved configuration holds all of them, defaults included.
    """

    def __init__(
        self,
        content: Encoder,
        num_items: int | None = None,
        id_dim: int = 32,
        hidden_sizes: Sequence[int] = (128,),
        recent_items: int = 0,
        combiner: str = "sqrtn",
        dropout: float = 0.0,
        id_dropout: float = 0.5,
        temperature: float = 0.05,
        freeze_content: bool = False,
        history_content: bool = False,
        wide: bool = False,
        wide_vocabulary: list[str] | None = None,
        cold_deep: float = 1.0,
        user_encoder: str = "bag",
        user_encoder_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_user_encoder(user_encoder, user_encoder_config)
        if not 0.0 <= id_dropout <= 1.0:
            raise ValueError(f"id_dropout must be in [0, 1], got {id_dropout}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.content = content
        self.output_dim = int(content.output_dim)
        self.config = {
            "num_items": num_items, "id_dim": id_dim, "hidden_sizes": list(hidden_sizes),
            "recent_items": recent_items, "combiner": combiner, "dropout": dropout, "id_dropout": id_dropout,
            "temperature": temperature, "freeze_content": freeze_content,
            "history_content": history_content, "wide": wide, "wide_vocabulary": wide_vocabulary,
            "cold_deep": cold_deep, "user_encoder": user_encoder,
            "user_encoder_config": dict(user_encoder_config or {}),
        }  # fmt: skip
        if not 0.0 <= cold_deep <= 1.0:
            raise ValueError(f"cold_deep must be in [0, 1], got {cold_deep}")
        if cold_deep < 1.0 and not wide:
            raise ValueError(f"cold_deep={cold_deep} leaves cold movies to the wide part: set wide=True")
        self.cold_deep = cold_deep
        self.wide = WideContent(wide_vocabulary, affinity_init=1.0 / temperature) if wide else None
        if freeze_content:
            content.freeze()
        self.id_dropout, self.temperature, self.recent_items = id_dropout, temperature, recent_items
        self.num_items: int | None = None
        self._feature_cache: torch.Tensor | None = None
        self._cached_texts: tuple[str, ...] | None = None
        if num_items is not None:
            self.set_num_items(num_items)

    def set_num_items(self, num_items: int) -> None:
        """Create the ID tables for a catalogue of ``num_items`` (a number given before is checked).

        Raises:
            ValueError: A different size than the one the model was built with.
        """
        if self.num_items is not None:
            if num_items != self.num_items:
                raise ValueError(f"the model has {self.num_items} items but the data has {num_items}")
            return
        c = self.config
        self.num_items = int(num_items)
        self.config["num_items"] = self.num_items
        if self.wide is not None:
            self.wide.set_catalogue_size(self.num_items)
        self.history_embedding = SparseEmbedding(num_items, c["id_dim"], combiner=c["combiner"])
        in_features = c["id_dim"]
        if c["recent_items"]:
            self.recent_embedding = SparseEmbedding(num_items, c["id_dim"], combiner=c["combiner"])
            in_features += c["id_dim"]
        if c["history_content"]:
            in_features += self.output_dim
        self.user_tower = MLP(in_features, c["hidden_sizes"], self.output_dim, dropout=c["dropout"])
        self.item_ids = nn.Embedding(num_items, self.output_dim)
        nn.init.normal_(self.item_ids.weight, std=0.1)
        self.id_bias = nn.Embedding(num_items, 1)
        nn.init.zeros_(self.id_bias.weight)
        self.content_bias = nn.Linear(self.output_dim, 1)
        # built last: the bag encoder has no parameters, so a bag model draws the same weights as before
        encoder = create_user_encoder(c["user_encoder"], embedding_dim=c["id_dim"], **c["user_encoder_config"])
        self.user_encoder = encoder
        self.config["user_encoder_config"] = {k: v for k, v in encoder.get_config().items() if k != "embedding_dim"}

    def require_num_items(self) -> int:
        """The catalogue size; raises if the model was not sized yet."""
        if self.num_items is None:
            raise RuntimeError("the model has no catalogue size yet: set_num_items(n) (the task does it from data)")
        return self.num_items

    # ----- towers -------------------------------------------------------------------------------------------

    def user_vectors(
        self, history: SparseBatch, recent: SparseBatch | None = None, texts: Sequence[str] | None = None
    ) -> torch.Tensor:
        """``(B, D)`` unit user vectors from ``B`` histories of watched item IDs (and the recent-watches bags).

        Args:
            history: ``B`` bags of watched item IDs, oldest first (the order matters to a sequential user encoder).
            recent: ``B`` bags of the latest watches (with ``recent_items > 0``).
            texts: Every item's content text (with ``history_content``): the mean content vector of the watched
                movies joins the ID bags, so a user is also described by what their movies are about.
        """
        self.require_num_items()
        parts = [self.user_encoder(history, self.history_embedding)]
        if self.recent_items:
            if recent is None:
                raise ValueError("the model embeds the recent-watches bag (recent_items > 0): pass recent=")
            parts.append(self.recent_embedding(recent))
        if self.config["history_content"]:
            if texts is None:
                raise ValueError("the model describes users by their movies' content (history_content): pass texts=")
            parts.append(self._history_content(history, texts))
        return F.normalize(self.user_tower(torch.cat(parts, dim=1)), dim=-1)

    def _history_content(self, history: SparseBatch, texts: Sequence[str]) -> torch.Tensor:
        """``(B, D)`` mean content vector of each bag's movies (zeros for an empty bag)."""
        ids, inverse = torch.unique(history.values, return_inverse=True)
        content = self.content_vectors([texts[i] for i in ids.tolist()], ids)
        has_text = torch.tensor([bool(str(texts[i]).strip()) for i in ids.tolist()], device=content.device)
        content = content * has_text.unsqueeze(1).to(content.dtype)
        lengths = history.lengths()
        bag = torch.repeat_interleave(torch.arange(len(lengths), device=content.device), lengths)
        sums = torch.zeros(len(lengths), content.shape[1], device=content.device, dtype=content.dtype)
        sums.index_add_(0, bag, content[inverse])
        return sums / lengths.clamp_min(1).unsqueeze(1).to(content.dtype)

    def content_vectors(self, texts: Sequence[str], item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, D)`` unit content vectors of ``n`` texts. With a frozen content backbone and ``item_ids`` into
        the texts given to :meth:`cache_content`, the backbone features are read from that cache."""
        if self._feature_cache is not None and item_ids is not None:
            return self.content.head(self._feature_cache[item_ids.cpu()].to(self.item_ids.weight.device))
        return self.content(list(texts))

    def cache_content(self, texts: Sequence[str]) -> None:
        """With a frozen backbone (e.g. a pretrained MiniLM), compute its features of every item's text once, so
        training runs only the projection head (the cache is not saved; it is rebuilt from the texts)."""
        if not getattr(self.content, "frozen", False):
            return
        texts = tuple(texts)
        if self._cached_texts == texts:
            return
        order = self._length_order(texts)
        with torch.no_grad():
            parts = [
                self.content.encode_backbone([texts[i] for i in order[start : start + 256]]).cpu()
                for start in range(0, len(texts), 256)
            ]
        self._feature_cache, self._cached_texts = torch.cat(parts)[torch.as_tensor(order).argsort()], texts

    def _length_order(self, texts: Sequence[str]) -> list[int]:
        """Positions of ``texts`` longest first by the content encoder's own length (tokens), so each batch of
        the catalogue pads to texts of its own length; the given order when the encoder pads nothing."""
        lengths = self.content.input_lengths(list(texts))
        return list(range(len(texts))) if lengths is None else longest_first(lengths)

    def items(
        self, item_ids: torch.Tensor, texts: Sequence[str], keep_id: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Movie vectors and biases: a user ``u`` scores movie ``j`` as ``u · v_j / temperature + b_j``.

        The bias carries what is not taste (how widely a movie is watched): learned per ID for a watched movie
        and predicted from the content for every movie, so a cold movie gets one too.

        Args:
            item_ids: ``(n,)`` item IDs.
            texts: ``n`` content texts of those items.
            keep_id: ``(n,)`` bool: use the ID part (False for a cold movie, or when dropped in training).

        Returns:
            ``(n, D)`` unit vectors and ``(n,)`` biases; a movie with neither content text nor its ID part gets a
            zero vector (it cannot be placed; :class:`~jointembed.models.pretrained_two_tower.PretrainedTwoTower`
            leaves such movies out).
        """
        # a movie without content text gets no content part (not the embedding of an empty string)
        has_text = torch.tensor([bool(str(t).strip()) for t in texts], device=item_ids.device)
        content = self.content_vectors(texts, item_ids) * has_text.unsqueeze(1).to(self.item_ids.weight.dtype)
        keep = keep_id.to(content.dtype)
        ids = F.normalize(self.item_ids(item_ids), dim=-1)
        vectors = F.normalize(content + keep.unsqueeze(1) * ids, dim=-1)
        bias = self.content_bias(content).squeeze(1) + keep * self.id_bias(item_ids).squeeze(1)
        if self.cold_deep != 1.0:
            weight = keep + (1 - keep) * self.cold_deep
            vectors, bias = vectors * weight.unsqueeze(1), bias * weight
        if self.wide is not None:
            bias = bias + self.wide.popularity_of(self._wide_bags(texts, item_ids), keep_id)
        return vectors, bias

    # ----- the wide part ------------------------------------------------------------------------------------

    def fit_wide(self, texts: Sequence[str], warm: torch.Tensor, counts: torch.Tensor | None = None) -> None:
        """Fit the wide part's vocabulary on the warm movies' texts (once; a loaded model keeps its own) and
        compute every item's bag of words (``texts``: ``N``, ``warm``: ``(N,)`` bool, ``counts``: ``(N,)``
        training watches, which start the word popularity weights). Nothing without ``wide``."""
        if self.wide is None:
            return
        if not self.wide.fitted:
            chosen = warm.nonzero().squeeze(1).tolist()
            self.wide.fit([texts[i] for i in chosen], None if counts is None else counts[chosen].tolist())
            self.config["wide_vocabulary"] = list(self.wide.require_fitted())
            self.wide.to(self.item_ids.weight.device)
        self.wide.cache_items(texts)

    def _wide_bags(self, texts: Sequence[str], item_ids: torch.Tensor | None) -> Any:
        """Bags of words of items: from the catalogue cache for catalogue IDs, else from the texts."""
        if item_ids is not None and self.wide.has_catalogue:
            return self.wide.item_bags(item_ids)
        return self.wide.bags(texts)

    def scores(
        self,
        users: torch.Tensor,
        history: SparseBatch,
        vectors: torch.Tensor,
        biases: torch.Tensor,
        item_ids: torch.Tensor,
        keep_id: torch.Tensor,
    ) -> torch.Tensor:
        """``(B, n)`` scores of ``n`` catalogue items for ``B`` users (training's factored form of
        :meth:`user_queries` · :meth:`item_rows`): ``s(|H|) · (cos / τ + w_aff · affinity) + b``.

        Args:
            users: ``(B, D)`` unit user vectors of ``history``.
            history: The ``B`` history bags.
            vectors, biases: ``(n, D)`` and ``(n,)`` from :meth:`items`.
            item_ids: ``(n,)`` catalogue IDs; ``keep_id``: ``(n,)`` bool, as given to :meth:`items`.
        """
        logits = users @ vectors.T / self.temperature
        if self.wide is not None:
            affinity = self.wide.affinity(self.wide.profiles(history), self.wide.item_bags(item_ids))
            logits = self.wide.scale(history.lengths()).unsqueeze(1) * (
                logits + affinity * self.wide.item_weights(keep_id).unsqueeze(0)
            )
        return logits + biases

    def user_queries(
        self, history: SparseBatch, recent: SparseBatch | None = None, texts: Sequence[str] | None = None
    ) -> torch.Tensor:
        """``(B, D + 1 [+ V])`` queries: a user scores a movie by its query · the movie's :meth:`item_rows`
        (``[s · u / τ, 1, s · profile]``, the wide columns only with ``wide``)."""
        users = self.user_vectors(history, recent, texts) / self.temperature
        ones = torch.ones(len(users), 1, dtype=users.dtype, device=users.device)
        if self.wide is None:
            return torch.cat([users, ones], dim=1)
        lengths = history.lengths().to(users.device)
        scale = self.wide.scale(lengths).unsqueeze(1)
        popularity = self.wide.short_popularity(lengths).unsqueeze(1).to(users.dtype)
        return torch.cat([scale * users, ones, scale * self.wide.profiles(history), popularity], dim=1)

    @torch.no_grad()
    def item_rows(
        self,
        vectors: torch.Tensor,
        biases: torch.Tensor,
        texts: Sequence[str],
        keep_id: torch.Tensor,
        item_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(n, D + 1 [+ V + 1])`` rows ``[v, b, w_aff[keep] · bag, log count]`` of movies with these vectors,
        biases (:meth:`catalogue`, :meth:`content_items`), texts and ID flags, for an inner-product search; with
        the wide part, the movies with their ID need their catalogue ``item_ids`` (their log counts)."""
        rows = [vectors, biases.unsqueeze(1)]
        if self.wide is not None:
            matrix = self.wide.bags(texts)
            bags = torch.from_numpy(matrix.toarray()).to(vectors.device)
            rows.append(self.wide.item_weights(keep_id.to(vectors.device)).unsqueeze(1) * bags)
            rows.append(self.wide.item_popularity(item_ids, keep_id, matrix).to(vectors).unsqueeze(1))
        return torch.cat(rows, dim=1)

    def id_vectors(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``(n, D)`` unit ID embeddings (what the binding loss aligns with the content vectors)."""
        return F.normalize(self.item_ids(item_ids), dim=-1)

    @torch.no_grad()
    def catalogue(
        self, texts: Sequence[str], warm: torch.Tensor, batch_size: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, D)`` vectors and ``(N,)`` biases of every movie (:meth:`items`), in evaluation mode: ID + content
        for warm movies, content alone for the others (``warm``: ``(N,)`` bool). Batches run longest text first
        (:meth:`_length_order`); the rows come back in item ID order."""
        n = self.require_num_items()
        if len(texts) != n or warm.shape != (n,):
            raise ValueError(f"need {n} texts and a ({n},) warm mask, got {len(texts)} and {tuple(warm.shape)}")
        self.fit_wide(texts, warm)
        device = self.item_ids.weight.device
        cached = self._feature_cache is not None  # then the content comes from the cache, at no padding cost

        def part(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.items(ids, [texts[i] for i in ids.tolist()], warm[ids.cpu()].to(device))

        return self._in_batches(part, list(range(n)) if cached else self._length_order(texts), batch_size)

    @torch.no_grad()
    def content_items(self, texts: Sequence[str], batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, D)`` vectors and ``(n,)`` biases of movies placed by their content alone (new movies, without an
        ID), in evaluation mode: batches run longest text first (:meth:`_length_order`), rows come back in the
        order given. The same as :meth:`items` for a cold movie with that text."""

        def part(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            chosen = [texts[i] for i in ids.tolist()]
            content = self.content_vectors(chosen)
            bias = self.content_bias(content).squeeze(1)
            content, bias = content * self.cold_deep, bias * self.cold_deep
            return content, bias if self.wide is None else bias + self.wide.popularity_of(self.wide.bags(chosen))

        return self._in_batches(part, self._length_order(texts), batch_size)

    def _in_batches(
        self,
        part: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        order: Sequence[int],
        batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``part`` (positions → vectors and biases) over batches of positions taken in ``order``, in evaluation
        mode; the rows come back by position."""
        was_training = self.training
        self.eval()
        positions = torch.as_tensor(order, dtype=torch.long, device=self.item_ids.weight.device)
        try:
            parts = [part(positions[start : start + batch_size]) for start in range(0, len(positions), batch_size)]
        finally:
            self.train(was_training)
        inverse = positions.argsort()  # back to the positions' order
        return torch.cat([v for v, _ in parts])[inverse], torch.cat([b for _, b in parts])[inverse]

    # ----- saving -------------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON types) with the content encoder as ``{"type", "config"}``."""
        return {**self.config, "content": {"type": self.content.registry_name, "config": self.content.get_config()}}

    def save_pretrained(self, folder: str | os.PathLike, extra: dict[str, Any], card: str | None = None) -> Path:
        """Write a pretrained folder (``config.json``: format ``jointembed.two_tower``, the model's arguments and
        ``extra`` (the catalogue); ``model.safetensors``; ``content/``: the encoder's files)."""
        from jointembed.pretrained import state_for_saving, write_folder

        def config_in(tmp: Path) -> dict[str, Any]:
            (tmp / "content").mkdir()
            content = {"type": self.content.registry_name, "config": self.content.save_to(tmp / "content")}
            model = {**self.config, "content": content}
            return {"format": FORMAT, "version": VERSION, "model": model, **extra}

        return write_folder(folder, config_in, state_for_saving(self), card=card)

    @classmethod
    def from_config(cls, config: dict[str, Any], folder: Path | None = None) -> TwoTowerRecommender:
        """Rebuild (random weights) from :meth:`get_config` / a saved folder's ``model`` entry."""
        from jointembed.registry import get_encoder_class

        args = dict(config)
        spec = args.pop("content")
        encoder_class = get_encoder_class(spec["type"])
        content = encoder_class(**spec["config"]) if folder is None else encoder_class.load_from(spec["config"], folder)
        return cls(content, **args)


FORMAT = "jointembed.two_tower"
VERSION = 1
