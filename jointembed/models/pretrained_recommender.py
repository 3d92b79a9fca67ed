"""Serving a trained recommender in the data's own terms: raw item keys (e.g. MovieLens movie IDs) and titles.

:class:`PretrainedRecommender` loads a folder written by :meth:`Recommender.save_pretrained
<jointembed.models.recommender.Recommender.save_pretrained>` (``jointembed fit`` leaves one as
``<log_dir>/pretrained``) and answers with :class:`ItemScore` lists; it builds the model's inputs (the history
bag and, with ``recent_items``, the recent-watches bag) exactly as the data module did in training. The folder's
format (``config.json``: format, version, the model's arguments at their final sizes, ``recent_items``,
``item_keys``, ``item_titles`` and, optionally, ``item_metadata``: named columns of one JSON value per item, such
as the training watches or a synthetic world's true aspects, for maps of the item space) is written and read
here, for both classes.
"""

from __future__ import annotations

import contextlib
import operator
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from jointembed.errors import CheckpointError, UnknownItemError
from jointembed.models.recommender import ItemKey, Recommender, check_k, recent_watches
from jointembed.pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_weights,
    open_folder,
    state_for_saving,
    write_folder,
)
from jointembed.search.catalogue import Purpose, catalogue_index, check_catalogue_index, item_vectors, search_items
from jointembed.search.index import EmbeddingIndex
from jointembed.sparse import SparseBatch

__all__ = ["PretrainedRecommender", "ItemScore", "UnknownItemError", "FORMAT", "VERSION", "read_histories"]

FORMAT = "jointembed.recommender"
VERSION = 1
SUPPORTED_VERSIONS = (1,)


class ItemScore(NamedTuple):
    """One recommended item.

    Attributes:
        key: The item's raw key (e.g. a MovieLens movie ID), or its ID when the model has no keys.
        title: Its title, ``""`` when unknown.
        score: Its logit (recommendations) or cosine similarity (similar items).
    """

    key: ItemKey
    title: str
    score: float


class PretrainedRecommender:
    """A trained :class:`Recommender` with its catalogue, answering in raw item keys (e.g. MovieLens movie IDs)
    and titles: ``PretrainedRecommender.from_pretrained(folder).recommend([50, 181, 1], k=10)``.

    A history is a list of raw keys (or titles) in watch order, oldest first: with ``recent_items > 0`` its last
    ``recent_items`` watches also form the user-feature bag, exactly as the data module built it in training
    (:func:`recent_watches`). A key is looked up as given, then as the other of ``int``/``str`` (``"50"`` finds
    movie 50), then as a title; a title shared by several items is refused.

    Args:
        model: The trained recommender (put in eval mode).
        item_keys: ``N`` distinct raw keys in ID order, or ``None`` to key items by their IDs.
        item_titles: ``N`` titles in ID order, or ``None``.
        recent_items: Latest watches in the user-feature bag (0: the model takes no user features).
        item_metadata: ``{column: N values in ID order}`` (JSON scalars: numbers, strings, ``None``), or ``None``.
    """

    def __init__(
        self,
        model: Recommender,
        item_keys: Sequence[ItemKey] | None = None,
        item_titles: Sequence[str] | None = None,
        recent_items: int = 0,
        item_metadata: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        model.require_sizes()
        num_items = model.num_items
        keys = list(range(num_items)) if item_keys is None else [_plain_key(key) for key in item_keys]
        titles = None if item_titles is None else list(item_titles)
        metadata = _plain_metadata(item_metadata)
        catalogue = {"model": model.config, "recent_items": recent_items, "item_keys": keys, "item_titles": titles}
        _check_catalogue({**catalogue, "item_metadata": metadata})
        self.model = model.eval()
        self.item_keys: list[ItemKey] = keys
        self.item_titles: list[str] | None = titles
        self.recent_items = recent_items
        self.item_metadata: dict[str, list[Any]] | None = metadata
        self._ids = {key: i for i, key in enumerate(keys)}
        self._titles: dict[str, list[int]] = {}
        for i, title in enumerate(self.item_titles or []):
            self._titles.setdefault(title, []).append(i)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> PretrainedRecommender:
        """Load a folder written by :meth:`Recommender.save_pretrained` (or ``jointembed fit``'s
        ``<log_dir>/pretrained``); arguments and errors as :meth:`Recommender.from_pretrained`."""
        model, config = read_pretrained(path, strict, map_location)
        return cls(
            model, config["item_keys"], config["item_titles"], config["recent_items"], config.get("item_metadata")
        )

    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None) -> Path:
        """Write the model and its catalogue as a pretrained folder (see :meth:`Recommender.save_pretrained`)."""
        keys = None if self.item_keys == list(range(self.model.num_items)) else self.item_keys
        return self.model.save_pretrained(
            folder, keys, self.item_titles, card, recent_items=self.recent_items, item_metadata=self.item_metadata
        )

    def item_id(self, key: ItemKey) -> int:
        """The item ID of a raw key or a title.

        Raises:
            UnknownItemError: No item has that key or title, or several items share that title.
        """
        try:
            key = _plain_key(key)
        except ValueError as error:
            raise UnknownItemError(f"{error} (a raw key or a title)") from None
        found = self._ids.get(key)
        if found is None and isinstance(key, int):
            found = self._ids.get(str(key))
        if found is None and isinstance(key, str) and key.strip().lstrip("-").isdigit():
            found = self._ids.get(int(key))
        if found is not None:
            return found
        by_title = self._titles.get(key, []) if isinstance(key, str) else []
        if len(by_title) > 1:
            keys = [self.item_keys[i] for i in by_title]
            raise UnknownItemError(f"title {key!r} names {len(by_title)} items (keys {keys}): pass one of the keys")
        if by_title:
            return by_title[0]
        examples = ", ".join(repr(k) for k in self.item_keys[:3])
        raise UnknownItemError(
            f"item {key!r} is neither a key nor a title of this model's {self.model.num_items} items "
            f"(keys look like {examples})"
        )

    def _describe(self, ids: torch.Tensor, scores: torch.Tensor) -> list[list[ItemScore]]:
        titles = self.item_titles or [""] * self.model.num_items
        rows = zip(ids.tolist(), scores.tolist(), strict=True)
        return [
            [ItemScore(self.item_keys[j], titles[j], s) for j, s in zip(*row, strict=True) if j >= 0] for row in rows
        ]

    def _history_ids(self, histories: list[Sequence[ItemKey]], unknown: str) -> list[list[int]]:
        rows = []
        for user, history in enumerate(histories):
            row = []
            for key in history:
                try:
                    row.append(self.item_id(key))
                except UnknownItemError as error:
                    if unknown == "error":
                        raise UnknownItemError(f"history {user}: {error}") from None
                    warnings.warn(f"history {user}: skipped {error}", stacklevel=3)
            rows.append(row)
        return rows

    def recommend(
        self,
        history_keys: Sequence[ItemKey] | Sequence[Sequence[ItemKey]],
        k: int = 10,
        exclude_seen: bool = True,
        unknown: Literal["error", "skip"] = "error",
        index: EmbeddingIndex | None = None,
    ) -> list[ItemScore] | list[list[ItemScore]]:
        """The top ``k`` items for one history or for each of several.

        Args:
            history_keys: One history (a list of raw keys or titles, oldest first) or a list of histories.
            k: Items per history, ``1 <= k <= N``; fewer come back when fewer are left unwatched.
            exclude_seen: Never recommend a watched item.
            unknown: ``"error"`` raises on a key that is neither a key nor a title; ``"skip"`` leaves it out of
                the history with a warning naming it.
            index: Rank with this catalogue index (:meth:`catalogue_index` with ``"recommend"``; e.g. HNSW over a
                million items) instead of scoring every item; ``None`` scores every item exactly.

        Returns:
            For one history a list of :class:`ItemScore`, best first; for several, one such list each.

        Raises:
            TypeError: ``history_keys`` is neither a list of keys nor a list of such lists (see
                :func:`read_histories`; a single string is refused, not read as a history of its letters).
            UnknownItemError: An unknown or ambiguous key (with ``unknown="error"``); the message names it and
                its history.
            ValueError: An empty history, ``k`` out of range, or a model that needs user features a list of
                watches cannot supply (dense features, or categorical ones other than the recent watches).
        """
        if unknown not in ("error", "skip"):
            raise ValueError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        config = self.model.config
        if config["num_dense_features"] or (config["num_user_features"] and not self.recent_items):
            raise ValueError(
                "this model takes user features beyond the watch history (dense features, or a categorical bag "
                "other than the recent watches): call Recommender.recommend with user_features= and dense="
            )
        histories, many = read_histories(history_keys)
        history = SparseBatch.from_lists(self._history_ids(histories, unknown))
        history = history.to(self.model.item_table.device)
        recent = recent_watches(history, self.recent_items) if self.recent_items else None
        if index is None:
            recs = self.model.recommend(history, k, exclude_seen, user_features=recent)
            results = self._describe(recs.ids, recs.scores)
        else:
            check_catalogue_index(index, self.model, "recommend")
            check_k(k, self.model.num_items)
            users = self.model.serving_user_vectors(history, recent).float().cpu()
            queries = torch.cat([users, torch.ones(len(users), 1)], dim=1).numpy()
            seen = [[self.item_keys[i] for i in row] for row in history.tolist()] if exclude_seen else None
            results = self._from_index(search_items(index, queries, k, seen))
        return results if many else results[0]

    def similar_items(self, key: ItemKey, k: int = 10, index: EmbeddingIndex | None = None) -> list[ItemScore]:
        """The ``k`` items nearest to ``key`` (a raw key or title) by cosine similarity, itself excluded.

        Args:
            key: A raw key or title.
            k: Neighbours.
            index: Search this catalogue index (:meth:`catalogue_index` with ``"similar"``) instead of comparing
                with every item.

        Raises:
            TypeError: ``key`` is not one key or title (e.g. a list of them: ask once per item).
            UnknownItemError: An unknown or ambiguous key.
        """
        if not _is_key(key):
            raise TypeError(f"key must be one item key or title (an int or a str), got {_shown(key)}")
        item = self.item_id(key)
        if index is None:
            recs = self.model.similar_items([item], k)
            return self._describe(recs.ids, recs.scores)[0]
        check_catalogue_index(index, self.model, "similar")
        check_k(k, self.model.num_items)
        query = item_vectors(self.model, "similar")[item : item + 1]
        return self._from_index(search_items(index, query, k, [[self.item_keys[item]]]))[0]

    def catalogue_index(
        self,
        purpose: Purpose = "recommend",
        backend: str = "exact",
        backend_options: Mapping[str, Any] | None = None,
    ) -> EmbeddingIndex:
        """Every item in a search index, for :meth:`recommend` (``"recommend"``: the model's exact score as an
        inner product) or :meth:`similar_items` (``"similar"``: cosine), e.g. ``backend="hnsw"`` for a million
        items. The index can be saved and loaded like any :class:`~jointembed.EmbeddingIndex`; passing it for
        the other purpose or to another model raises ``ModelMismatchError``."""
        return catalogue_index(self, purpose, backend, backend_options)

    def _from_index(self, rows: list[list[tuple[Any, float]]]) -> list[list[ItemScore]]:
        titles = self.item_titles or [""] * self.model.num_items
        return [[ItemScore(key, titles[self._ids[key]], score) for key, score in row] for row in rows]


_EXPECTED_HISTORIES = "a list of item keys or titles (one history, oldest first) or a list of such lists"


def read_histories(history_keys: Any) -> tuple[list[list[Any]], bool]:
    """One history or several, as lists of keys, and whether several were given: what the ``recommend`` methods
    of the pretrained recommenders take. Lists, tuples and 1-D or 2-D arrays (numpy, torch, pandas) are read.

    Raises:
        TypeError: ``history_keys`` is not a list of keys nor a list of such lists: ``None``, a number, a set, a
            mapping, lists mixed with keys, or a single string (``"Star Wars"`` would otherwise be read as the
            history of 9 letters; the message suggests ``["Star Wars"]``); or a key that is neither an ``int``
            nor a ``str`` (the message names its history and position).
    """
    if isinstance(history_keys, (str, bytes)):
        raise TypeError(
            f"history_keys must be {_EXPECTED_HISTORIES}, got the string {history_keys!r}: pass "
            f"[{history_keys!r}] for a history of that one item"
        )
    values = _as_list(history_keys)
    if values is None:
        raise TypeError(f"history_keys must be {_EXPECTED_HISTORIES}, got {_shown(history_keys)}")
    lists = [_as_list(value) is not None for value in values]
    many = bool(values) and all(lists)
    if any(lists) and not many:
        raise TypeError(
            f"history_keys must be {_EXPECTED_HISTORIES}, got a list that mixes both: item {lists.index(True)} is "
            f"a list, item {lists.index(False)} is {_shown(values[lists.index(False)])}"
        )
    histories = [_as_list(value) or [] for value in values] if many else [values]
    for user, history in enumerate(histories):
        for position, key in enumerate(history):
            if not _is_key(key):
                raise TypeError(
                    f"history {user}, position {position}: an item key must be an int or a str (a raw key or a "
                    f"title), got {_shown(key)}"
                )
    return histories, many


def _as_list(value: Any) -> list[Any] | None:
    """``value`` as a list if it is a sequence (not a string) or a 1-D or 2-D array, else ``None``."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    if getattr(value, "ndim", None) in (1, 2) and callable(getattr(value, "tolist", None)):
        return value.tolist()
    return None


def _is_key(value: Any) -> bool:
    try:
        _plain_key(value)
    except ValueError:
        return False
    return True


def _shown(value: Any) -> str:
    """A value as a message shows it: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _plain_key(key: Any) -> ItemKey:
    """A raw item key as a JSON-safe ``int`` or ``str`` (numpy and torch integers become Python ints).

    Raises:
        ValueError: ``key`` is neither a string nor an integer (a bool is refused).
    """
    if isinstance(key, str):
        return str(key)
    if not isinstance(key, bool):
        with contextlib.suppress(TypeError):  # not an integer type: refused below
            return operator.index(key)
    raise ValueError(f"item keys must be ints or strs, got {key!r} ({type(key).__name__})")


def _plain_metadata(item_metadata: Mapping[str, Sequence[Any]] | None) -> dict[str, list[Any]] | None:
    """Item metadata as ``{str: list}`` (numpy columns become lists of Python scalars), or ``None``."""
    if item_metadata is None:
        return None
    if not isinstance(item_metadata, Mapping):
        raise ValueError(f"item_metadata must map column names to value lists, got {type(item_metadata).__name__}")
    return {
        str(name): values.tolist() if hasattr(values, "tolist") else list(values)
        for name, values in item_metadata.items()
    }


def _check_item_metadata(metadata: Any, num_items: int) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ValueError(f"field 'item_metadata' must be an object of columns, got {type(metadata).__name__}")
    for name, values in metadata.items():
        if not isinstance(values, list) or len(values) != num_items:
            size = len(values) if isinstance(values, list) else type(values).__name__
            raise ValueError(
                f"field 'item_metadata' column {name!r} must list the model's {num_items} items, got {size}"
            )
        bad = next((v for v in values if v is not None and not isinstance(v, (int, float, str))), None)
        if bad is not None:
            raise ValueError(f"field 'item_metadata' column {name!r} holds {bad!r}; only numbers, strs and null")


def _check_catalogue(config: dict[str, Any]) -> None:
    """Check the catalogue fields of a pretrained config against its ``model`` field.

    Raises:
        ValueError: A field of the wrong type or length, repeated keys, an impossible ``recent_items``, or item
            metadata that is not a column of JSON scalars per item.
    """
    num_items = config["model"]["num_items"]
    for field in ("item_keys", "item_titles"):
        value = config[field]
        if value is not None and (not isinstance(value, list) or len(value) != num_items):
            size = len(value) if isinstance(value, list) else type(value).__name__
            raise ValueError(f"field {field!r} must list the model's {num_items} items, got {size}")
    keys = config["item_keys"]
    if keys is not None:
        if any(isinstance(key, bool) or not isinstance(key, (int, str)) for key in keys):
            raise ValueError("field 'item_keys' must hold ints and strs only")
        if len(set(keys)) != len(keys):
            seen: set[ItemKey] = set()
            repeated = next(key for key in keys if key in seen or seen.add(key))
            raise ValueError(f"field 'item_keys' repeats the key {repeated!r}; keys must be distinct")
    if config["item_titles"] is not None and not all(isinstance(t, str) for t in config["item_titles"]):
        raise ValueError("field 'item_titles' must hold strs only")
    _check_item_metadata(config.get("item_metadata"), num_items)
    recent = config["recent_items"]
    if isinstance(recent, bool) or not isinstance(recent, int) or recent < 0:
        raise ValueError(f"field 'recent_items' must be an integer >= 0, got {recent!r}")
    if recent and config["model"]["num_user_features"] != num_items:
        raise ValueError(
            f"recent_items={recent} feeds the latest watches to the user-feature table, so the model needs "
            f"num_user_features={num_items} (the catalogue size), got {config['model']['num_user_features']}"
        )


def write_pretrained(
    model: Recommender,
    folder: str | os.PathLike,
    item_keys: Sequence[ItemKey] | None,
    item_titles: Sequence[str] | None,
    card: str | None,
    recent_items: int,
    item_metadata: Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """Check the catalogue and write ``model``'s folder; see :meth:`Recommender.save_pretrained`."""
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.config,
        "recent_items": recent_items,
        "item_keys": None if item_keys is None else [_plain_key(key) for key in item_keys],
        "item_titles": None if item_titles is None else [str(title) for title in item_titles],
    }
    metadata = _plain_metadata(item_metadata)
    if metadata is not None:  # absent rather than null: folders without it stay as they were
        config["item_metadata"] = metadata
    _check_catalogue(config)
    return write_folder(folder, config, state_for_saving(model), card=card)


def read_pretrained(
    path: str | os.PathLike, strict: bool, map_location: str | torch.device
) -> tuple[Recommender, dict[str, Any]]:
    """Read, check and build a pretrained recommender folder: ``(model in eval mode, its config)``."""
    with open_folder(path, FORMAT, SUPPORTED_VERSIONS) as (folder, config):
        return _build_pretrained(folder, config, strict, map_location)


def _build_pretrained(
    folder: Path, config: dict[str, Any], strict: bool, map_location: str | torch.device
) -> tuple[Recommender, dict[str, Any]]:
    where = folder / CONFIG_NAME
    missing = [f for f in ("model", "recent_items", "item_keys", "item_titles") if f not in config]
    if missing or not isinstance(config["model"], dict):
        raise CheckpointError(f"{where}: missing fields {missing} (or 'model' is not an object)")
    try:
        model = Recommender(**config["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: field 'model' does not fit Recommender's arguments: {error}") from error
    if not model.sized:  # a folder is loaded without the data, so it must hold the final sizes
        raise CheckpointError(f"{where}: field 'model' leaves num_items or num_user_features to the data (null)")
    try:
        _check_catalogue(config)
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from error
    load_weights(model, folder / WEIGHTS_NAME, strict=strict, map_location=map_location)
    return model.to(map_location).eval(), config
