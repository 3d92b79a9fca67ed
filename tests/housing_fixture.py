"""Tiny synthetic California-housing CSV files (same header as the shipped ones) for fast, seeded tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jointembed.data.housing_features import CSV_COLUMNS, FEATURE_COLUMNS

TRAIN_FILE = "california_housing_train.csv"
TEST_FILE = "california_housing_test.csv"


def synthetic_rows(n: int, seed: int) -> list[list[str]]:
    """``n`` rows of text fields in :data:`CSV_COLUMNS` order; price rises to the north-west and with income.

    Every 7th row has an empty ``total_bedrooms`` field (a missing value to impute).
    """
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-124.0, -114.0, n)
    lat = rng.uniform(32.5, 42.0, n)
    age = rng.integers(1, 52, n)
    rooms = rng.integers(200, 6000, n)
    bedrooms = (rooms * rng.uniform(0.15, 0.25, n)).round()
    population = rng.integers(100, 4000, n)
    households = (population / rng.uniform(2.0, 4.0, n)).round()
    income = rng.uniform(0.5, 12.0, n).round(4)
    value = 100_000 + 20_000 * (lat - 32.5) - 15_000 * (lon + 124.0) + 25_000 * income + rng.normal(0, 10_000, n)
    columns = [lon.round(2), lat.round(2), age, rooms, bedrooms, population, households, income, value.round()]
    rows = [[_text(c[i]) for c in columns] for i in range(n)]
    for row in rows[::7]:
        row[FEATURE_COLUMNS.index("total_bedrooms")] = ""
    return rows


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(float(value))


def write_csv(path: Path, rows: list[list[str]], header: tuple[str, ...] = CSV_COLUMNS) -> Path:
    path.write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n", encoding="utf-8")
    return path


def write_housing_folder(folder: Path, num_train: int = 240, num_test: int = 60) -> Path:
    """A folder holding synthetic ``california_housing_train.csv`` and ``california_housing_test.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / TRAIN_FILE, synthetic_rows(num_train, seed=0))
    write_csv(folder / TEST_FILE, synthetic_rows(num_test, seed=1))
    return folder
