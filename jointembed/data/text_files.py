"""Errors of the readers of a user's text data files (manifests, CSV tables): they say where the problem is and
what it is, never what the file holds (a line of someone's data does not belong in a log or a bug report)."""

from __future__ import annotations

from pathlib import Path

from jointembed.errors import DataFormatError

__all__ = ["json_kind", "not_utf8"]

_JSON_KINDS = {"dict": "an object", "list": "an array", "str": "a string", "int": "a number", "float": "a number",
               "bool": "true or false", "NoneType": "null"}  # fmt: skip


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's words: ``"an array"``, ``"a string"``, ``"null"``..."""
    return _JSON_KINDS.get(type(value).__name__, type(value).__name__)


def not_utf8(path: Path) -> DataFormatError:
    """The error for a file that is not UTF-8 text: it names the first line holding a byte that is not UTF-8,
    the byte and its column (found by decoding the file line by line, as a text reader's buffered read ahead
    cannot tell the line)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                where = f"byte {raw[error.start]:#04x} at column {error.start + 1}"
                return DataFormatError(f"{path}, line {number}: {where} is not UTF-8; re-save the file as UTF-8")
    return DataFormatError(f"{path}: not UTF-8 text; re-save the file as UTF-8")
