"""California housing: predict a district's median house value from its location and census figures.

The data is the copy used in Google's Machine Learning Crash Course (``california_housing_train.csv``, 17,000
rows, and ``california_housing_test.csv``, 3,000 rows; shipped in ``datasets/california_housing/``).

Features, all fit on the **training split only** (the train file minus a seeded validation fraction):

- sparse: the grid cell of a district, a feature cross of bucketized latitude × longitude
  (``lat_bucket * num_lon_buckets + lon_bucket``), optionally followed in the same bag by bucketized other
  columns, each in its own ID range after the cross;
- dense: the eight numeric columns (longitude … median_income), standardised with the training split's mean and
  standard deviation;
- target: ``median_house_value`` in dollars (the task standardises it with :attr:`HousingDataModule.target_stats`).

Missing values (an empty field, ``NaN``, ``NA``, ``null``) follow ``on_missing``: ``"impute"`` (the default)
replaces each missing feature with the training split's median of its column and warns with the count per
column; ``"error"`` raises :class:`~jointembed.errors.DataFormatError` naming the file, line and column. A missing
target is always an error, as is text that is not a number. No NaN ever reaches the model.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from jointembed.data.splits import SplitDataModule
from jointembed.errors import DataFormatError
from jointembed.sparse import SparseBatch

__all__ = [
    "FEATURE_COLUMNS",
    "TARGET_COLUMN",
    "HousingTable",
    "HousingFeaturizer",
    "HousingDataModule",
    "read_housing_csv",
    "fit_boundaries",
    "bucketize",
    "fit_linear_regression",
    "collate_housing",
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
TRAIN_FILE = "california_housing_train.csv"
TEST_FILE = "california_housing_test.csv"
_MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})

OnMissing = Literal["impute", "error"]
Bucketing = Literal["quantile", "uniform"]


@dataclass(frozen=True)
class HousingTable:
    """The rows of one housing CSV file.

    Attributes:
        path: The file read.
        features: ``(N, 8)`` float64 columns in :data:`FEATURE_COLUMNS` order; NaN where a value is missing.
        target: ``(N,)`` float64 median house values in dollars.
        lines: ``(N,)`` line number of each row in the file (the header is line 1), for error messages.
    """

    path: Path
    features: np.ndarray
    target: np.ndarray
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    def take(self, rows: np.ndarray) -> HousingTable:
        """The table restricted to ``rows`` (indices), keeping each row's line number."""
        return HousingTable(self.path, self.features[rows], self.target[rows], self.lines[rows])


def read_housing_csv(path: str | Path, on_missing: OnMissing = "impute") -> HousingTable:
    """Read a California housing CSV (a header row naming at least the nine columns; extra columns are ignored).

    Args:
        path: The CSV file.
        on_missing: ``"impute"`` keeps a missing feature as NaN (the data module fills it with the training
            split's median); ``"error"`` raises at the first missing feature.

    Raises:
        DataFormatError: A missing column, a row with too few fields, text that is not a finite number, a missing
            target, or (``on_missing="error"``) a missing feature; the message names the file, line and column.
    """
    if on_missing not in ("impute", "error"):
        raise ValueError(f"on_missing must be 'impute' or 'error', got {on_missing!r}")
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataFormatError(f"{path}: the file is empty (expected a header row naming the columns)")
        header = [name.strip() for name in header]
        missing = [c for c in (*FEATURE_COLUMNS, TARGET_COLUMN) if c not in header]
        if missing:
            raise DataFormatError(f"{path}, line 1: the header lacks column(s) {missing}; it has {header}")
        positions = [header.index(c) for c in (*FEATURE_COLUMNS, TARGET_COLUMN)]
        rows, lines = [], []
        for line, fields in enumerate(reader, start=2):
            if not fields:  # a blank line
                continue
            if len(fields) < len(header):
                raise DataFormatError(f"{path}, line {line}: expected {len(header)} fields, got {len(fields)}")
            rows.append([_parse_number(fields[p], path, line, header[p], on_missing) for p in positions])
            lines.append(line)
    if not rows:
        raise DataFormatError(f"{path}: no data rows after the header")
    table = np.asarray(rows, dtype=np.float64)
    return HousingTable(path, table[:, :-1], table[:, -1], np.asarray(lines, dtype=np.int64))


def _parse_number(text: str, path: Path, line: int, column: str, on_missing: OnMissing) -> float:
    text = text.strip()
    if text.lower() in _MISSING_TOKENS:
        if column == TARGET_COLUMN:
            raise DataFormatError(
                f"{path}, line {line}, column {column!r}: the target is missing ({text!r}); a target cannot be imputed"
            )
        if on_missing == "error":
            raise DataFormatError(
                f"{path}, line {line}, column {column!r}: missing value ({text!r}); "
                "use on_missing='impute' to fill missing features with the training split's median"
            )
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(f"{path}, line {line}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataFormatError(f"{path}, line {line}, column {column!r}: {text!r} is not a finite number")
    return value


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


def fit_linear_regression(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Ordinary least squares with an intercept, in closed form: ``y ≈ x @ coef + intercept``.

    Args:
        x: ``(N, F)`` features.
        y: ``(N,)`` targets.

    Returns:
        ``coef`` ``(F,)`` and ``intercept``.
    """
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    return solution[:-1], float(solution[-1])


@dataclass
class HousingFeaturizer:
    """Everything learnt from the training split: medians, bucket boundaries, feature and target statistics.

    Build it with :meth:`fit` on the training split only, then :meth:`transform` every split with it.

    Attributes:
        num_lat_buckets, num_lon_buckets: Grid size of the latitude × longitude cross.
        extra_buckets: Other columns bucketized into the same bag: column name → number of buckets.
        medians: ``(8,)`` training medians, used to impute missing features.
        mean, std: ``(8,)`` training mean and standard deviation of the (imputed) dense features.
        boundaries: Column name → inner bucket boundaries.
        target_mean, target_std: Training mean and standard deviation of the target.
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

    @classmethod
    def fit(
        cls,
        train: HousingTable,
        num_lat_buckets: int = 20,
        num_lon_buckets: int = 20,
        extra_buckets: dict[str, int] | None = None,
        bucketing: Bucketing = "quantile",
    ) -> HousingFeaturizer:
        """Learn the featurizer from the training split (missing features are imputed first, for the statistics)."""
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
        )

    @property
    def num_ids(self) -> int:
        """Number of sparse IDs: the grid cells, then each extra column's buckets."""
        return self.num_lat_buckets * self.num_lon_buckets + sum(self.extra_buckets.values())

    def impute(self, table: HousingTable) -> tuple[np.ndarray, dict[str, int]]:
        """``(N, 8)`` features with each NaN replaced by its column's training median, and the count per column."""
        missing = np.isnan(table.features)
        counts = {c: int(n) for c, n in zip(FEATURE_COLUMNS, missing.sum(axis=0), strict=True) if n}
        return np.where(missing, self.medians, table.features), counts

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


class _HousingRows(Dataset):
    """Rows of model inputs: each item is a dict of one row's ``ids``, ``dense``, ``target`` (and baselines)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def __len__(self) -> int:
        return len(self.arrays["target"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.arrays.items()}


def collate_housing(rows: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | SparseBatch]:
    """Stack rows into a batch: ``{"sparse": SparseBatch, "dense": (B, 8), "target": (B,), ...}``.

    Every row has the same number of IDs ``k`` (the grid cell and one per extra column), so bag ``i`` is
    ``ids[i]``; any other key (``baseline_linear``) is stacked as is.
    """
    ids = torch.stack([r["ids"] for r in rows])
    batch: dict[str, torch.Tensor | SparseBatch] = {
        "sparse": SparseBatch.from_tensors(ids.flatten(), lengths=torch.full((len(rows),), ids.shape[1]))
    }
    for key in rows[0]:
        if key != "ids":
            batch[key] = torch.stack([r[key] for r in rows])
    return batch


class HousingDataModule(SplitDataModule):
    """California housing as batches ``{"sparse", "dense", "target"}`` (plus ``"baseline_linear"`` in the
    validation and test batches: a least-squares fit on the training split's dense features, in dollars).

    The train file is split (seeded) into training and validation rows; the test file is the test split.
    Everything the features need (medians, bucket boundaries, statistics) is fit on the training rows only.

    Args:
        path: Folder holding ``california_housing_train.csv`` and ``california_housing_test.csv``.
        val_fraction: Fraction of the train file held out for validation, in (0, 1).
        batch_size: Rows per batch.
        num_lat_buckets: Latitude buckets of the grid cross.
        num_lon_buckets: Longitude buckets of the grid cross.
        extra_buckets: Other columns to bucketize into the same bag (column → number of buckets), for example
            ``{"median_income": 10}``; their IDs follow the grid cells'.
        bucketing: ``quantile`` (equal counts per bucket) or ``uniform`` (equal widths) boundaries.
        on_missing: Missing features: ``impute`` with the training median (warns with the count) or ``error``.
        seed: Seed of the validation split and of the training shuffle.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        path: str = "datasets/california_housing",
        val_fraction: float = 0.1,
        batch_size: int = 128,
        num_lat_buckets: int = 20,
        num_lon_buckets: int = 20,
        extra_buckets: dict[str, int] | None = None,
        bucketing: Bucketing = "quantile",
        on_missing: OnMissing = "impute",
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(collate_housing, batch_size, num_workers, seed)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if num_lat_buckets < 1 or num_lon_buckets < 1 or any(n < 1 for n in (extra_buckets or {}).values()):
            raise ValueError("every number of buckets must be >= 1")
        if on_missing not in ("impute", "error"):
            raise ValueError(f"on_missing must be 'impute' or 'error', got {on_missing!r}")
        self.save_hyperparameters()
        self.path = Path(path)
        self.val_fraction = val_fraction
        self.num_lat_buckets = num_lat_buckets
        self.num_lon_buckets = num_lon_buckets
        self.extra_buckets = dict(extra_buckets or {})
        self.bucketing = bucketing
        self.on_missing = on_missing
        self.featurizer: HousingFeaturizer | None = None
        self.imputed: dict[str, dict[str, int]] = {}

    @property
    def num_sparse_ids(self) -> int:
        """Number of sparse IDs the batches use (the grid cells, then each extra column's buckets)."""
        return self.num_lat_buckets * self.num_lon_buckets + sum(self.extra_buckets.values())

    @property
    def num_dense_features(self) -> int:
        """Width of the dense features (8)."""
        return len(FEATURE_COLUMNS)

    @property
    def target_stats(self) -> tuple[float, float]:
        """The training split's target mean and standard deviation, in dollars (after :meth:`setup`)."""
        if self.featurizer is None:
            raise RuntimeError("call setup() before reading target_stats")
        return self.featurizer.target_mean, self.featurizer.target_std

    def setup(self, stage: str | None = None) -> None:
        """Read both files, split, fit the featurizer and the linear baseline on the training rows (once)."""
        if self.featurizer is not None:
            return
        train_file, test_file = self.path / TRAIN_FILE, self.path / TEST_FILE
        for file in (train_file, test_file):
            if not file.is_file():
                raise FileNotFoundError(f"{file} not found: path must be a folder holding {TRAIN_FILE} and {TEST_FILE}")
        full = read_housing_csv(train_file, self.on_missing)
        order = np.random.default_rng(self.seed).permutation(len(full))
        num_val = max(1, round(len(full) * self.val_fraction))
        if num_val >= len(full):
            raise ValueError(
                f"{train_file}: {len(full)} rows leave none for training with val_fraction={self.val_fraction}"
            )
        tables = {"train": full.take(order[num_val:]), "val": full.take(order[:num_val])}
        tables["test"] = read_housing_csv(test_file, self.on_missing)
        featurizer = HousingFeaturizer.fit(
            tables["train"], self.num_lat_buckets, self.num_lon_buckets, self.extra_buckets, self.bucketing
        )
        arrays = {}
        for split, table in tables.items():
            features, self.imputed[split] = featurizer.impute(table)
            ids, dense = featurizer.transform(features)
            arrays[split] = {"ids": ids, "dense": dense, "target": table.target.astype(np.float32)}
        coef, intercept = fit_linear_regression(arrays["train"]["dense"], arrays["train"]["target"])
        for split in ("val", "test"):
            arrays[split]["baseline_linear"] = (arrays[split]["dense"] @ coef + intercept).astype(np.float32)
        self.datasets = {split: _HousingRows(a) for split, a in arrays.items()}
        self.featurizer = featurizer
        self._warn_imputed(tables)

    def _warn_imputed(self, tables: dict[str, HousingTable]) -> None:
        for split, counts in self.imputed.items():
            if counts:
                total = sum(counts.values())
                rank_zero_warn(
                    f"{tables[split].path} ({split} split): imputed {total} missing value(s) with the training "
                    f"split's medians: {counts}"
                )
