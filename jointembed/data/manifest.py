"""Multimodal manifests: one row per example, columns named by the user, plus optional ``label`` and ``group``.

Which column is which data type is not the reader's business: each column is a *field* of the model, and the
field's modality unit (:mod:`jointembed.modalities`) parses its cells when the data is bound to the model. The
default mapping reads the columns ``ids``, ``text``, ``image`` and ``audio`` as those types; a recipe may name any
columns (``title: text``, ``poster: image``, ``movie_id: ids``...).

Two formats, chosen by the file's extension:

* **JSONL** (``.jsonl`` or ``.json``): one JSON object per line; blank lines are skipped. A row's number is its
  1-based line number.
* **CSV** (``.csv``): a header line naming the columns, then one row per example. A row's number is its 1-based
  data row (the first line after the header is row 1). In CSV, an integer literal in ``label`` and ``group``
  (``42``, ``-1``) is read as an integer; an ``ids`` cell holds IDs separated by ``|`` when it contains one,
  otherwise by whitespace.

A missing key, JSON ``null``, an empty string and an empty list all mean "this example lacks that column". File
cells are paths, relative to the manifest's folder unless absolute. Every row must have at least one cell
besides ``label`` and ``group``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jointembed.data.text_files import json_kind, not_utf8
from jointembed.errors import DataFormatError
from jointembed.modalities.ids import parse_id_list

__all__ = [
    "DEFAULT_FIELDS",
    "KEY_COLUMNS",
    "ManifestRow",
    "Manifest",
    "read_manifest",
    "parse_id_list",
    "ClassIndex",
    "split_rows",
]

# The default mapping of column names to modality types: the four-column manifests of the digits data.
DEFAULT_FIELDS = {"ids": "ids", "text": "text", "image": "image", "audio": "audio"}
KEY_COLUMNS = ("label", "group")
_INT = re.compile(r"[+-]?\d+\Z")
_EXTRA = "\0extra"  # DictReader's key for cells beyond the header

Key = int | str


@dataclass(frozen=True)
class ManifestRow:
    """One example of a manifest, its cells as written (parsed later by each field's modality unit).

    Attributes:
        row: 1-based line number (JSONL) or data row number (CSV), for error messages.
        cells: Column → non-empty raw cell (a JSON value, or a CSV cell's text), ``label``/``group`` excluded.
        label: Class, as written (an int, or a string mapped to an index by :class:`ClassIndex`).
        group: Group (e.g. a speaker), as written.
    """

    row: int
    cells: Mapping[str, Any] = field(default_factory=dict)
    label: Key | None = None
    group: Key | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns this row has a cell in."""
        return tuple(self.cells)


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest file.

    Attributes:
        path: The file.
        rows: Its examples, in file order.
    """

    path: Path
    rows: tuple[ManifestRow, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def from_csv(self) -> bool:
        """Whether the cells are CSV text (else JSON values)."""
        return self.path.suffix.lower() == ".csv"

    @property
    def base(self) -> Path:
        """The folder relative file cells are resolved against."""
        return self.path.resolve().parent

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns that at least one row has a cell in, in order of first appearance."""
        return tuple(dict.fromkeys(c for row in self.rows for c in row.columns))

    def where(self, row: int) -> str:
        """``"<file>, line N"`` (JSONL) or ``"<file>, row N"`` (CSV), for messages."""
        return f"{self.path}, {'row' if self.from_csv else 'line'} {row}"


def _fail(path: Path, row: int, message: str) -> DataFormatError:
    unit = "line" if path.suffix.lower() in (".jsonl", ".json") else "row"
    return DataFormatError(f"{path}, {unit} {row}: {message}")


def _csv_key(cell: str) -> Key:
    cell = cell.strip()
    return int(cell) if _INT.match(cell) else cell


def _check_key(value: Any, column: str, path: Path, row: int) -> Key:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _fail(path, row, f"column {column!r} must be an integer or a string, got {value!r:.60}")
    return value


def _make_row(raw: dict[str, Any], path: Path, row: int, csv_cells: bool) -> ManifestRow:
    """Validate one row's raw cells (from JSON or CSV) and build a :class:`ManifestRow`."""
    cells = {k: v for k, v in raw.items() if v is not None and v != "" and v != []}
    keys = {}
    for column in KEY_COLUMNS:
        if column in cells:
            value = cells.pop(column)
            keys[column] = _check_key(_csv_key(value) if csv_cells else value, column, path, row)
    if not cells:
        others = [repr(column) for column in raw if column not in KEY_COLUMNS]
        empty = f" ({', '.join(others)} empty)" if others else ""
        raise _fail(path, row, f"the row has no cell besides {', '.join(KEY_COLUMNS)}{empty}")
    return ManifestRow(row=row, cells=cells, **keys)


def _read_jsonl(path: Path) -> list[ManifestRow]:
    # Messages name the line and the parser's reason, never the line itself: it is a row of someone's data.
    rows = []
    with path.open(encoding="utf-8-sig") as f:  # -sig: a byte-order mark (Windows editors write one) is not JSON
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise _fail(
                    path, number, f"invalid JSON at column {err.colno}: {err.msg.removesuffix(' at')}"
                ) from None
            if not isinstance(raw, dict):
                raise _fail(path, number, f"expected a JSON object {{...}}, got {json_kind(raw)}")
            rows.append(_make_row(raw, path, number, csv_cells=False))
    return rows


def _read_csv(path: Path) -> list[ManifestRow]:
    with path.open(encoding="utf-8-sig", newline="") as f:  # -sig: Excel starts a UTF-8 CSV with a byte-order mark
        reader = csv.DictReader(f, restkey=_EXTRA)
        try:
            if reader.fieldnames is None:
                raise DataFormatError(f"{path}: the CSV file is empty; expected a header naming the columns")
            if blank := [i + 1 for i, name in enumerate(reader.fieldnames) if not name.strip()]:
                raise DataFormatError(f"{path}, header: column {blank[0]} has no name")
            rows = []
            for number, raw in enumerate(reader, start=1):
                if _EXTRA in raw:
                    width = len(reader.fieldnames)
                    raise _fail(path, number, f"{width + len(raw[_EXTRA])} cells for a header of {width} columns")
                rows.append(_make_row(raw, path, number, csv_cells=True))
        except csv.Error as err:  # e.g. a field over the csv module's size limit
            raise DataFormatError(f"{path}, line {reader.reader.line_num}: not a CSV row ({err})") from None
    return rows


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read a JSONL (``.jsonl``/``.json``) or CSV (``.csv``) manifest; see the module docstring for the format.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFormatError: An unsupported extension, a file that is not UTF-8, invalid JSON, a label or group of
            the wrong type, a CSV row with more cells than the header, or a row with no cell besides label and
            group; the message names the file, the line or row, the column and the parser's reason, never the
            line's content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise DataFormatError(f"{path}: unsupported manifest extension {suffix!r}; use .jsonl, .json or .csv")
    try:
        rows = _read_csv(path) if suffix == ".csv" else _read_jsonl(path)
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    return Manifest(path, tuple(rows))


class ClassIndex:
    """Maps labels (or groups) as written to indices ``0..K-1``, ``-1`` for a row without one.

    If every value is an integer, integers are kept (``names`` are ``"0".."max"``); otherwise the values are
    turned to strings and sorted (or ordered as the given ``names``), and a value's index is its position there.

    Args:
        values: Every value of every split (``None`` entries are ignored).
        names: Class names by index: for integer values, the names of classes ``0..len(names)-1`` (e.g.
            ``["zero", "one"]``); for string values, every value in the order of its index.
    """

    def __init__(self, values: Iterable[Key | None], names: Sequence[str] | None = None) -> None:
        seen = {v for v in values if v is not None}
        self.integer = all(isinstance(v, int) for v in seen)
        if self.integer:
            top = max(seen, default=-1) + 1
            if names is not None and len(names) < top:
                raise ValueError(f"{len(names)} label_names given, but the labels run up to {top - 1}")
            self.names = list(names) if names is not None else [str(i) for i in range(top)]
            if any(v < 0 for v in seen):
                raise DataFormatError(f"integer labels/groups must be >= 0, got {min(seen)}")
            self._index: dict[Key, int] = {}
        else:
            if names is not None:
                unknown = sorted({str(v) for v in seen} - set(names))
                if unknown:
                    raise ValueError(f"labels {unknown[:5]} are not among label_names {list(names)}")
                self.names = list(names)  # the given order: label_names name the classes and fix their indices
            else:
                self.names = sorted({str(v) for v in seen})
            self._index = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def index(self, value: Key | None) -> int:
        """The index of ``value``, ``-1`` for ``None``."""
        if value is None:
            return -1
        return int(value) if self.integer else self._index[str(value)]


def split_rows(
    rows: Sequence[ManifestRow], fractions: Sequence[float], seed: int, split_by: str | None = None
) -> tuple[list[ManifestRow], list[ManifestRow], list[ManifestRow]]:
    """Seeded split of ``rows`` into train, validation and test.

    Args:
        rows: The rows to split.
        fractions: ``(train, val, test)``, each >= 0, summing to 1.
        seed: Seed of the shuffle; the same seed and rows always give the same split.
        split_by: ``None`` splits by row; ``"group"`` or ``"label"`` keeps all rows sharing that column's value
            in one split (rows without a value are split individually). Whole units are assigned in shuffled
            order, each to the split its middle row falls in.

    Returns:
        The three lists of rows, each in manifest order.

    Raises:
        ValueError: Fractions that are negative or do not sum to 1, an unknown ``split_by``, or a split with a
            positive fraction left empty (too few rows or groups).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split must be three non-negative fractions (train, val, test) summing to 1, got {fractions}")
    if split_by not in (None, "group", "label"):
        raise ValueError(f"split_by must be None, 'group' or 'label', got {split_by!r}")
    units: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        value = None if split_by is None else getattr(row, split_by)
        units.setdefault(("row", i) if value is None else ("key", str(value)), []).append(i)
    keys = sorted(units, key=str)
    order = np.random.default_rng(seed).permutation(len(keys))
    bounds = np.cumsum(fractions) * len(rows)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    start = 0
    for k in order:
        members = units[keys[k]]
        middle = start + len(members) / 2
        parts[min(int(np.searchsorted(bounds, middle, side="right")), 2)].extend(members)
        start += len(members)
    for name, fraction, part in zip(("train", "val", "test"), fractions, parts, strict=True):
        if fraction > 0 and not part:
            what = "rows" if split_by is None else f"distinct {split_by}s ({len(units)})"
            raise ValueError(f"split {tuple(fractions)} leaves the {name} split empty: too few {what}")
    train, val, test = ([rows[i] for i in sorted(part)] for part in parts)
    return train, val, test
