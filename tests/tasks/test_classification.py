import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from jointembed.data.digits import DigitsDataModule
from jointembed.lightning_cli import run
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.tasks.classification import ClassificationTask, format_confusion_matrix

REPO = Path(__file__).resolve().parents[2]


def _trainer(epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_tiny_digits_run_reaches_accuracy_floor_and_fills_the_confusion_matrix(capsys):
    pl.seed_everything(0)
    net = EmbeddingNet(64, out_features=10, embedding_dim=8, combiner="sum", hidden_sizes=[32])
    task = ClassificationTask(net, num_classes=10, lr=1e-2)
    dm = DigitsDataModule(batch_size=64)
    trainer = _trainer(epochs=6)
    trainer.fit(task, datamodule=dm)
    trainer.test(task, datamodule=dm, verbose=False)
    accuracy = float(trainer.callback_metrics["test/acc"])
    assert accuracy > 0.8
    matrix = task.extra_test_metrics()["test/confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == 359
    assert [sum(row) for row in matrix] == torch.bincount(torch.from_numpy(dm.datasets["test"].labels)).tolist()
    assert sum(matrix[i][i] for i in range(10)) / 359 == pytest.approx(accuracy)
    assert "test confusion matrix" in capsys.readouterr().out
    probs = task.predict_proba(next(iter(dm.test_dataloader()))["sparse"])
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(len(probs)))


def test_no_confusion_matrix_before_testing():
    task = ClassificationTask(EmbeddingNet(64, out_features=10), num_classes=10)
    assert task.extra_test_metrics() == {}


def test_bad_arguments():
    with pytest.raises(ValueError, match="out_features=3 but num_classes=10"):
        ClassificationTask(EmbeddingNet(64, out_features=3), num_classes=10)
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationTask(EmbeddingNet(64, out_features=10), num_classes=10, label_smoothing=1.0)


def test_model_that_does_not_match_the_data_fails_at_setup():
    task = ClassificationTask(EmbeddingNet(50, out_features=10), num_classes=10)
    with pytest.raises(ValueError, match="produces 64 sparse IDs .* num_embeddings=50"):
        _trainer(epochs=1).fit(task, datamodule=DigitsDataModule())


def test_format_confusion_matrix():
    assert format_confusion_matrix([[5, 0], [1, 12]]).splitlines() == [
        "true\\pred  0  1",
        "        0  5  0",
        "        1  1 12",
    ]


@pytest.mark.slow
def test_recipe_runs_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["jointembed"])  # LightningCLI warns when pytest's own arguments are there
    run(
        [
            "fit",
            "--config",
            str(REPO / "recipes" / "digits.yaml"),
            "--trainer.max_epochs=3",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    (path,) = tmp_path.glob("digits/version_*/test_metrics.json")
    metrics = json.loads(path.read_text())
    assert metrics["test/acc"] > 0.5
    assert sum(map(sum, metrics["test/confusion_matrix"])) == 359
