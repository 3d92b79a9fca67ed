"""Serving a trained two-tower cold-start recommender: warm and cold movies ranked together in one index, new
movies added from their content alone.

:class:`PretrainedTwoTower` loads the folder ``jointembed fit`` writes for a
:class:`~jointembed.tasks.coldstart.ColdStartTask` run (``config.json`` with format ``jointembed.two_tower``: the
model's arguments, every movie's key, title, content text and whether it was watched in training;
``model.safetensors``; ``content/``: the text encoder's files).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from jointembed.config import check_at_least
from jointembed.errors import CheckpointError, UnknownItemError
from jointembed.models.pretrained_recommender import ItemScore, read_histories
from jointembed.models.recommender import recent_watches
from jointembed.models.two_tower import FORMAT, VERSION, TwoTowerRecommender
from jointembed.pretrained import WEIGHTS_NAME, load_weights, open_folder
from jointembed.search.catalogue import search_items
from jointembed.search.index import EmbeddingIndex
from jointembed.sparse import SparseBatch

__all__ = ["PretrainedTwoTower"]

ItemKey = int | str


class PretrainedTwoTower:
    """A trained two-tower model with its catalogue, answering in raw item keys and titles.

    Warm movies are placed by ID and content, cold ones (never watched in training, or added with
    :meth:`add_items`) by content alone; :meth:`recommend` ranks them all together by the model's score
    ``cos(u, v) / τ + b`` as one inner-product search (:meth:`catalogue_index`).

    Args:
        model: The trained model (put in eval mode).
        item_keys: ``N`` distinct raw keys in ID order.
        item_texts: ``N`` content texts.
        warm: ``N`` flags: watched in training.
        item_titles: ``N`` titles, or ``None``.
    """

    def __init__(
        self,
        model: TwoTowerRecommender,
        item_keys: Sequence[ItemKey],
        item_texts: Sequence[str],
        warm: Sequence[bool],
        item_titles: Sequence[str] | None = None,
    ) -> None:
        n = model.require_num_items()
        if not (len(item_keys) == len(item_texts) == len(warm) == n):
            raise ValueError(f"the model has {n} items but the catalogue gives {len(item_keys)} keys, "
                             f"{len(item_texts)} texts and {len(warm)} warm flags")  # fmt: skip
        self.model = model.eval()
        self.item_keys: list[ItemKey] = list(item_keys)
        self.item_texts: list[str] = list(item_texts)
        self.item_titles: list[str] = list(item_titles) if item_titles is not None else [""] * n
        self.warm = torch.as_tensor(list(warm), dtype=torch.bool)
        if len(set(self.item_keys)) != n:
            raise ValueError("item keys repeat: every movie needs its own key")
        self._ids = {key: i for i, key in enumerate(self.item_keys)}
        self.vectors, self.biases = model.catalogue(self.item_texts, self.warm)
        # [v, b] and, with the model's wide part, each movie's weighted bag of words
        self.rows = model.item_rows(
            self.vectors, self.biases, self.item_texts, self.warm, torch.arange(len(self.item_texts))
        )
        self._index: EmbeddingIndex | None = None
        unplaced = [i for i in range(n) if not self.warm[i] and not self.item_texts[i].strip()]
        if unplaced:
            shown = ", ".join(repr(self.item_keys[i]) for i in unplaced[:5])
            warnings.warn(
                f"{len(unplaced)} movie(s) were never watched in training and have no content (e.g. {shown}): "
                "nothing places them, so they are never recommended",
                stacklevel=2,
            )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> PretrainedTwoTower:
        """Load a folder written by ``jointembed fit`` for a cold-start recipe.

        Raises:
            CheckpointError: A missing or damaged file, another format, or a catalogue that does not fit the
                weights (the message names the file and field).
        """
        with open_folder(path, FORMAT, (VERSION,)) as (folder, config):
            try:
                model = TwoTowerRecommender.from_config(config["model"], folder / "content")
                keys, texts, warm = config["item_keys"], config["item_texts"], config["warm"]
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{folder / 'config.json'}: bad two-tower config ({error})") from None
            load_weights(model, folder / WEIGHTS_NAME, map_location=map_location)
        return cls(model, keys, texts, warm, config.get("item_titles"))

    # ----- catalogue ----------------------------------------------------------------------------------------

    def add_items(self, keys: Sequence[ItemKey], texts: Sequence[str], titles: Sequence[str] | None = None) -> None:
        """Add new movies, placed from their content alone (the ID table is not grown: they are cold).

        Raises:
            ValueError: A key already in the catalogue, lengths that disagree, or an empty content text.
        """
        titles = list(titles) if titles is not None else [""] * len(keys)
        if not len(keys) == len(texts) == len(titles):
            raise ValueError(f"{len(keys)} keys, {len(texts)} texts and {len(titles)} titles")
        for i, (key, text) in enumerate(zip(keys, texts, strict=True)):
            if key in self._ids:
                raise ValueError(f"keys[{i}] = {key!r} is already in the catalogue")
            if not str(text).strip():
                raise ValueError(f"texts[{i}] (movie {key!r}) is empty: a cold movie is placed by its content alone")
        content, bias = self.model.content_items(list(texts))
        self.vectors = torch.cat([self.vectors, content])
        self.biases = torch.cat([self.biases, bias])
        cold = torch.zeros(len(keys), dtype=torch.bool)
        self.rows = torch.cat([self.rows, self.model.item_rows(content, bias, list(texts), cold)])
        for key in keys:
            self._ids[key] = len(self.item_keys)
            self.item_keys.append(key)
        self.item_texts += list(texts)
        self.item_titles += titles
        self.warm = torch.cat([self.warm, torch.zeros(len(keys), dtype=torch.bool)])
        self._index = None

    def catalogue_index(
        self, backend: str = "exact", backend_options: Mapping[str, Any] | None = None
    ) -> EmbeddingIndex:
        """Every movie that can be placed (watched in training, or with content) as ``[v, b]`` in an
        inner-product index, so a user's ``[u / τ, 1]`` scores it as the model does; keyed by raw key, metadata
        ``title`` and ``warm``. ``backend="hnsw"`` for a large catalogue."""
        placed = [i for i in range(len(self.item_keys)) if bool(self.warm[i]) or self.item_texts[i].strip()]
        rows = self.rows[placed].numpy()
        index = EmbeddingIndex(rows.shape[1], backend, backend_options, "dot", {"name": "two-tower movies"})
        meta = [{"title": self.item_titles[i], "warm": bool(self.warm[i])} for i in placed]
        index.add(rows, [self.item_keys[i] for i in placed], ["movie"] * len(rows), meta)
        return index

    # ----- answers ------------------------------------------------------------------------------------------

    def item_id(self, key: ItemKey) -> int:
        """The ID of a raw key (``"50"`` finds 50 and the other way round) or of a unique title.

        Raises:
            UnknownItemError: No such key or title, or a title several movies share.
        """
        for candidate in (key, str(key), int(key) if str(key).lstrip("-").isdigit() else None):
            if candidate is not None and candidate in self._ids:
                return self._ids[candidate]
        matches = [i for i, title in enumerate(self.item_titles) if title and title == key]
        if len(matches) == 1:
            return matches[0]
        what = f"names {len(matches)} movies" if matches else "is neither a key nor a title of the catalogue"
        raise UnknownItemError(f"movie {key!r} {what}")

    def user_vectors(self, histories: Sequence[Sequence[ItemKey]], queries: bool = False) -> torch.Tensor:
        """``(B, D)`` user vectors from histories of raw keys or titles (oldest first). Movies the model never
        saw in training carry no ID information for the user tower: they are left out, with a warning. With
        ``queries``, the ``(B, D + 1 [+ V])`` search queries instead (:meth:`TwoTowerRecommender.user_queries`).

        Raises:
            TypeError: ``histories`` is not a list of lists of keys or titles.
            UnknownItemError: A key or title not in the catalogue (the message names it and its history).
            ValueError: A history with no warm movie left.
        """
        histories, many = read_histories(histories)
        if not many and histories[0]:
            raise TypeError("histories must be a list of histories (lists of item keys or titles), got one history: "
                            "pass [history]")  # fmt: skip
        histories = histories if many else []  # [] is no history at all
        rows = []
        for user, history in enumerate(histories):
            try:
                ids = [self.item_id(key) for key in history]
            except UnknownItemError as error:
                raise UnknownItemError(f"history {user}: {error}") from None
            warm = [i for i in ids if i < len(self.warm) and bool(self.warm[i])]
            if len(warm) < len(ids):
                warnings.warn(f"history {user}: {len(ids) - len(warm)} movie(s) the model never saw are left out of "
                              "the user's bag", stacklevel=3)  # fmt: skip
            if not warm:
                raise ValueError(f"history {user} has no movie the model saw in training: serve it by popularity")
            rows.append(warm)
        bags = SparseBatch.from_lists(rows)
        recent = recent_watches(bags, self.model.recent_items) if self.model.recent_items else None
        with torch.no_grad():
            if queries:
                return self.model.user_queries(bags, recent, self.item_texts)
            return self.model.user_vectors(bags, recent, self.item_texts)

    def recommend(
        self,
        history_keys: Sequence[ItemKey] | Sequence[Sequence[ItemKey]],
        k: int = 10,
        exclude_seen: bool = True,
        index: EmbeddingIndex | None = None,
    ) -> list[ItemScore] | list[list[ItemScore]]:
        """The top ``k`` movies, warm and cold together, for one history or for each of several.

        Args:
            history_keys: One history (raw keys or titles, oldest first) or a list of histories.
            k: Movies per history.
            exclude_seen: Never recommend a watched movie.
            index: A :meth:`catalogue_index` to search (e.g. HNSW); ``None`` builds an exact one once.
        """
        histories, many = read_histories(history_keys)  # a TypeError naming what was given, e.g. one string
        check_at_least("k", k, 1)
        if index is None:
            if self._index is None:
                self._index = self.catalogue_index()
            index = self._index
        queries = self.user_vectors(histories, queries=True).numpy().astype(np.float32)
        seen = [[self.item_keys[self.item_id(key)] for key in h] for h in histories] if exclude_seen else None
        found = search_items(index, queries, k, seen)
        results = [[ItemScore(key, self.item_titles[self._ids[key]], score) for key, score in row] for row in found]
        return results if many else results[0]
