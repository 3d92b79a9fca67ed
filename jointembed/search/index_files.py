"""The files of a saved :class:`~jointembed.search.index.EmbeddingIndex` folder, read with checks that name the
file, the line and the field: ``index.json`` (the header, written last), ``vectors.npy``, ``entries.jsonl``
and, for FAISS backends, ``faiss.index``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jointembed.errors import IndexFileError
from jointembed.search.backends import BACKENDS

__all__ = [
    "INDEX_FORMAT",
    "INDEX_VERSION",
    "HEADER_NAME",
    "VECTORS",
    "ENTRIES",
    "FAISS",
    "Entry",
    "describe_file",
    "check_file",
    "read_header",
    "read_revision",
    "entry_line",
    "read_entries",
    "read_vectors",
]

INDEX_FORMAT = "jointembed-index"
INDEX_VERSION = 1
HEADER_NAME = "index.json"
VECTORS, ENTRIES, FAISS = "vectors.npy", "entries.jsonl", "faiss.index"


class Entry(NamedTuple):
    """One line of ``entries.jsonl``: a live entry's key, modality and metadata, or a deleted row's place
    (``live`` false, key ``None``)."""

    key: str | int | None
    modality: str
    metadata: dict[str, Any] | None
    live: bool


def describe_file(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex digest}`` of a file, as the header records each one."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def check_file(path: Path, expected: Any) -> None:
    """Refuse a file that is missing or differs from what the header recorded of it.

    Raises:
        IndexFileError: Missing, another size (truncated) or another SHA-256 (altered); names the file.
    """
    if not path.is_file():
        raise IndexFileError(f"{path} is missing")
    if not isinstance(expected, dict):
        raise IndexFileError(f"{path.parent / HEADER_NAME}: the entry of {path.name} is not an object")
    size = path.stat().st_size
    if size != expected.get("bytes"):
        raise IndexFileError(f"{path} is truncated or altered: {size} bytes, the header says {expected.get('bytes')}")
    if describe_file(path)["sha256"] != expected.get("sha256"):
        raise IndexFileError(f"{path} is altered: its SHA-256 differs from the one in the header")


def read_header(folder: Path) -> dict[str, Any]:
    """``folder/index.json``, checked to be an index header of this format and version with a known backend.

    Raises:
        IndexFileError: No such folder or header, not JSON, another format or version, an unknown backend.
    """
    path = folder / HEADER_NAME
    if not folder.is_dir():
        raise IndexFileError(f"{folder} is not an index folder (no such folder)")
    if not path.is_file():
        raise IndexFileError(f"{folder} is not a saved index: it has no {HEADER_NAME}")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IndexFileError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise IndexFileError(f"{path}: not valid JSON ({type(error).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
        raise IndexFileError(
            f"{path}: not a jointembed index (format {header.get('format') if isinstance(header, dict) else None!r})"
        )
    if header.get("version") != INDEX_VERSION:
        raise IndexFileError(
            f"{path}: index format version {header.get('version')!r}; this jointembed reads {INDEX_VERSION}"
        )
    backend = header.get("backend")
    if not isinstance(backend, dict) or backend.get("name") not in BACKENDS:
        raise IndexFileError(f"{path}: unknown backend {backend!r}")
    return header


def read_revision(folder: Path) -> str | None:
    """The revision (a random id each save writes) of the index in ``folder``, ``None`` when it has none or
    cannot be read (then no later save is refused because of it)."""
    try:
        header = json.loads((folder / HEADER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    revision = header.get("revision") if isinstance(header, dict) else None
    return revision if isinstance(revision, str) else None


def entry_line(key: str | int | None, modality: str, metadata: dict[str, Any] | None, live: bool) -> str:
    """One line of ``entries.jsonl`` (a deleted row keeps only its place: ``{"live": false}``)."""
    if not live:
        return json.dumps({"live": False}) + "\n"
    entry: dict[str, Any] = {"key": key, "modality": modality}
    if metadata is not None:
        entry["metadata"] = metadata
    return json.dumps(entry, ensure_ascii=False) + "\n"


def parse_entry(raw: bytes, path: Path, number: int, error: type[ValueError] = IndexFileError) -> Entry:
    """One JSON line of entries (an index's ``entries.jsonl``, or the rows beside ``embed --out`` vectors), its
    fields' types checked; errors (of class ``error``) name the line and the field and, for a line that is not
    JSON, the parser's reason, never the line's content (it may be anything)."""

    def wrong(name: str, wanted: str, value: Any) -> ValueError:
        return error(f"{path}, line {number}, field {name!r}: expected {wanted}, got {type(value).__name__}")

    try:
        entry = json.loads(raw.rstrip(b"\r\n").decode("utf-8"))
    except UnicodeDecodeError as reason:
        raise error(f"{path}, line {number}: not UTF-8 ({reason.reason} at byte {reason.start + 1})") from None
    except json.JSONDecodeError as reason:
        raise error(f"{path}, line {number}: not valid JSON ({reason.msg} at column {reason.colno})") from None
    if not isinstance(entry, dict):
        raise error(f"{path}, line {number}: expected a JSON object, got {type(entry).__name__}")
    live = entry.get("live", True)
    if not isinstance(live, bool):
        raise wrong("live", "true or false", live)
    if not live:
        return Entry(None, "", None, False)
    if "key" not in entry:
        raise error(f"{path}, line {number}: a live entry has no field 'key'")
    key, modality, metadata = entry["key"], entry.get("modality", ""), entry.get("metadata")
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise wrong("key", "a string or an integer", key)
    if not isinstance(modality, str) or not modality:
        raise wrong("modality", "a non-empty string", modality)
    if metadata is not None and not isinstance(metadata, dict):
        raise wrong("metadata", "an object", metadata)
    return Entry(key, modality, metadata, True)


def read_entries(path: Path, rows: int) -> list[Entry]:
    """Every line of ``entries.jsonl``, checked (see :func:`parse_entry`), ``rows`` of them.

    Raises:
        IndexFileError: A line that is not JSON, a field of the wrong type, another number of lines, or a key
            on two live lines; the message names the file, the line and the field.
    """
    with open(path, "rb") as lines:
        entries = [parse_entry(raw, path, number) for number, raw in enumerate(lines, start=1)]
    if len(entries) != rows:
        raise IndexFileError(f"{path} has {len(entries)} entries, the header says {rows}")
    seen: dict[str | int, int] = {}
    for number, entry in enumerate(entries, start=1):
        if entry.key is not None:
            if entry.key in seen:
                raise IndexFileError(f"{path}, line {number}: the key of line {seen[entry.key]} again")
            seen[entry.key] = number
    return entries


def read_vectors(path: Path, rows: int, dim: int) -> np.ndarray:
    """``vectors.npy``: ``(rows, dim)`` float32.

    Raises:
        IndexFileError: Unreadable, or another shape or type than the header says.
    """
    try:
        vectors = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise IndexFileError(f"{path}: cannot read ({error})") from None
    if vectors.shape != (rows, dim) or vectors.dtype != np.float32:
        raise IndexFileError(f"{path} holds {vectors.dtype} {vectors.shape}, the header says float32 ({rows}, {dim})")
    return np.ascontiguousarray(vectors)
