"""California housing rows, from raw text to model inputs: reading, parsing and the fitted featurizer.

This is the one unit that turns a raw housing record (a CSV line, a dict by column name, a list of fields) into
the embedding network's inputs. :class:`~jointembed.data.housing.HousingDataModule` fits a
:class:`HousingFeaturizer` on its training split and transforms every split with it; a pretrained house-price
folder saves the same featurizer (:meth:`HousingFeaturizer.to_config`) and
:class:`~jointembed.models.house_price.HousePricePredictor` calls it on raw rows, so training and inference read
numbers, impute and bucketize in exactly one way.

Missing values (an empty field, ``NaN``, ``NA``, ``null``, ``None``) follow ``on_missing``: ``"impute"`` keeps
them as NaN for :meth:`HousingFeaturizer.impute` to fill with the training split's median; ``"error"`` raises
:class:`~jointembed.errors.DataFormatError`. A missing target is always an error, as is text that is not a number.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from jointembed.data.text_files import not_utf8
from jointembed.errors import DataFormatError
from jointembed.sparse import SparseBatch

__all__ = [
    "FEATURE_COLUMNS",
    "TARGET_COLUMN",
    "CSV_COLUMNS",
    "OnMissing",
    "Bucketing",
    "HousingTable",
    "HousingFeaturizer",
    "read_housing_csv",
    "read_csv_columns",
    "parse_number",
    "parse_rows",
    "fit_boundaries",
    "bucketize",
    "ids_to_sparse",
]

FEATURE_COLUMNS = (
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
)
TARGET_COLUMN = "median_house_value"
CSV_COLUMNS = (*FEATURE_COLUMNS, TARGET_COLUMN)  # the shipped files' header, in order
_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})

OnMissing = Literal["impute", "error"]
Bucketing = Literal["quantile", "uniform"]

RawRow = Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True)
class HousingTable:
    """The rows of one housing CSV file.

    Attributes:
        path: The file read.
        features: ``(N, 8)`` float64 columns in :data:`FEATURE_COLUMNS` order; NaN where a value is missing.
        target: ``(N,)`` float64 median house values in dollars.
        lines: ``(N,)`` line number of each row in the file (the header is line 1), for error messages.
        columns: The file's header, in its order (the order a raw row given as a list must follow).
    """

    path: Path
    features: np.ndarray
    target: np.ndarray
    lines: np.ndarray
    columns: tuple[str, ...] = CSV_COLUMNS

    def __len__(self) -> int:
        return len(self.target)

    def take(self, rows: np.ndarray) -> HousingTable:
        """The table restricted to ``rows`` (indices), keeping each row's line number."""
        return HousingTable(self.path, self.features[rows], self.target[rows], self.lines[rows], self.columns)


def read_housing_csv(path: str | os.PathLike, on_missing: OnMissing = "impute") -> HousingTable:
    """Read a California housing CSV (a header row naming at least the nine columns; extra columns are ignored).

    Args:
        path: The CSV file.
        on_missing: ``"impute"`` keeps a missing feature as NaN (the data module fills it with the training
            split's median); ``"error"`` raises at the first missing feature.

    Raises:
        DataFormatError: A missing column, a row with too few or too many fields, text that is not a finite
            number, a missing target, or (``on_missing="error"``) a missing feature; the message names the file,
            line and column.
    """
    header, values, lines = read_csv_columns(path, CSV_COLUMNS, on_missing)
    return HousingTable(Path(path), values[:, :-1], values[:, -1], lines, header)


def read_csv_columns(
    path: str | os.PathLike, columns: Sequence[str], on_missing: OnMissing = "impute"
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Read the named numeric ``columns`` of a CSV file with a header row (other columns are ignored).

    Args:
        path: The CSV file.
        columns: The columns to read, in the order wanted.
        on_missing: Keep a missing value as NaN (``"impute"``) or raise (``"error"``); a missing
            :data:`TARGET_COLUMN` always raises.

    Returns:
        The header, ``(N, len(columns))`` float64 values and ``(N,)`` line numbers (the header is line 1).

    Raises:
        DataFormatError: As :func:`read_housing_csv`; the message names the file, line and column.
    """
    _check_on_missing(on_missing)
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel starts a UTF-8 CSV with a byte-order mark
        reader = csv.reader(f)
        try:
            return _read_columns(path, reader, columns, on_missing)
        except UnicodeDecodeError:
            raise not_utf8(path) from None
        except csv.Error as err:  # e.g. a field over the csv module's size limit
            raise DataFormatError(f"{path}, line {reader.line_num}: not a CSV row ({err})") from None


def _read_columns(
    path: Path, reader: Any, columns: Sequence[str], on_missing: OnMissing
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The body of :func:`read_csv_columns`, over the file's ``csv.reader``."""
    header = next(reader, None)
    if header is None:
        raise DataFormatError(f"{path}: the file is empty (expected a header row naming the columns)")
    header = [name.strip() for name in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(f"{path}, line 1: the header lacks column(s) {missing}; it has {header}")
    positions = [header.index(c) for c in columns]
    rows, lines = [], []
    for line, fields in enumerate(reader, start=2):
        if not fields:  # a blank line
            continue
        if len(fields) != len(header):  # too many shifts the columns as surely as too few
            raise DataFormatError(f"{path}, line {line}: expected {len(header)} fields, got {len(fields)}")
        rows.append([parse_number(fields[p], f"{path}, line {line}", header[p], on_missing) for p in positions])
        lines.append(line)
    if not rows:
        raise DataFormatError(f"{path}: no data rows after the header")
    return tuple(header), np.asarray(rows, dtype=np.float64), np.asarray(lines, dtype=np.int64)


def parse_number(value: Any, where: str, column: str, on_missing: OnMissing) -> float:
    """One raw field as a float: text (``" 3.5 "``), a Python or NumPy number, or a missing value.

    Args:
        value: The raw field.
        where: Where it came from, for errors (``"train.csv, line 7"`` or ``"rows[2]"``).
        column: Its column name.
        on_missing: ``"impute"`` returns NaN for a missing feature; ``"error"`` raises.

    Raises:
        DataFormatError: The value is not a finite number, or is missing where that is not allowed; the message
            names ``where`` and the column.
    """
    shown = f"{value.strip() if isinstance(value, str) else value!r:.60}"  # one field's value, shortened
    if isinstance(value, str) and value.strip().lower() not in _MISSING_TOKENS:
        try:
            number = float(value.strip())
        except ValueError:
            raise DataFormatError(f"{where}, column {column!r}: {shown} is not a number") from None
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif value is None or isinstance(value, str):
        number = math.nan
    else:
        raise DataFormatError(f"{where}, column {column!r}: {shown} ({type(value).__name__}) is not a number")
    if math.isnan(number):
        if column == TARGET_COLUMN:
            raise DataFormatError(
                f"{where}, column {column!r}: the target is missing ({shown}); a target cannot be imputed"
            )
        if on_missing == "error":
            raise DataFormatError(
                f"{where}, column {column!r}: missing value ({shown}); "
                "use on_missing='impute' to fill missing features with the training split's median"
            )
        return math.nan
    if not math.isfinite(number):
        raise DataFormatError(f"{where}, column {column!r}: {shown} is not a finite number")
    return number


def parse_rows(
    rows: Sequence[RawRow] | np.ndarray, columns: Sequence[str] = CSV_COLUMNS, on_missing: OnMissing = "impute"
) -> np.ndarray:
    """Raw records as ``(N, 8)`` float64 features in :data:`FEATURE_COLUMNS` order (NaN where missing).

    Args:
        rows: Each row a dict by column name (other keys, the target among them, are ignored) or a list of
            fields in the order of ``columns``, with or without the target field.
        columns: The training file's header (a list row follows its order).
        on_missing: ``"impute"`` keeps a missing feature as NaN; ``"error"`` raises.

    Raises:
        DataFormatError: A dict lacking a feature column, a list of the wrong length, or a value that is not a
            number (or is missing, with ``on_missing="error"``); the message names ``rows[i]`` and the column.
    """
    _check_on_missing(on_missing)
    if isinstance(rows, np.ndarray):
        rows = rows.tolist()
    without_target = [c for c in columns if c != TARGET_COLUMN]
    parsed = []
    for i, row in enumerate(rows):
        where = f"rows[{i}]"
        if isinstance(row, np.ndarray):
            row = row.tolist()
        if isinstance(row, Mapping):
            absent = [c for c in FEATURE_COLUMNS if c not in row]
            if absent:
                raise DataFormatError(
                    f"{where}: missing column(s) {absent}; a row needs {list(FEATURE_COLUMNS)}, it has {list(row)}"
                )
            named = row
        elif isinstance(row, Sequence) and not isinstance(row, (str, bytes)):
            if len(row) not in (len(columns), len(without_target)):
                raise DataFormatError(
                    f"{where}: expected {len(columns)} fields in the order {list(columns)} "
                    f"(or {len(without_target)} without {TARGET_COLUMN!r}), got {len(row)}"
                )
            named = dict(zip(columns if len(row) == len(columns) else without_target, row, strict=True))
        else:
            raise DataFormatError(
                f"{where}: a row must be a dict by column name or a list of fields, got {type(row).__name__}"
            )
        parsed.append([parse_number(named[c], where, c, on_missing) for c in FEATURE_COLUMNS])
    if not parsed:
        raise DataFormatError("no rows to read (got an empty sequence)")
    return np.asarray(parsed, dtype=np.float64)


def fit_boundaries(values: np.ndarray, num_buckets: int, method: Bucketing = "quantile") -> np.ndarray:
    """Inner bucket boundaries for ``values``: ``(<= num_buckets - 1,)`` sorted.

    ``quantile`` puts about as many training values in each bucket (repeated boundaries, from tied values, are
    merged, so there may be fewer buckets); ``uniform`` splits ``[min, max]`` into equal widths.

    Args:
        values: ``(N,)`` the training split's values of one column.
        num_buckets: Number of buckets, >= 1.
        method: ``quantile`` or ``uniform``.
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    if method == "quantile":
        return np.unique(np.quantile(values, np.linspace(0.0, 1.0, num_buckets + 1)[1:-1]))
    if method == "uniform":
        return np.linspace(values.min(), values.max(), num_buckets + 1)[1:-1]
    raise ValueError(f"bucketing must be 'quantile' or 'uniform', got {method!r}")


def bucketize(values: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 bucket of each value: the number of boundaries ``<= value`` (values outside the training
    range fall in the first or last bucket)."""
    return np.searchsorted(boundaries, values, side="right").astype(np.int64)


def ids_to_sparse(ids: torch.Tensor) -> SparseBatch:
    """``(B, k)`` IDs from :meth:`HousingFeaturizer.transform` as ``B`` bags of ``k`` IDs each (unweighted)."""
    return SparseBatch.from_tensors(ids.flatten(), lengths=torch.full((ids.shape[0],), ids.shape[1]))


def _check_on_missing(on_missing: str) -> None:
    if on_missing not in ("impute", "error"):
        raise ValueError(f"on_missing must be 'impute' or 'error', got {on_missing!r}")


@dataclass
class HousingFeaturizer:
    """Everything learnt from the training split: medians, bucket boundaries, feature and target statistics.

    Build it with :meth:`fit` on the training split only, then :meth:`transform` every split with it; raw rows
    go through :meth:`featurize`. :meth:`to_config` / :meth:`from_config` save and restore it as JSON.

    Attributes:
        num_lat_buckets, num_lon_buckets: Grid size of the latitude × longitude cross.
        extra_buckets: Other columns bucketized into the same bag: column name → number of buckets.
        medians: ``(8,)`` training medians, used to impute missing features.
        mean, std: ``(8,)`` training mean and standard deviation of the (imputed) dense features.
        boundaries: Column name → inner bucket boundaries.
        target_mean, target_std: Training mean and standard deviation of the target.
        on_missing: Missing features: ``impute`` with :attr:`medians` or ``error``.
        columns: The training file's header (a raw row given as a list follows its order).
    """

    num_lat_buckets: int
    num_lon_buckets: int
    extra_buckets: dict[str, int]
    medians: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    boundaries: dict[str, np.ndarray]
    target_mean: float
    target_std: float
    on_missing: OnMissing = "impute"
    columns: tuple[str, ...] = CSV_COLUMNS

    @classmethod
    def fit(
        cls,
        train: HousingTable,
        num_lat_buckets: int = 20,
        num_lon_buckets: int = 20,
        extra_buckets: dict[str, int] | None = None,
        bucketing: Bucketing = "quantile",
        on_missing: OnMissing = "impute",
    ) -> HousingFeaturizer:
        """Learn the featurizer from the training split (missing features are imputed first, for the statistics)."""
        _check_on_missing(on_missing)
        extra_buckets = dict(extra_buckets or {})
        unknown = [c for c in extra_buckets if c not in FEATURE_COLUMNS]
        if unknown:
            raise ValueError(f"extra_buckets names unknown column(s) {unknown}; choose from {list(FEATURE_COLUMNS)}")
        medians = np.nanmedian(train.features, axis=0) if len(train) else np.full(len(FEATURE_COLUMNS), np.nan)
        empty = [c for c, m in zip(FEATURE_COLUMNS, medians, strict=True) if math.isnan(m)]
        if empty:
            raise DataFormatError(f"{train.path}: column(s) {empty} have no values in the training split")
        features = np.where(np.isnan(train.features), medians, train.features)
        std = features.std(axis=0)
        sizes = {"latitude": num_lat_buckets, "longitude": num_lon_buckets, **extra_buckets}
        boundaries = {c: fit_boundaries(features[:, FEATURE_COLUMNS.index(c)], n, bucketing) for c, n in sizes.items()}
        return cls(
            num_lat_buckets=num_lat_buckets,
            num_lon_buckets=num_lon_buckets,
            extra_buckets=extra_buckets,
            medians=medians,
            mean=features.mean(axis=0),
            std=np.where(std > 0, std, 1.0),
            boundaries=boundaries,
            target_mean=float(train.target.mean()),
            target_std=float(train.target.std()) or 1.0,
            on_missing=on_missing,
            columns=tuple(train.columns),
        )

    @property
    def num_ids(self) -> int:
        """Number of sparse IDs: the grid cells, then each extra column's buckets."""
        return self.num_lat_buckets * self.num_lon_buckets + sum(self.extra_buckets.values())

    @property
    def num_dense_features(self) -> int:
        """Width of the dense features (8)."""
        return len(FEATURE_COLUMNS)

    def impute(self, table: HousingTable) -> tuple[np.ndarray, dict[str, int]]:
        """``(N, 8)`` features with each NaN replaced by its column's training median, and the count per column."""
        return self._impute(table.features)

    def _impute(self, features: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        missing = np.isnan(features)
        counts = {c: int(n) for c, n in zip(FEATURE_COLUMNS, missing.sum(axis=0), strict=True) if n}
        return np.where(missing, self.medians, features), counts

    def transform(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Turn imputed features into model inputs.

        Args:
            features: ``(N, 8)`` imputed features (no NaN).

        Returns:
            ``ids`` ``(N, 1 + len(extra_buckets))`` int64: the grid cell, then each extra column's bucket (offset
            into its own ID range); ``dense`` ``(N, 8)`` float32 standardised features.
        """
        column = {c: features[:, i] for i, c in enumerate(FEATURE_COLUMNS)}
        lat = bucketize(column["latitude"], self.boundaries["latitude"])
        lon = bucketize(column["longitude"], self.boundaries["longitude"])
        ids = [lat * self.num_lon_buckets + lon]
        offset = self.num_lat_buckets * self.num_lon_buckets
        for name, n in self.extra_buckets.items():
            ids.append(offset + bucketize(column[name], self.boundaries[name]))
            offset += n
        dense = (features - self.mean) / self.std
        return np.stack(ids, axis=1), dense.astype(np.float32)

    def featurize(
        self, rows: str | os.PathLike | Sequence[RawRow] | np.ndarray, stacklevel: int = 2
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw records → model inputs: parse, impute (per :attr:`on_missing`, warning with the counts), transform.

        Args:
            rows: A CSV file with a header naming the feature columns (the target column may be absent), or a
                sequence of rows as :func:`parse_rows` takes them (dicts by column name, lists in
                :attr:`columns` order).
            stacklevel: Passed to ``warnings.warn`` for the imputation notice (3 to point at a wrapper's caller).

        Returns:
            ``ids`` and ``dense`` as :meth:`transform` returns them.

        Raises:
            DataFormatError: A missing column, a row of the wrong length, a value that is not a number, or a
                missing value under ``on_missing="error"``; the message names the row (or file and line) and column.
        """
        if isinstance(rows, (str, os.PathLike)):
            features = read_csv_columns(rows, FEATURE_COLUMNS, self.on_missing)[1]
        else:
            features = parse_rows(rows, self.columns, self.on_missing)
        features, counts = self._impute(features)
        if counts:
            warnings.warn(
                f"imputed {sum(counts.values())} missing value(s) with the training split's medians: {counts}",
                stacklevel=stacklevel,
            )
        return self.transform(features)

    def to_config(self) -> dict[str, Any]:
        """Everything fitted, as JSON types (floats round-trip exactly through JSON)."""
        return {
            "feature_columns": list(FEATURE_COLUMNS),
            "target_column": TARGET_COLUMN,
            "columns": list(self.columns),
            "num_lat_buckets": self.num_lat_buckets,
            "num_lon_buckets": self.num_lon_buckets,
            "extra_buckets": dict(self.extra_buckets),
            "on_missing": self.on_missing,
            "medians": self.medians.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "boundaries": {name: values.tolist() for name, values in self.boundaries.items()},
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HousingFeaturizer:
        """Rebuild a featurizer saved by :meth:`to_config`.

        Raises:
            ValueError: A field is missing or malformed; the message names it.
        """
        missing = [k for k in _CONFIG_FIELDS if k not in config]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        if list(config["feature_columns"]) != list(FEATURE_COLUMNS):
            raise ValueError(
                f"field 'feature_columns' is {config['feature_columns']!r}; "
                f"this jointembed reads {list(FEATURE_COLUMNS)}"
            )
        columns = tuple(str(c) for c in config["columns"])
        if not set(CSV_COLUMNS) <= set(columns):
            raise ValueError(f"field 'columns' is {list(columns)}; it must name every column of {list(CSV_COLUMNS)}")
        _check_on_missing(config["on_missing"])
        vectors = {k: np.asarray(config[k], dtype=np.float64) for k in ("medians", "mean", "std")}
        bad = [k for k, v in vectors.items() if v.shape != (len(FEATURE_COLUMNS),) or not np.isfinite(v).all()]
        if bad:
            raise ValueError(f"field(s) {bad} must hold {len(FEATURE_COLUMNS)} finite numbers each")
        extra = {str(k): int(v) for k, v in dict(config["extra_buckets"]).items()}
        boundaries = {str(k): np.asarray(v, dtype=np.float64) for k, v in dict(config["boundaries"]).items()}
        if set(boundaries) != {"latitude", "longitude", *extra}:
            raise ValueError(
                f"field 'boundaries' has columns {sorted(boundaries)}; expected latitude, longitude and {sorted(extra)}"
            )
        return cls(
            num_lat_buckets=int(config["num_lat_buckets"]),
            num_lon_buckets=int(config["num_lon_buckets"]),
            extra_buckets=extra,
            boundaries=boundaries,
            target_mean=float(config["target_mean"]),
            target_std=float(config["target_std"]),
            on_missing=config["on_missing"],
            columns=columns,
            **vectors,
        )


_CONFIG_FIELDS = (
    "feature_columns",
    "columns",
    "num_lat_buckets",
    "num_lon_buckets",
    "extra_buckets",
    "on_missing",
    "medians",
    "mean",
    "std",
    "boundaries",
    "target_mean",
    "target_std",
)
