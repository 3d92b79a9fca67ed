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

Reading, parsing, imputation and the fitted featurizer live in :mod:`jointembed.data.housing_features` (the
unit a pretrained house-price folder saves and calls on raw rows); their names are re-exported here. Missing
values follow ``on_missing``: ``"impute"`` (the default) replaces each missing feature with the training split's
median of its column and warns with the count per column; ``"error"`` raises
:class:`~jointembed.errors.DataFormatError` naming the file, line and column. No NaN ever reaches the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from jointembed.data.housing_features import (
    FEATURE_COLUMNS,
    TARGET_COLUMN,
    Bucketing,
    HousingFeaturizer,
    HousingTable,
    OnMissing,
    bucketize,
    fit_boundaries,
    ids_to_sparse,
    read_housing_csv,
)
from jointembed.data.splits import SplitDataModule
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

TRAIN_FILE = "california_housing_train.csv"
TEST_FILE = "california_housing_test.csv"


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
    batch: dict[str, torch.Tensor | SparseBatch] = {"sparse": ids_to_sparse(torch.stack([r["ids"] for r in rows]))}
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

    def fitted_featurizer(self) -> HousingFeaturizer:
        """The featurizer fit on the training split (setting the data module up first if needed): what sizes the
        network, and what a pretrained folder saves to read raw rows the way training did."""
        if self.featurizer is None:
            self.setup("fit")
        return self.featurizer

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
            tables["train"],
            self.num_lat_buckets,
            self.num_lon_buckets,
            self.extra_buckets,
            self.bucketing,
            self.on_missing,
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
