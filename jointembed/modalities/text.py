"""Text: strings, passed to the text encoder, which tokenises them with its own tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from jointembed.modalities.base import Modality
from jointembed.registry import register_modality

__all__ = ["TextModality"]

_EXAMPLES = ["seven", "the number seven", "a photo of a cat", "Heat (1995)"]


@register_modality("text")
class TextModality(Modality):
    """A string per example. Tokenisation belongs to the text encoder (its tokenizer is saved with it), so the
    same tokens reach the backbone in training and at inference.

    Raw values: ``str`` (or UTF-8 ``bytes``). Batch: ``list[str]``.

    Args:
        strip: Remove leading and trailing whitespace.
    """

    def __init__(self, strip: bool = True) -> None:
        super().__init__()
        self._set_config(locals())
        self.strip = strip

    def parse_cell(self, value: Any, base: Path, from_csv: bool) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value

    def decode(self, value: Any) -> str:
        """A string (or UTF-8 bytes) → the string.

        Raises:
            TypeError: Not a string or bytes.
            ValueError: Bytes that are not UTF-8.
        """
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"text bytes are not UTF-8: {error}") from None
        if not isinstance(value, str):
            raise TypeError(f"text must be a str, got {type(value).__name__} ({value!r:.60})")
        return value.strip() if self.strip else value

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
