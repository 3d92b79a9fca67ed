import json
import math

import numpy as np
import pytest
from housing_fixture import synthetic_rows, write_csv

from jointembed.data.housing_features import (
    CSV_COLUMNS,
    FEATURE_COLUMNS,
    HousingFeaturizer,
    parse_number,
    parse_rows,
    read_csv_columns,
    read_housing_csv,
)
from jointembed.errors import DataFormatError

ROW = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41,
    "total_rooms": 880,
    "total_bedrooms": 129,
    "population": 322,
    "households": 126,
    "median_income": 8.3252,
}


@pytest.fixture(scope="module")
def featurizer(tmp_path_factory):
    path = write_csv(tmp_path_factory.mktemp("h") / "train.csv", synthetic_rows(200, seed=0))
    return HousingFeaturizer.fit(read_housing_csv(path), 4, 5, {"median_income": 3})


def test_parse_number_accepts_text_and_numbers_and_names_bad_values():
    assert parse_number(" 3.5 ", "rows[0]", "median_income", "impute") == 3.5
    assert parse_number(np.float32(2.0), "rows[0]", "median_income", "impute") == 2.0
    assert parse_number(7, "rows[0]", "population", "impute") == 7.0
    for missing in (None, "", " NA ", math.nan, "null"):
        assert math.isnan(parse_number(missing, "rows[0]", "population", "impute"))
    with pytest.raises(DataFormatError, match=r"rows\[3\], column 'population': 'many' is not a number"):
        parse_number("many", "rows[3]", "population", "impute")
    with pytest.raises(DataFormatError, match=r"rows\[0\], column 'population': True \(bool\) is not a number"):
        parse_number(True, "rows[0]", "population", "impute")
    with pytest.raises(DataFormatError, match="is not a finite number"):
        parse_number(math.inf, "rows[0]", "population", "impute")
    with pytest.raises(DataFormatError, match=r"rows\[1\], column 'population': missing value \(None\)"):
        parse_number(None, "rows[1]", "population", "error")


def test_parse_rows_reads_dicts_lists_with_and_without_target_and_arrays():
    values = [ROW[c] for c in FEATURE_COLUMNS]
    expected = np.asarray([values], dtype=np.float64)
    as_text = {k: str(v) for k, v in ROW.items()} | {"median_house_value": "452600", "note": "ignored"}
    for rows in ([ROW], [as_text], [values], [[*values, 452600.0]], np.asarray([values])):
        np.testing.assert_array_equal(parse_rows(rows), expected)
    # a list follows the training file's column order, whatever it was
    reordered = tuple(reversed(CSV_COLUMNS))
    np.testing.assert_array_equal(parse_rows([[452600.0, *reversed(values)]], reordered), expected)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([ROW, {k: v for k, v in ROW.items() if k != "latitude"}], r"rows\[1\]: missing column\(s\) \['latitude'\]"),
        (
            [[1.0, 2.0, 3.0]],
            r"rows\[0\]: expected 9 fields in the order .* \(or 8 without 'median_house_value'\), got 3",
        ),
        ([ROW | {"total_rooms": "lots"}], r"rows\[0\], column 'total_rooms': 'lots' is not a number"),
        (["-122,37"], r"rows\[0\]: a row must be a dict by column name or a list of fields, got str"),
        ([], "no rows to read"),
    ],
)
def test_parse_rows_errors_name_the_row_and_column(rows, match):
    with pytest.raises(DataFormatError, match=match):
        parse_rows(rows)


def test_featurize_imputes_by_the_saved_policy_and_matches_the_table_path(featurizer, tmp_path):
    rows = synthetic_rows(30, seed=5)  # every 7th has an empty total_bedrooms
    path = write_csv(tmp_path / "test.csv", rows)
    features, _ = featurizer.impute(read_housing_csv(path))
    expected = featurizer.transform(features)
    with pytest.warns(UserWarning, match=r"imputed 5 missing value\(s\).*'total_bedrooms': 5"):
        from_rows = featurizer.featurize(rows)
    with pytest.warns(UserWarning, match="imputed 5"):
        from_file = featurizer.featurize(path)
    for got in (from_rows, from_file):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    # a CSV without the target column is fine for prediction
    no_target = write_csv(tmp_path / "x.csv", [r[:-1] for r in rows], header=FEATURE_COLUMNS)
    with pytest.warns(UserWarning, match="imputed 5"):
        np.testing.assert_array_equal(featurizer.featurize(no_target)[1], expected[1])
    strict = HousingFeaturizer.from_config(featurizer.to_config() | {"on_missing": "error"})
    with pytest.raises(DataFormatError, match=r"rows\[0\], column 'total_bedrooms': missing value"):
        strict.featurize(rows)
    with pytest.raises(DataFormatError, match=r"test\.csv, line 2, column 'total_bedrooms': missing value"):
        strict.featurize(path)


def test_config_round_trips_exactly_through_json(featurizer):
    config = json.loads(json.dumps(featurizer.to_config()))
    again = HousingFeaturizer.from_config(config)
    assert again.to_config() == featurizer.to_config()
    assert again.columns == CSV_COLUMNS and again.on_missing == "impute" and again.num_ids == 4 * 5 + 3
    rows = synthetic_rows(20, seed=9)[1:7]  # none missing
    for a, b in zip(featurizer.featurize(rows), again.featurize(rows), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"medians": [1.0, 2.0]}, r"field\(s\) \['medians'\] must hold 8 finite numbers"),
        ({"feature_columns": ["a"]}, "field 'feature_columns'"),
        ({"boundaries": {"latitude": [1.0]}}, "field 'boundaries' has columns"),
        ({"on_missing": "guess"}, "on_missing must be"),
        ({"columns": ["longitude"]}, "field 'columns'"),
    ],
)
def test_from_config_names_the_bad_field(featurizer, change, match):
    with pytest.raises(ValueError, match=match):
        HousingFeaturizer.from_config(featurizer.to_config() | change)
    config = featurizer.to_config()
    del config["std"]
    with pytest.raises(ValueError, match=r"missing field\(s\) \['std'\]"):
        HousingFeaturizer.from_config(config)


def test_a_csv_that_is_not_utf8_names_the_line_and_byte_not_a_codec_position(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes("a,b\n1,2\n3,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"h\.csv, line 3: byte 0xe9 at column 6 is not UTF-8"):
        read_csv_columns(path, ["a", "b"])
