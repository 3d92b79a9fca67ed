import json
import math
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from jointembed.data.housing import HousingDataModule
from jointembed.lightning_cli import run
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.sparse import SparseBatch
from jointembed.tasks.regression import RegressionTask

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "datasets" / "california_housing"


def _need_shipped_data() -> None:
    if not (SHIPPED / "california_housing_train.csv").is_file():
        pytest.skip(f"the shipped copy of the housing data is not at {SHIPPED}")


def _trainer(epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


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


@pytest.mark.slow
def test_recipe_runs_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["jointembed"])  # LightningCLI warns when pytest's own arguments are there
    _need_shipped_data()
    run(
        [
            "fit",
            "--config",
            str(REPO / "recipes" / "housing.yaml"),
            f"--data.init_args.path={SHIPPED}",
            "--trainer.max_epochs=1",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    (path,) = tmp_path.glob("housing/version_*/test_metrics.json")
    metrics = json.loads(path.read_text())
    assert set(metrics) >= {"test/rmse", "test/mae", "test/baseline_linear_rmse", "test/baseline_linear_mae"}
    assert all(math.isfinite(v) for v in metrics.values())
