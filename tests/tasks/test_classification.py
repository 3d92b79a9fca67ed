import json
import re
import shutil
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from jointembed.cli import main
from jointembed.data.digits import DigitImagePreprocessing, DigitsDataModule
from jointembed.models.digit_classifier import DigitClassifier
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.tasks.classification import ClassificationTask, DigitImageData, format_confusion_matrix

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


def test_sizes_and_classes_left_to_the_data_come_from_it_once():
    pl.seed_everything(0)
    given = EmbeddingNet(64, out_features=10, embedding_dim=8, combiner="sum", hidden_sizes=[32])
    pl.seed_everything(0)
    task = ClassificationTask(EmbeddingNet(None, None, embedding_dim=8, combiner="sum", hidden_sizes=[32]), lr=1e-2)
    assert task.num_classes is None and task.extra_test_metrics() == {}
    dm = DigitsDataModule(batch_size=64)
    task.bind_data(dm)
    assert task.num_classes == 10 and task.model.get_config() == given.get_config()
    for (name, a), b in zip(given.state_dict().items(), task.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # the same weights as sizes given by hand
    weights = task.model.embedding.weight
    trainer = _trainer(epochs=1)
    trainer.fit(task, datamodule=dm)  # setup binds the same data module again: nothing changes
    trainer.test(task, datamodule=dm, verbose=False)
    assert task.model.embedding.weight is weights
    assert len(task.extra_test_metrics()["test/confusion_matrix"]) == 10
    # num_classes alone sizes the head; a plain Trainer binds in setup
    alone = ClassificationTask(EmbeddingNet(None, None, embedding_dim=4, hidden_sizes=[]), num_classes=10)
    _trainer(epochs=1).fit(alone, datamodule=dm)
    assert (alone.model.num_embeddings, alone.model.out_features) == (64, 10)


def test_sizes_given_that_differ_from_the_data_name_both():
    dm = DigitsDataModule()
    with pytest.raises(ValueError, match="10 class names for num_classes=3"):
        ClassificationTask(EmbeddingNet(None, None), num_classes=3).bind_data(dm)
    with pytest.raises(ValueError, match="10 class names for num_classes=4"):
        ClassificationTask(EmbeddingNet(None, out_features=4)).bind_data(dm)
    with pytest.raises(ValueError, match="produces 64 sparse IDs but the network's table has num_embeddings=50"):
        ClassificationTask(EmbeddingNet(50, None)).bind_data(dm)
    with pytest.raises(ValueError, match="does not tell them .* DigitImageData"):
        ClassificationTask(EmbeddingNet(None, None)).bind_data(object())
    with pytest.raises(RuntimeError, match="leaves num_embeddings, out_features to the data"):
        _trainer(epochs=1).fit(ClassificationTask(EmbeddingNet(None, None)), train_dataloaders=_train_loader(dm))


def _train_loader(dm: DigitsDataModule):
    dm.setup("fit")
    return dm.train_dataloader()


def test_a_checkpoint_loads_into_a_network_that_leaves_its_sizes_to_the_data(tmp_path):
    task = ClassificationTask(EmbeddingNet(None, None, embedding_dim=4, hidden_sizes=[8]))
    trainer = _trainer(epochs=1)
    trainer.fit(task, datamodule=DigitsDataModule())
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    fresh = EmbeddingNet(None, None, embedding_dim=4, hidden_sizes=[8])
    loaded = ClassificationTask.load_from_checkpoint(tmp_path / "run.ckpt", model=fresh, weights_only=False)
    assert loaded.num_classes == 10 and loaded.model.get_config() == task.model.get_config()
    for (name, a), b in zip(task.model.state_dict().items(), loaded.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_format_confusion_matrix():
    assert format_confusion_matrix([[5, 0], [1, 12]]).splitlines() == [
        "true\\pred  0  1",
        "        0  5  0",
        "        1  1 12",
    ]


def _dark_on_light(image: np.ndarray) -> np.ndarray:
    """A 0-16 digit drawn 32x32, black ink on white paper, as a scan would be."""
    return np.rint(255 * (1 - np.kron(image, np.ones((4, 4))) / 16)).astype(np.uint8)


def test_exported_folder_classifies_raw_images_as_the_test_loop_does(tmp_path):
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=64)
    assert isinstance(dm, DigitImageData)
    net = EmbeddingNet(64, out_features=10, embedding_dim=8, combiner="sum", hidden_sizes=[32])
    task = ClassificationTask(net, num_classes=10, lr=1e-2)
    trainer = _trainer(epochs=2)
    trainer.fit(task, datamodule=dm)
    (metrics,) = trainer.test(task, datamodule=dm, verbose=False)
    assert metrics["test/acc"] > 0.5  # a model worth comparing answers with
    loop = torch.cat(trainer.predict(task, dataloaders=dm.test_dataloader())).numpy()
    task.export_pretrained(tmp_path / "run" / "pretrained", metrics | task.extra_test_metrics())
    copy = shutil.copytree(tmp_path / "run" / "pretrained", tmp_path / "elsewhere" / "digits")
    shutil.rmtree(tmp_path / "run")
    loaded = DigitClassifier.from_pretrained(copy)
    assert not loaded.training
    digits = load_digits()
    images, labels = digits.images[dm.splits["test"]], digits.target[dm.splits["test"]]
    np.testing.assert_allclose(loaded.predict_proba(images), loop, rtol=1e-6, atol=1e-6)
    predicted = loaded.predict(images)
    assert np.mean(predicted == labels) == pytest.approx(metrics["test/acc"], abs=1e-6)
    # the same digits as scanned pictures (dark ink on light paper): the same answers when read in place, nearly
    # all the same when cropped to the digit (the default: it recentres a quarter of them by half a cell or more)
    pictures = [_dark_on_light(image) for image in images]
    assert np.mean(loaded.predict(pictures) == predicted) > 0.8
    loaded.preprocessing = DigitImagePreprocessing(crop=False)
    assert loaded.predict(pictures).tolist() == predicted.tolist()
    assert loaded.predict_names(pictures[:3]) == [str(i) for i in predicted[:3]]


def test_export_needs_preprocessing_and_checks_class_names():
    task = ClassificationTask(EmbeddingNet(64, out_features=10), num_classes=10)
    with pytest.raises(RuntimeError, match=r"no image preprocessing .* \(DigitsDataModule\)"):
        task.export_pretrained("unused")
    with pytest.raises(ValueError, match="3 class names for num_classes=10"):
        task.set_preprocessing(DigitImagePreprocessing(), ["a", "b", "c"])


@pytest.mark.slow
def test_recipe_runs_through_the_cli_and_leaves_a_portable_pretrained_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["jointembed"])  # LightningCLI warns when pytest's own arguments are there
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fit",
            "--config",
            str(REPO / "recipes" / "digits.yaml"),
            "--trainer.max_epochs=3",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert code == 0
    (path,) = tmp_path.glob("runs/digits/version_*/test_metrics.json")
    metrics = json.loads(path.read_text())
    assert metrics["test/acc"] > 0.5
    assert sum(map(sum, metrics["test/confusion_matrix"])) == 359
    (printed,) = re.findall(r"pretrained model written to (\S+)", capsys.readouterr().out)
    copy = shutil.copytree(printed, tmp_path / "elsewhere" / "digits")
    shutil.rmtree(tmp_path / "runs")
    model = DigitClassifier.from_pretrained(copy)
    dm = DigitsDataModule()  # the recipe's split
    dm.setup("test")
    digits = load_digits()
    images, labels = digits.images[dm.splits["test"]], digits.target[dm.splits["test"]]
    assert np.mean(model.predict(images) == labels) == pytest.approx(metrics["test/acc"], abs=1e-6)
