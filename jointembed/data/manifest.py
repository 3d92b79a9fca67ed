"""Multimodal manifests: one row per example, any of the columns ``ids``, ``text``, ``image``, ``audio``, plus
optional ``label`` and ``group``.

Two formats, chosen by the file's extension:

* **JSONL** (``.jsonl`` or ``.json``): one JSON object per line; blank lines are skipped. A row's number is its
  1-based line number. ``ids`` is a JSON list of integers and/or strings (a single integer or string is read as a
  one-element list).
* **CSV** (``.csv``): a header line naming the columns, then one row per example. A row's number is its 1-based
  data row (the first line after the header is row 1). ``ids`` is one cell holding IDs separated by ``|`` when
  the cell contains a ``|`` (so IDs may contain spaces: ``new york|paris``), otherwise by whitespace
  (``3 17 42``). In CSV, a cell that is an integer literal (``42``, ``-1``) is read as an integer in ``ids``,
  ``label`` and ``group``; anything else is a string.

A missing key, JSON ``null``, an empty string and an empty ``ids`` list all mean "this example lacks that
column". ``image`` and ``audio`` are paths, relative to the manifest's folder unless absolute; they are not
opened here (see :mod:`jointembed.data.media`). Every row must have at least one of the four modalities.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jointembed.errors import DataFormatError
from jointembed.vocab import Vocabulary

__all__ = [
    "MODALITIES",
    "COLUMNS",
    "ManifestRow",
    "Manifest",
    "read_manifest",
    "parse_id_list",
    "IdMapper",
    "ClassIndex",
    "split_rows",
]

MODALITIES = ("ids", "text", "image", "audio")
COLUMNS = (*MODALITIES, "label", "group")
_INT = re.compile(r"[+-]?\d+\Z")
_EXTRA = "\0extra"  # DictReader's key for cells beyond the header

Key = int | str


@dataclass(frozen=True)
class ManifestRow:
    """One example of a manifest; ``None`` marks a column the example lacks.

    Attributes:
        row: 1-based line number (JSONL) or data row number (CSV), for error messages.
        ids: Raw IDs (ints and/or strings), before any vocabulary lookup.
        text: The text.
        image: Absolute path of the image file.
        audio: Absolute path of the audio file.
        label: Class, as written (an int, or a string mapped to an index by :class:`ClassIndex`).
        group: Group (e.g. a speaker), as written.
    """

    row: int
    ids: tuple[Key, ...] | None = None
    text: str | None = None
    image: Path | None = None
    audio: Path | None = None
    label: Key | None = None
    group: Key | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this row has, in :data:`MODALITIES` order."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)


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
    def modalities(self) -> tuple[str, ...]:
        """Modalities that at least one row has, in :data:`MODALITIES` order."""
        seen = {m for row in self.rows for m in row.modalities}
        return tuple(m for m in MODALITIES if m in seen)


def _fail(path: Path, row: int, message: str) -> DataFormatError:
    unit = "line" if path.suffix.lower() in (".jsonl", ".json") else "row"
    return DataFormatError(f"{path}, {unit} {row}: {message}")


def parse_id_list(cell: str) -> tuple[Key, ...]:
    """Split a CSV ``ids`` cell: by ``|`` when it holds one, else by whitespace; integer literals become ints.

    Example: ``"3 17 42"`` → ``(3, 17, 42)``; ``"new york|paris"`` → ``("new york", "paris")``.
    """
    parts = cell.split("|") if "|" in cell else cell.split()
    tokens = [part.strip() for part in parts]
    return tuple(int(t) if _INT.match(t) else t for t in tokens if t)


def _csv_key(cell: str) -> Key:
    cell = cell.strip()
    return int(cell) if _INT.match(cell) else cell


def _check_key(value: Any, column: str, path: Path, row: int) -> Key:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _fail(path, row, f"column {column!r} must be an integer or a string, got {value!r}")
    return value


def _resolve(value: Any, column: str, path: Path, row: int, base: Path) -> Path:
    if not isinstance(value, str):
        raise _fail(path, row, f"column {column!r} must be a file path (a string), got {value!r}")
    file = Path(os.path.expanduser(value))
    return file if file.is_absolute() else Path(os.path.normpath(base / file))


def _make_row(raw: dict[str, Any], path: Path, row: int, csv_cells: bool, base: Path) -> ManifestRow:
    """Validate one row's raw cells (from JSON or CSV) and build a :class:`ManifestRow`."""
    unknown = sorted(k for k in raw if k not in COLUMNS)
    if unknown:
        raise _fail(path, row, f"unknown column {unknown[0]!r}; valid columns are {', '.join(COLUMNS)}")
    cells = {k: v for k, v in raw.items() if v is not None and v != "" and v != []}
    fields: dict[str, Any] = {}
    if "ids" in cells:
        ids = cells["ids"]
        if csv_cells:
            ids = parse_id_list(ids)
        elif not isinstance(ids, list):
            ids = [ids]
        if ids:
            fields["ids"] = tuple(_check_key(v, "ids", path, row) for v in ids)
    if "text" in cells:
        if not isinstance(cells["text"], str):
            raise _fail(path, row, f"column 'text' must be a string, got {cells['text']!r}")
        fields["text"] = cells["text"]
    for column in ("image", "audio"):
        if column in cells:
            fields[column] = _resolve(cells[column], column, path, row, base)
    for column in ("label", "group"):
        if column in cells:
            value = _csv_key(cells[column]) if csv_cells else cells[column]
            fields[column] = _check_key(value, column, path, row)
    result = ManifestRow(row=row, **fields)
    if not result.modalities:
        raise _fail(path, row, f"the row has none of the columns {', '.join(MODALITIES)}: {raw!r:.200}")
    return result


def _read_jsonl(path: Path) -> list[ManifestRow]:
    base = path.resolve().parent
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                problem = f"invalid JSON ({err.msg} at column {err.colno}): {line.strip()!r:.200}"
                raise _fail(path, number, problem) from err
            if not isinstance(raw, dict):
                raise _fail(path, number, f"expected a JSON object, got {type(raw).__name__}: {line.strip()!r:.200}")
            rows.append(_make_row(raw, path, number, csv_cells=False, base=base))
    return rows


def _read_csv(path: Path) -> list[ManifestRow]:
    base = path.resolve().parent
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, restkey=_EXTRA)
        if reader.fieldnames is None:
            raise DataFormatError(f"{path}: the CSV file is empty; expected a header naming the columns")
        unknown = [name for name in reader.fieldnames if name not in COLUMNS]
        if unknown:
            raise DataFormatError(
                f"{path}, header: unknown column {unknown[0]!r}; valid columns are {', '.join(COLUMNS)}"
            )
        rows = []
        for number, raw in enumerate(reader, start=1):
            if _EXTRA in raw:
                width = len(reader.fieldnames)
                raise _fail(path, number, f"{width + len(raw[_EXTRA])} cells for a header of {width} columns")
            rows.append(_make_row(raw, path, number, csv_cells=True, base=base))
    return rows


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read a JSONL (``.jsonl``/``.json``) or CSV (``.csv``) manifest; see the module docstring for the format.

    Raises:
        FileNotFoundError: The file does not exist.
        DataFormatError: An unsupported extension, invalid JSON, an unknown column, a value of the wrong type or
            a row without any modality; the message names the file, the line or row, and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = _read_jsonl(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    else:
        raise DataFormatError(f"{path}: unsupported manifest extension {suffix!r}; use .jsonl, .json or .csv")
    return Manifest(path, tuple(rows))


class IdMapper:
    """Turns a row's raw IDs into row indices of an ID embedding table.

    When every ID of the training rows is an integer, integers are used as they are (they must be >= 0) and the
    table size is one more than the largest ID of any split. Otherwise IDs go through a
    :class:`~jointembed.vocab.Vocabulary` built on the training rows (ID 0 = ``<pad>``, 1 = ``<oov>``; IDs
    unseen in training map to ``<oov>``).

    Args:
        train_rows: Rows whose IDs define the vocabulary.
        all_rows: Rows of every split, to size an integer table.
    """

    def __init__(self, train_rows: Iterable[ManifestRow], all_rows: Iterable[ManifestRow]) -> None:
        bags = [row.ids for row in train_rows if row.ids is not None]
        self.vocabulary: Vocabulary | None = None
        if any(isinstance(v, str) for bag in bags for v in bag):
            self.vocabulary = Vocabulary.from_bags(bags)
            self.num_ids = len(self.vocabulary)
        else:
            ints = [v for row in all_rows if row.ids is not None for v in row.ids if isinstance(v, int)]
            self.num_ids = max(ints, default=-1) + 1

    def encode(self, row: ManifestRow, path: Path | None = None) -> list[int]:
        """The table indices of ``row.ids`` (``[]`` when the row has none).

        Raises:
            DataFormatError: A negative integer ID, or a string ID when the training IDs are all integers.
        """
        if row.ids is None:
            return []
        if self.vocabulary is not None:
            return self.vocabulary.encode_many(row.ids)
        where = f"{path}, row {row.row}" if path is not None else f"row {row.row}"
        for value in row.ids:
            if isinstance(value, str):
                raise DataFormatError(
                    f"{where}: string ID {value!r}, but the training manifest's IDs are all integers; "
                    "use strings in the training manifest too so a vocabulary maps them"
                )
            if value < 0:
                raise DataFormatError(f"{where}: ID {value} is negative; integer IDs must be >= 0")
        return list(row.ids)


class ClassIndex:
    """Maps labels (or groups) as written to indices ``0..K-1``, ``-1`` for a row without one.

    If every value is an integer, integers are kept (``names`` are ``"0".."max"``); otherwise the values are
    turned to strings and sorted, and a value's index is its position in that sorted list.

    Args:
        values: Every value of every split (``None`` entries are ignored).
        names: For integer values, optional names of classes ``0..len(names)-1`` (e.g. ``["zero", "one"]``).
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
                raise ValueError("label_names only names integer labels; these labels are strings")
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
