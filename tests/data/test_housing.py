from pathlib import Path

import numpy as np
import pytest
import torch

from jointembed.data.housing import (
    FEATURE_COLUMNS,
    HousingDataModule,
    HousingFeaturizer,
    HousingTable,
    bucketize,
    fit_boundaries,
    fit_linear_regression,
    read_housing_csv,
)
from jointembed.errors import DataFormatError

HEADER = ",".join([*FEATURE_COLUMNS, "median_house_value"])
SHIPPED = Path(__file__).resolve().parents[2] / "datasets" / "california_housing"


def _row(lon=-120.0, lat=36.0, age=20, rooms=1000, bedrooms=200, pop=500, households=180, income=3.5, value=150000):
    return ",".join(str(v) for v in (lon, lat, age, rooms, bedrooms, pop, households, income, value))


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _table(features: list[list[float]], target: list[float] | None = None) -> HousingTable:
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(target if target is not None else np.arange(len(x)) * 1000.0 + 1e5)
    return HousingTable(Path("mem.csv"), x, y, np.arange(2, len(x) + 2))


def test_reads_columns_in_any_order(tmp_path):
    names = HEADER.split(",")
    header = ",".join(reversed(names))
    values = _row().split(",")
    path = _write(tmp_path / "h.csv", [",".join(reversed(values))], header=header)
    table = read_housing_csv(path)
    np.testing.assert_allclose(table.features[0], [float(v) for v in values[:-1]])
    assert table.target.tolist() == [150000.0] and table.lines.tolist() == [2]


def test_error_names_file_line_column_and_value(tmp_path):
    path = _write(tmp_path / "bad.csv", [_row(), _row(rooms="lots")])
    with pytest.raises(DataFormatError, match=r"bad\.csv, line 3, column 'total_rooms': 'lots' is not a number"):
        read_housing_csv(path)


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        ([_row()], HEADER.replace(",population", ""), r"line 1: the header lacks column\(s\) \['population'\]"),
        (["-120,36,20"], HEADER, "line 2: expected 9 fields, got 3"),
        ([_row(value="")], HEADER, "line 2, column 'median_house_value': the target is missing"),
        ([_row(income="inf")], HEADER, "line 2, column 'median_income': 'inf' is not a finite number"),
        ([], HEADER, "no data rows"),
    ],
)
def test_format_errors(tmp_path, rows, header, match):
    path = _write(tmp_path / "h.csv", rows, header=header)
    with pytest.raises(DataFormatError, match=match):
        read_housing_csv(path)


def test_missing_values_policy(tmp_path):
    path = _write(tmp_path / "h.csv", [_row(), _row(bedrooms=""), _row(age="NaN")])
    with pytest.raises(DataFormatError, match=r"line 3, column 'total_bedrooms': missing value"):
        read_housing_csv(path, on_missing="error")
    table = read_housing_csv(path, on_missing="impute")
    assert np.isnan(table.features[1, 4]) and np.isnan(table.features[2, 2])
    assert np.isnan(table.features).sum() == 2


def test_impute_uses_training_medians_and_counts():
    train = _table(
        [[-120, 34, 10, 1, 2, 3, 4, 1.0], [-119, 35, 20, 1, np.nan, 3, 4, 2.0], [-118, 36, 60, 1, 8, 3, 4, 3.0]]
    )
    featurizer = HousingFeaturizer.fit(train, num_lat_buckets=2, num_lon_buckets=2)
    np.testing.assert_allclose(featurizer.medians[[2, 4]], [20.0, 5.0])  # nanmedian ignores the missing one
    other = _table([[np.nan, 35, np.nan, 1, np.nan, 3, 4, 2.0]])
    filled, counts = featurizer.impute(other)
    assert counts == {"longitude": 1, "housing_median_age": 1, "total_bedrooms": 1}
    np.testing.assert_allclose(filled[0, [0, 2, 4]], [-119.0, 20.0, 5.0])


def test_bucket_cross_ids_by_hand():
    # uniform boundaries: latitude 32..42 in 2 buckets -> [37]; longitude -124..-115 in 3 -> [-121, -118];
    # median_income 0..10 in 2 -> [5]
    train = _table([[-124, 32, 1, 1, 1, 1, 1, 0.0], [-115, 42, 1, 1, 1, 1, 1, 10.0]])
    featurizer = HousingFeaturizer.fit(train, 2, 3, extra_buckets={"median_income": 2}, bucketing="uniform")
    np.testing.assert_allclose(featurizer.boundaries["longitude"], [-121.0, -118.0])
    assert featurizer.num_ids == 2 * 3 + 2
    points = np.array(
        [
            [-123.0, 33.0, 1, 1, 1, 1, 1, 1.0],  # lat 0, lon 0 -> cell 0; income 0 -> 6
            [-118.0, 38.0, 1, 1, 1, 1, 1, 7.0],  # lat 1, lon 2 (on a boundary: upper bucket) -> 5; income 1 -> 7
            [-120.0, 36.9, 1, 1, 1, 1, 1, 5.0],  # lat 0, lon 1 -> 1; income 1 -> 7
            [-130.0, 50.0, 1, 1, 1, 1, 1, -1.0],  # outside the training range: clamped to lat 1, lon 0 -> 3
        ]
    )
    ids, _ = featurizer.transform(points)
    assert ids.tolist() == [[0, 6], [5, 7], [1, 7], [3, 6]]


def test_quantile_boundaries_and_bucketize():
    values = np.arange(1.0, 101.0)
    np.testing.assert_allclose(fit_boundaries(values, 4, "quantile"), [25.75, 50.5, 75.25])
    assert bucketize(np.array([1.0, 25.75, 50.0, 100.0]), np.array([25.75, 50.5, 75.25])).tolist() == [0, 1, 1, 3]
    # ties merge boundaries rather than making empty buckets
    assert len(fit_boundaries(np.array([1.0] * 9 + [2.0]), 4)) == 1
    with pytest.raises(ValueError, match="bucketing must be"):
        fit_boundaries(values, 4, "log")


def test_linear_regression_recovers_exact_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    coef, intercept = fit_linear_regression(x, x @ np.array([2.0, -1.0, 0.5]) + 7.0)
    np.testing.assert_allclose(coef, [2.0, -1.0, 0.5], atol=1e-9)
    assert intercept == pytest.approx(7.0)


def _housing_folder(tmp_path: Path, test_rows: list[str] | None = None) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        _row(
            lon=-124 + 10 * rng.random(), lat=32 + 10 * rng.random(), rooms=int(rng.integers(100, 5000)), value=i * 1e4
        )
        for i in range(1, 21)
    ]
    _write(tmp_path / "california_housing_train.csv", rows)
    _write(tmp_path / "california_housing_test.csv", test_rows or [_row(rooms=10**7, bedrooms="", value=5e5)])
    return tmp_path


def test_normalisation_and_target_stats_use_training_split_only(tmp_path):
    folder = _housing_folder(tmp_path)
    dm = HousingDataModule(str(folder), val_fraction=0.25, num_lat_buckets=3, num_lon_buckets=2, batch_size=4)
    with pytest.warns(UserWarning, match=r"test split\): imputed 1 missing value\(s\).*'total_bedrooms': 1"):
        dm.setup("fit")
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 15, "val": 5, "test": 1}
    full = read_housing_csv(folder / "california_housing_train.csv")
    order = np.random.default_rng(0).permutation(20)
    train = full.take(order[5:])
    np.testing.assert_allclose(dm.featurizer.mean, train.features.mean(axis=0))
    np.testing.assert_allclose(dm.target_stats, (train.target.mean(), train.target.std()))
    dense = dm.datasets["train"].arrays["dense"]
    torch.testing.assert_close(dense[:, 3].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(dense[:, 3].std(unbiased=False), torch.tensor(1.0), atol=1e-5, rtol=0)
    # the test row's huge total_rooms is standardised with the training statistics, not its own
    expected = (1e7 - train.features[:, 3].mean()) / train.features[:, 3].std()
    assert dm.datasets["test"].arrays["dense"][0, 3].item() == pytest.approx(expected, rel=1e-5)
    assert dm.imputed == {"train": {}, "val": {}, "test": {"total_bedrooms": 1}}


def test_batches_and_baseline(tmp_path):
    dm = HousingDataModule(
        str(_housing_folder(tmp_path, test_rows=[_row()])),
        val_fraction=0.25,
        num_lat_buckets=3,
        num_lon_buckets=2,
        extra_buckets={"median_income": 4},
        batch_size=4,
    )
    dm.setup("fit")
    assert dm.num_sparse_ids == 3 * 2 + 4
    train_batch = next(iter(dm.train_dataloader()))
    assert set(train_batch) == {"sparse", "dense", "target"}
    assert train_batch["sparse"].lengths().tolist() == [2, 2, 2, 2]
    assert train_batch["dense"].shape == (4, 8) and train_batch["target"].dtype == torch.float32
    val_batch = next(iter(dm.val_dataloader()))
    assert set(val_batch) == {"sparse", "dense", "target", "baseline_linear"}
    ids = val_batch["sparse"].values.view(-1, 2)
    assert (ids[:, 0] < 6).all() and ((ids[:, 1] >= 6) & (ids[:, 1] < 10)).all()


def test_error_policy_in_datamodule_and_bad_arguments(tmp_path):
    dm = HousingDataModule(str(_housing_folder(tmp_path)), on_missing="error")
    with pytest.raises(DataFormatError, match="california_housing_test.csv, line 2, column 'total_bedrooms'"):
        dm.setup("fit")
    with pytest.raises(FileNotFoundError, match="california_housing_train.csv not found"):
        HousingDataModule(str(tmp_path / "nowhere")).setup("fit")
    with pytest.raises(ValueError, match="val_fraction"):
        HousingDataModule(val_fraction=1.0)
    with pytest.raises(ValueError, match="unknown column"):
        HousingFeaturizer.fit(_table([[-120, 34, 10, 1, 2, 3, 4, 1.0]]), extra_buckets={"rooms": 3})


def test_shipped_data():
    if not (SHIPPED / "california_housing_train.csv").is_file():
        pytest.skip(f"the shipped copy of the housing data is not at {SHIPPED}")
    dm = HousingDataModule(str(SHIPPED))
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 15300, "val": 1700, "test": 3000}
    for split in dm.datasets.values():
        assert torch.isfinite(split.arrays["dense"]).all()
        assert int(split.arrays["ids"].max()) < dm.num_sparse_ids
