"""Text: strings, passed to the text encoder, which tokenises them with its own tokenizer. A text with nothing to
embed (empty, whitespace, or no word the encoder reads) is refused by default: it would embed to one shared vector."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from jointembed.data.media import EmptyInputError
from jointembed.modalities.base import Modality
from jointembed.registry import register_modality

__all__ = ["TextModality"]

_EXAMPLES = ["seven", "the number seven", "a photo of a cat", "Heat (1995)"]


@register_modality("text")
class TextModality(Modality):
    """A string per example. Tokenisation belongs to the text encoder (its tokenizer is saved with it), so the
    same tokens reach the backbone in training and at inference.

    Raw values: ``str`` (or UTF-8 ``bytes``). Batch: ``list[str]``.

    A text with nothing to embed is an :class:`~jointembed.data.media.EmptyInputError` naming it (the data
    module and ``embed`` add the row; ``on_bad_file="skip"`` and ``embed_readable`` skip it): an empty or
    whitespace-only text, or, for an encoder that reads only words (``scratch_text``: ``\\w+`` runs), a text
    with none (``"😀"``, ``"?!"``). Each would embed to one vector shared by all of them, which a classifier
    answers with confidence. (A manifest's empty cell is a missing value, not an empty text.)

    Args:
        strip: Remove leading and trailing whitespace.
        empty: ``error`` refuses a text with nothing to embed; ``allow`` embeds it (as the shared vector).
    """

    def __init__(self, strip: bool = True, empty: Literal["error", "allow"] = "error") -> None:
        super().__init__()
        self._set_config(locals())
        if empty not in ("error", "allow"):
            raise ValueError(f"empty must be 'error' or 'allow', got {empty!r}")
        self.strip = strip
        self.empty = empty
        self._words: re.Pattern[str] | None = None  # the bound encoder's word pattern, if it reads only words

    def bind(self, encoder: torch.nn.Module, field: str) -> None:
        """Take the encoder's ``word_pattern`` (an encoder that reads only words declares it), so a text with no
        word is refused here, naming it, rather than embedded as the encoder's one empty text."""
        pattern = getattr(encoder, "word_pattern", None)
        self._words = pattern if isinstance(pattern, re.Pattern) else None

    def parse_cell(self, value: Any, base: Path, from_csv: bool) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value

    def decode(self, value: Any) -> str:
        """A string (or UTF-8 bytes) → the string.

        Raises:
            TypeError: Not a string or bytes.
            ValueError: Bytes that are not UTF-8.
            EmptyInputError: A text with nothing to embed (see the class docstring), unless ``empty="allow"``.
        """
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"text bytes are not UTF-8: {error}") from None
        if not isinstance(value, str):
            raise TypeError(f"text must be a str, got {type(value).__name__} ({value!r:.60})")
        if self.empty == "error":
            self._refuse_empty(value)
        return value.strip() if self.strip else value

    def _refuse_empty(self, text: str) -> None:
        if not text.strip():
            what = "an empty text" if not text else f"a whitespace-only text ({text!r:.40})"
        elif self._words is not None and not self._words.search(text):
            what = f"the text {text!r:.60} has no word (letters or digits) for the text encoder to read"
        else:
            return
        reason = (
            f"{what}: nothing to embed (every such text embeds to one shared vector); "
            "set the text input's empty: allow to embed it anyway"
        )
        raise EmptyInputError(reason, reason=reason)

    def collate(self, items: Sequence[str]) -> list[str]:
        return list(items)

    def lengths(self, values: Sequence[Any], encoder: torch.nn.Module) -> list[int] | None:
        """The encoder's own length of each text (tokens for ``hf_text``), for batching similar lengths together.

        A value that cannot be decoded counts as empty here: loading it raises, naming its index.
        """
        measure = getattr(encoder, "input_lengths", None)
        return None if measure is None else measure([self._text_or_empty(value) for value in values])

    def _text_or_empty(self, value: Any) -> str:
        try:
            return self.decode(value)
        except (TypeError, ValueError):
            return ""

    def example_values(self, count: int = 2, seed: int = 0) -> list[Any]:
        return [_EXAMPLES[(seed + i) % len(_EXAMPLES)] for i in range(count)]
