"""IDs: raw keys (ints or strings: movie IDs, user features, digit names) → table indices → a SparseBatch of bags."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from jointembed.data.media import EmptyInputError
from jointembed.errors import CheckpointError, VocabularyFormatError
from jointembed.modalities.base import Modality
from jointembed.registry import register_modality
from jointembed.sparse import SparseBatch
from jointembed.trust import reference
from jointembed.vocab import Vocabulary

__all__ = ["IdsModality", "parse_id_list"]

Key = int | str
_INT = re.compile(r"[+-]?\d+\Z")
VOCAB_FILE = "vocab.json"


def parse_id_list(cell: str) -> tuple[Key, ...]:
    """Split a CSV ``ids`` cell: by ``|`` when it holds one, else by whitespace; integer literals become ints.

    Example: ``"3 17 42"`` → ``(3, 17, 42)``; ``"new york|paris"`` → ``("new york", "paris")``.
    """
    parts = cell.split("|") if "|" in cell else cell.split()
    tokens = [part.strip() for part in parts]
    return tuple(int(t) if _INT.match(t) else t for t in tokens if t)


def _check_keys(value: Any) -> list[Key]:
    keys = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    for i, key in enumerate(keys):
        if isinstance(key, np.integer):  # keys taken from numpy or pandas
            keys[i] = key = int(key)
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"an ID must be an integer or a string, got {key!r} ({type(key).__name__})")
    return keys


@register_modality("ids")
class IdsModality(Modality):
    """A bag of raw keys per example, looked up in a table: e.g. ``["Heat", "Up"]`` or ``[12]``.

    ``fit`` on the training bags chooses the lookup: when every training key is an integer, integers index the
    table as they are (``0 <= id < num_ids``, ``num_ids`` one more than the largest key of any split); otherwise
    a :class:`~jointembed.vocab.Vocabulary` of the training keys (ID 0 ``<pad>``, 1 ``<oov>``, then by count).
    A bound :class:`~jointembed.encoders.ids.IdEncoder` built with ``num_embeddings: null`` takes its table
    size from here, so no recipe repeats the data's vocabulary size.

    Raw values: one key, or a list of keys. Batch: :class:`~jointembed.sparse.SparseBatch`. An empty bag is an
    :class:`~jointembed.data.media.EmptyInputError` (the data module and ``embed`` add the row, and skip it where
    told to skip bad values): every empty bag would embed to the same vector. A manifest's empty list or cell is a
    missing value, not an empty bag.

    Args:
        unknown: A key the vocabulary does not hold: ``oov`` maps it to ``<oov>``; ``error`` raises. Integer
            keys outside the table always raise.
        empty: ``error`` refuses an empty bag; ``allow`` embeds it (as the encoder's vector of no IDs).
        mode: Set by ``fit`` (leave unset in recipes): ``integer`` or ``vocabulary``.
        num_ids: Set by ``fit``: the table size the IDs index.
        vocabulary: Set by ``fit``: the vocabulary's regular keys in ID order (saved as ``vocab.json``).
    """

    def __init__(
        self,
        unknown: Literal["oov", "error"] = "oov",
        mode: Literal["integer", "vocabulary"] | None = None,
        num_ids: int | None = None,
        vocabulary: list[Key] | None = None,
        empty: Literal["error", "allow"] = "error",
    ) -> None:
        super().__init__()
        self._set_config(locals())
        if unknown not in ("oov", "error"):
            raise ValueError(f"unknown must be 'oov' or 'error', got {unknown!r}")
        if empty not in ("error", "allow"):
            raise ValueError(f"empty must be 'error' or 'allow', got {empty!r}")
        self.empty = empty
        if mode not in (None, "integer", "vocabulary"):
            raise ValueError(f"mode must be 'integer' or 'vocabulary', got {mode!r}")
        self.unknown = unknown
        self.table_size: int | None = None  # rows of the bound IdEncoder's table, when it was given a size
        self.mode = mode
        self.vocab: Vocabulary | None = None
        self.num_ids = num_ids
        if mode == "vocabulary":
            if vocabulary is None:
                raise ValueError("mode 'vocabulary' needs the vocabulary's keys")
            self._set_vocabulary(Vocabulary(vocabulary))
        elif mode == "integer" and (num_ids is None or num_ids < 1):
            raise ValueError(f"mode 'integer' needs num_ids >= 1, got {num_ids!r}")

    def _set_vocabulary(self, vocab: Vocabulary) -> None:
        self.vocab, self.mode, self.num_ids = vocab, "vocabulary", len(vocab)
        self._config.update(mode="vocabulary", num_ids=len(vocab), vocabulary=list(vocab.values))

    @property
    def fitted(self) -> bool:
        return self.mode is not None

    def fit(self, values: Sequence[Any], every: Sequence[Any] = ()) -> None:
        """Choose integer IDs or a vocabulary from the training bags (see the class docstring); with no key in
        any split, learn nothing (the unit stays unfitted)."""
        bags = [_check_keys(v) for v in values]
        if any(isinstance(k, str) for bag in bags for k in bag):
            self._set_vocabulary(Vocabulary.from_bags(bags))
            return
        ints = [k for v in (*values, *every) for k in _check_keys(v) if isinstance(k, int)]
        if not ints:
            return  # no IDs anywhere: stay unfitted, as a table of 0 IDs is no valid setting to save and rebuild
        self.mode, self.num_ids, self.vocab = "integer", max(ints, default=-1) + 1, None
        self._config.update(mode="integer", num_ids=self.num_ids, vocabulary=None)

    def parse_cell(self, value: Any, base: Path, from_csv: bool) -> tuple[Key, ...]:
        keys = parse_id_list(value) if from_csv else _check_keys(value)
        return tuple(keys)

    def decode(self, value: Any) -> list[Key]:
        """One key or a list of keys → the list of keys (checked to be ints or strings).

        Raises:
            TypeError: A key that is not an integer or a string.
            EmptyInputError: No key, unless ``empty="allow"``.
        """
        keys = _check_keys(value)
        if not keys and self.empty == "error":
            reason = (
                "an empty ID bag: nothing to embed (every empty bag embeds to one shared vector); "
                "set the ids input's empty: allow to embed it anyway"
            )
            raise EmptyInputError(reason, reason=reason)
        return keys

    def transform(self, decoded: list[Key], train: bool = False) -> list[int]:
        """Keys → table indices.

        Raises:
            ValueError: The unit is not fitted; an integer key outside ``[0, num_ids)``; a string key when the
                training keys were integers; an unknown key with ``unknown="error"``.
        """
        if self.mode is None:
            raise ValueError("the ids input has no vocabulary yet: fit it on the training keys first")
        if self.vocab is not None:
            try:
                return self.vocab.encode_many(decoded, "error" if self.unknown == "error" else "oov")
            except KeyError as error:
                raise ValueError(f"unknown ID {error.args[0]} (unknown='error')") from None
        for key in decoded:
            if isinstance(key, str):
                raise ValueError(
                    f"string ID {key!r}, but the training IDs are all integers; use strings in the training "
                    "data too so a vocabulary maps them"
                )
            if not 0 <= key < self.num_ids:
                raise ValueError(f"ID {key} is outside the table's [0, {self.num_ids})")
        return list(decoded)

    def collate(self, items: Sequence[list[int]]) -> SparseBatch:
        return SparseBatch.from_lists(list(items))

    def bind(self, encoder: torch.nn.Module, field: str) -> None:
        """Size an ``IdEncoder`` built with ``num_embeddings: null`` from ``num_ids``, or check it is big enough."""
        from jointembed.encoders.ids import IdEncoder

        if not isinstance(encoder, IdEncoder):
            return
        if encoder.sized:
            self.table_size = encoder.embedding.num_embeddings
        if self.num_ids is not None:
            encoder.ensure_num_embeddings(self.num_ids, field)

    def check(self, value: Any) -> None:
        """Refuse integer IDs beyond the bound encoder's table (so the data's first offending row is named at
        setup, not mid-epoch).

        Raises:
            ValueError: An integer ID ``>=`` the table size.
        """
        if self.mode == "integer" and self.table_size is not None:
            for key in value:
                if isinstance(key, int) and key >= self.table_size:
                    raise ValueError(f"ID {key} is outside the model's ID table of {self.table_size} rows")

    def save_to(self, folder: Path) -> dict[str, Any]:
        config = self.get_config()
        if self.vocab is not None:
            self.vocab.save(folder / VOCAB_FILE)
            config["vocabulary"] = VOCAB_FILE
        return config

    @classmethod
    def load_from(cls, config: Mapping[str, Any], folder: Path) -> IdsModality:
        config = dict(config)
        if isinstance(config.get("vocabulary"), str):
            path = Path(reference(config["vocabulary"], "vocabulary", base=folder))  # only a file of the folder
            try:
                vocab = Vocabulary.load(path)
            except (OSError, VocabularyFormatError) as error:
                raise CheckpointError(f"{path}: cannot read the ids vocabulary: {error}") from error
            config["vocabulary"] = list(vocab.values)
        return cls(**config)

    def example_values(self, count: int = 2, seed: int = 0) -> list[Any]:
        keys = ["Heat", "Up", "Alien", "Coco"]
        return [[keys[(seed + i) % 4], keys[(seed + 2 * i + 1) % 4]] for i in range(count)]
