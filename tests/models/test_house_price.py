import json
import warnings

import numpy as np
import pytest
import torch
from housing_fixture import synthetic_rows, write_csv

import jointembed.pretrained as pretrained
from jointembed.data.housing_features import (
    CSV_COLUMNS,
    FEATURE_COLUMNS,
    HousingFeaturizer,
    ids_to_sparse,
    read_housing_csv,
)
from jointembed.errors import CheckpointError, DataFormatError
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.models.house_price import FORMAT, HousePricePredictor
from jointembed.pretrained import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> HousePricePredictor:
    path = write_csv(tmp_path_factory.mktemp("h") / "train.csv", synthetic_rows(200, seed=0))
    featurizer = HousingFeaturizer.fit(read_housing_csv(path), 4, 4)
    torch.manual_seed(0)
    network = EmbeddingNet(16, out_features=1, embedding_dim=3, num_dense_features=8, hidden_sizes=[8])
    return HousePricePredictor(network, featurizer)


def _rows() -> list[list[str]]:
    return synthetic_rows(12, seed=3)  # rows 0 and 7 lack total_bedrooms


def _predict(model: HousePricePredictor, rows) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the imputation notice
        return model.predict(rows)


def test_predicts_dollars_from_every_row_form(predictor, tmp_path):
    rows = _rows()
    expected = _predict(predictor, rows)
    assert expected.shape == (12,) and expected.dtype == np.float64 and np.isfinite(expected).all()
    dicts = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows]
    csv = write_csv(tmp_path / "rows.csv", rows)
    numbers = [[float(v) if v else None for v in row[:-1]] for row in rows]  # no target, None for missing
    for form in (dicts, csv, str(csv), numbers):
        np.testing.assert_array_equal(_predict(predictor, form), expected)
    np.testing.assert_array_equal(predictor.predict(dicts[1]), expected[1:2])  # one dict is one row
    np.testing.assert_allclose(predictor.predict(rows[1:7], batch_size=2), expected[1:7], rtol=1e-6)  # float32 ulps
    # what the network computes: standardised output times the target's std plus its mean
    ids, dense = predictor.featurizer.featurize(rows[1:3])
    out = predictor.network(ids_to_sparse(torch.from_numpy(ids)), torch.from_numpy(dense)).squeeze(-1)
    f = predictor.featurizer
    torch.testing.assert_close(out * f.target_std + f.target_mean, torch.from_numpy(expected[1:3]).float())


def test_bad_rows_raise_named_errors(predictor):
    row = dict(zip(FEATURE_COLUMNS, _rows()[1], strict=False))
    with pytest.raises(DataFormatError, match=r"rows\[1\]: missing column\(s\) \['median_income'\]"):
        predictor.predict([row, {k: v for k, v in row.items() if k != "median_income"}])
    with pytest.raises(DataFormatError, match=r"rows\[0\], column 'population': 'many' is not a number"):
        predictor.predict([row | {"population": "many"}])
    with pytest.raises(DataFormatError, match=r"rows\[0\]: expected 9 fields .*got 5"):
        predictor.predict([[1, 2, 3, 4, 5]])
    with pytest.warns(UserWarning, match=r"imputed 1 missing value\(s\) .*'households': 1"):
        predictor.predict([row | {"households": None}])


def test_save_load_round_trip_is_exact_and_in_eval_mode(predictor, tmp_path):
    folder = predictor.save_pretrained(tmp_path / "pretrained", metrics={"test/rmse": 51234.5})
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["format"] == FORMAT and config["version"] == 1
    assert config["featurizer"]["columns"] == list(CSV_COLUMNS)
    card = (folder / CARD_NAME).read_text()
    assert "HousePricePredictor.from_pretrained" in card and "| test/rmse | 51234.5000 |" in card
    loaded = HousePricePredictor.from_pretrained(folder)
    assert not loaded.training and not loaded.network.training
    np.testing.assert_allclose(_predict(loaded, _rows()), _predict(predictor, _rows()), rtol=1e-6, atol=1e-6)
    assert loaded.featurizer.to_config() == predictor.featurizer.to_config()


def test_bad_folders_raise_checkpoint_errors(predictor, tmp_path):
    folder = predictor.save_pretrained(tmp_path / "p")
    config = json.loads((folder / CONFIG_NAME).read_text())

    def write(change: dict) -> None:
        (folder / CONFIG_NAME).write_text(json.dumps(config | change))

    write({"format": "jointembed.digit_classifier"})
    with pytest.raises(CheckpointError, match="field 'format' is 'jointembed.digit_classifier', expected"):
        HousePricePredictor.from_pretrained(folder)
    write({"version": 99})
    with pytest.raises(CheckpointError, match="field 'version' is 99"):
        HousePricePredictor.from_pretrained(folder)
    write({"featurizer": {**config["featurizer"], "mean": [0.0]}})
    with pytest.raises(CheckpointError, match=r"config\.json: field 'featurizer': field\(s\) \['mean'\]"):
        HousePricePredictor.from_pretrained(folder)
    write({"network": {**config["network"], "num_embeddings": 9}})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        HousePricePredictor.from_pretrained(folder)
    write({"network": {**config["network"], "num_dense_features": None}})
    with pytest.raises(CheckpointError, match="'network' leaves num_dense_features null"):
        HousePricePredictor.from_pretrained(folder)
    write({})
    weights = folder / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read safetensors weights"):
        HousePricePredictor.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="no such"):
        HousePricePredictor.from_pretrained(tmp_path / "absent")


def test_an_interrupted_save_leaves_the_previous_folder_whole(predictor, tmp_path, monkeypatch):
    folder = predictor.save_pretrained(tmp_path / "pretrained")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def interrupted(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "save_file", interrupted)
    with torch.no_grad():
        predictor.network.tower[0].bias.add_(1.0)  # a different model, whose save is cut short
    try:
        with pytest.raises(KeyboardInterrupt):
            predictor.save_pretrained(folder)
    finally:
        with torch.no_grad():
            predictor.network.tower[0].bias.sub_(1.0)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["pretrained"]  # no temporary folder left behind
    HousePricePredictor.from_pretrained(folder)


def test_network_must_fit_the_featurizer(predictor):
    with pytest.raises(ValueError, match="set the model's num_embeddings to 16"):
        HousePricePredictor(EmbeddingNet(9, out_features=1, num_dense_features=8), predictor.featurizer)
    with pytest.raises(ValueError, match="out_features=1"):
        HousePricePredictor(EmbeddingNet(16, out_features=2, num_dense_features=8), predictor.featurizer)
    with pytest.raises(RuntimeError, match="leaves num_embeddings to the data .* no layers yet"):
        HousePricePredictor(EmbeddingNet(None, out_features=1, num_dense_features=8), predictor.featurizer)
