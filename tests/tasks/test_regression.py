import copy
import csv
import json
import math
import re
import shutil
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from housing_fixture import TEST_FILE, write_housing_folder

from jointembed.cli import main
from jointembed.data.digits import DigitsDataModule
from jointembed.data.housing import HousingDataModule
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.models.house_price import HousePricePredictor
from jointembed.nn import suggest_embedding_dim
from jointembed.sparse import SparseBatch
from jointembed.tasks.regression import FeaturizedData, RegressionTask

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "datasets" / "california_housing"


def _need_shipped_data() -> None:
    if not (SHIPPED / "california_housing_train.csv").is_file():
        pytest.skip(f"the shipped copy of the housing data is not at {SHIPPED}")


def _trainer(epochs: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _tiny_data(tmp_path: Path) -> HousingDataModule:
    """240 + 60 synthetic rows; 4 x 4 grid cells and 3 income buckets: 19 sparse IDs, 8 dense features."""
    folder = write_housing_folder(tmp_path / "data")
    extra = {"median_income": 3}
    return HousingDataModule(str(folder), batch_size=32, num_lat_buckets=4, num_lon_buckets=4, extra_buckets=extra)


def _unsized() -> EmbeddingNet:
    return EmbeddingNet(None, out_features=None, num_dense_features=None, combiner="sum", hidden_sizes=[8])


def test_standardised_loss_and_predictions_in_target_units():
    net = EmbeddingNet(4, out_features=1, embedding_dim=2, hidden_sizes=[])
    task = RegressionTask(net)
    task.set_target_stats(200_000.0, 50_000.0)
    with torch.no_grad():
        net.tower[0].weight.zero_()
        net.tower[0].bias.fill_(0.5)
    sparse = SparseBatch.from_lists([[0], [1, 2]])
    torch.testing.assert_close(task.predict(sparse), torch.tensor([225_000.0, 225_000.0]))
    batch = {"sparse": sparse, "target": torch.tensor([225_000.0, 175_000.0])}
    loss, _ = task._loss(batch)  # standardised targets 0.5 and -0.5 against predictions 0.5
    assert loss.item() == pytest.approx((0.0**2 + 1.0**2) / 2)
    state = task.state_dict()  # the statistics travel with checkpoints
    assert state["target_mean"].item() == 200_000.0 and state["target_std"].item() == 50_000.0
    with pytest.raises(ValueError, match="must be positive"):
        task.set_target_stats(0.0, 0.0)


def test_model_must_have_one_output():
    with pytest.raises(ValueError, match="out_features=1"):
        RegressionTask(EmbeddingNet(4, out_features=2))


@pytest.mark.filterwarnings("ignore:.*imputed")
def test_sizes_left_to_the_data_come_from_its_featurizer_once(tmp_path):
    dm = _tiny_data(tmp_path)
    task = RegressionTask(_unsized())
    task.bind_data(dm)  # the data module fits its featurizer first
    config = task.model.get_config()
    assert (config["num_embeddings"], config["num_dense_features"], config["out_features"]) == (19, 8, 1)
    assert config["embedding_dim"] == suggest_embedding_dim(19)
    assert task.featurizer is dm.featurizer and task.target_mean.item() == pytest.approx(dm.target_stats[0])
    weights = task.model.embedding.weight
    task.bind_data(dm)  # binding again (and the trainer's setup) changes nothing
    _trainer(epochs=1).fit(task, datamodule=dm)
    assert task.model.embedding.weight is weights
    assert copy.deepcopy(task)._bound is None  # a copy (weight averaging makes one) does not carry the data


@pytest.mark.filterwarnings("ignore:.*imputed")
def test_a_plain_trainer_sizes_the_network_in_setup_and_explicit_sizes_are_checked(tmp_path):
    dm = _tiny_data(tmp_path)
    task = RegressionTask(_unsized())
    _trainer(epochs=1).fit(task, datamodule=dm)
    assert task.model.num_embeddings == 19
    given = RegressionTask(EmbeddingNet(16, out_features=1, num_dense_features=None))
    with pytest.raises(ValueError, match="produces 19 sparse IDs but the network's table has num_embeddings=16"):
        given.bind_data(dm)
    with pytest.raises(ValueError, match="has no fitted featurizer to tell them"):
        RegressionTask(_unsized()).bind_data(DigitsDataModule())
    with pytest.raises(RuntimeError, match="leaves num_embeddings, num_dense_features, out_features to the data"):
        RegressionTask(_unsized()).predict(SparseBatch.from_lists([[0]]))


@pytest.mark.filterwarnings("ignore:.*imputed")
def test_weight_averaging_copies_the_network_at_its_final_size(tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    dm = _tiny_data(tmp_path)
    with pytest.raises(ValueError, match=r"EMAWeightAveraging copied the model .* call task.bind_data\(datamodule\)"):
        _trainer(epochs=1, callbacks=[EMAWeightAveraging()]).fit(RegressionTask(_unsized()), datamodule=dm)
    task = RegressionTask(_unsized())
    task.bind_data(dm)  # before the trainer, as jointembed does
    averaging = EMAWeightAveraging()
    _trainer(epochs=1, callbacks=[averaging]).fit(task, datamodule=dm)
    averaged = averaging._average_model.module
    assert [p.shape for p in averaged.model.parameters()] == [p.shape for p in task.model.parameters()]


@pytest.mark.filterwarnings("ignore:.*imputed")
def test_a_checkpoint_loads_into_a_network_that_leaves_its_sizes_to_the_data(tmp_path):
    task = RegressionTask(_unsized())
    trainer = _trainer(epochs=1)
    trainer.fit(task, datamodule=_tiny_data(tmp_path))
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    loaded = RegressionTask.load_from_checkpoint(tmp_path / "run.ckpt", model=_unsized(), weights_only=False)
    assert loaded.model.get_config() == task.model.get_config()
    for (name, a), b in zip(task.state_dict().items(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_housing_beats_the_linear_baseline_on_real_data():
    _need_shipped_data()
    pl.seed_everything(0)
    dm = HousingDataModule(str(SHIPPED), batch_size=256)
    net = EmbeddingNet(dm.num_sparse_ids, out_features=1, num_dense_features=8, combiner="sum", hidden_sizes=[64, 32])
    task = RegressionTask(net, lr=6e-3)
    trainer = _trainer(epochs=3)
    trainer.fit(task, datamodule=dm)
    assert task.target_mean.item() == pytest.approx(dm.target_stats[0])
    trainer.test(task, datamodule=dm, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # the baseline is reported over exactly the test rows
    test = dm.datasets["test"].arrays
    errors = (test["baseline_linear"] - test["target"]).double()
    assert metrics["test/baseline_linear_rmse"] == pytest.approx(math.sqrt(errors.pow(2).mean()), rel=1e-4)
    assert metrics["test/baseline_linear_mae"] == pytest.approx(float(errors.abs().mean()), rel=1e-4)
    assert metrics["test/baseline_linear_rmse"] > 60_000  # a weak baseline: location is not linear in price
    assert metrics["test/rmse"] < 0.9 * metrics["test/baseline_linear_rmse"]
    assert metrics["test/mae"] < 0.9 * metrics["test/baseline_linear_mae"]


def test_model_that_does_not_match_the_data_fails_at_setup():
    _need_shipped_data()
    task = RegressionTask(EmbeddingNet(100, out_features=1, num_dense_features=8))
    with pytest.raises(ValueError, match="produces 400 sparse IDs .* set the model's num_embeddings to 400"):
        _trainer(epochs=1).fit(task, datamodule=HousingDataModule(str(SHIPPED)))


def test_exported_folder_predicts_raw_rows_as_the_test_loop_does(tmp_path):
    data = write_housing_folder(tmp_path / "data")
    pl.seed_everything(0)
    dm = HousingDataModule(str(data), batch_size=32, num_lat_buckets=4, num_lon_buckets=4)
    assert isinstance(dm, FeaturizedData) and not isinstance(DigitsDataModule(), FeaturizedData)
    net = EmbeddingNet(16, out_features=1, embedding_dim=3, num_dense_features=8, combiner="sum", hidden_sizes=[16])
    task = RegressionTask(net, lr=1e-2)
    trainer = _trainer(epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # imputation notices, small-data notices
        trainer.fit(task, datamodule=dm)
        (metrics,) = trainer.test(task, datamodule=dm, verbose=False)
        loop = torch.cat(trainer.predict(task, dataloaders=dm.test_dataloader())).numpy()
    task.export_pretrained(tmp_path / "run" / "pretrained", metrics)
    # the folder is self-contained: load a copy after the run (and its data) are gone
    copy = shutil.copytree(tmp_path / "run" / "pretrained", tmp_path / "elsewhere" / "model")
    shutil.rmtree(tmp_path / "run")
    test_csv = shutil.move(data / TEST_FILE, tmp_path / "rows.csv")
    shutil.rmtree(data)
    loaded = HousePricePredictor.from_pretrained(copy)
    assert not loaded.training
    with pytest.warns(UserWarning, match="imputed 9 missing value"):  # every 7th of 60 rows lacks total_bedrooms
        raw = loaded.predict(test_csv)
    np.testing.assert_allclose(raw, loop, rtol=1e-6)
    with open(test_csv, newline="") as f:
        target = np.array([float(row["median_house_value"]) for row in csv.DictReader(f)])
    assert math.sqrt(np.mean((raw - target) ** 2)) == pytest.approx(metrics["test/rmse"], rel=1e-4)
    # the folder's statistics are the task's
    assert loaded.featurizer.target_mean == pytest.approx(task.target_mean.item())


def test_export_needs_a_featurizer():
    task = RegressionTask(EmbeddingNet(16, out_features=1, num_dense_features=8))
    with pytest.raises(RuntimeError, match=r"no featurizer .* \(HousingDataModule\)"):
        task.export_pretrained("unused")


@pytest.mark.slow
def test_recipe_runs_through_the_cli_and_leaves_a_portable_pretrained_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["jointembed"])  # LightningCLI warns when pytest's own arguments are there
    _need_shipped_data()
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fit",
            "--config",
            str(REPO / "recipes" / "housing.yaml"),
            f"--data.init_args.path={SHIPPED}",
            "--trainer.max_epochs",
            "2",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert code == 0
    (path,) = tmp_path.glob("runs/housing/version_*/test_metrics.json")
    metrics = json.loads(path.read_text())
    assert set(metrics) >= {"test/rmse", "test/mae", "test/baseline_linear_rmse", "test/baseline_linear_mae"}
    assert all(math.isfinite(v) for v in metrics.values())
    (printed,) = re.findall(r"pretrained model written to (\S+)", capsys.readouterr().out)
    copy = shutil.copytree(printed, tmp_path / "elsewhere" / "house_prices")
    monkeypatch.chdir(tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "runs")
    model = HousePricePredictor.from_pretrained(copy)
    with open(SHIPPED / TEST_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    one = model.predict(rows[0])
    assert one.shape == (1,) and 10_000 < one[0] < 1_000_000
    target = np.array([float(row["median_house_value"]) for row in rows])
    rmse = math.sqrt(np.mean((model.predict(rows) - target) ** 2))
    assert rmse == pytest.approx(metrics["test/rmse"], rel=1e-4)
