"""Classification with an embedding network: softmax cross-entropy, accuracy and a confusion matrix.

The trained network leaves as a :class:`~jointembed.models.digit_classifier.DigitClassifier` folder
(:meth:`ClassificationTask.export_pretrained`, which ``jointembed fit`` calls): the network, its class names and
the image-to-bag preprocessing, so the folder classifies raw images.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from jointembed.callbacks import refuse_unsized_copy
from jointembed.config import check_non_negative, check_positive
from jointembed.data.digit_images import DigitImagePreprocessing
from jointembed.models.digit_classifier import DigitClassifier
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.sparse import SparseBatch

__all__ = ["ClassificationTask", "DigitImageData", "format_confusion_matrix"]


@runtime_checkable
class DigitImageData(Protocol):
    """A data module of digit images read as bags of lit pixel IDs
    (:class:`~jointembed.data.digits.DigitsDataModule`). The task sizes the network from its preprocessing (the
    number of pixel IDs) and class names (one output each), or checks the sizes it was given, and saves both in
    the pretrained folder."""

    def image_preprocessing(self) -> DigitImagePreprocessing:
        """How a raw image becomes the data's bag of pixel IDs."""
        ...

    def class_names(self) -> list[str]:
        """The name of each class index."""
        ...


class ClassificationTask(LightningModule):
    """Trains an :class:`~jointembed.models.embedding_net.EmbeddingNet` whose outputs are logits over classes.

    Batches are dicts ``{"sparse": SparseBatch, "dense": (B, F) (optional), "target": (B,) int64}``. The loss is
    the cross-entropy of the softmax over the ``num_classes`` logits.

    Logged: ``train/loss``, ``val/loss``, ``val/acc``, ``test/loss``, ``test/acc``. The test epoch also builds a
    confusion matrix (rows: true class, columns: predicted class), printed at the end of testing and returned by
    :meth:`extra_test_metrics` as ``test/confusion_matrix`` (the CLI writes it into ``test_metrics.json``).

    :meth:`bind_data` takes the preprocessing and class names of a :class:`DigitImageData` data module (or give
    them to :meth:`set_preprocessing`); :meth:`export_pretrained` saves them with the network. The network's sizes
    and the number of classes may be left to the data (``num_embeddings``, ``out_features``, ``num_classes``
    null): they are then taken from it there, before the run; sizes given are checked against it.

    Args:
        model: The network; its ``out_features`` must equal ``num_classes`` (or be ``None``: one per class).
        num_classes: Number of classes, or ``None`` for the network's ``out_features`` if given, else the data's.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        label_smoothing: Label smoothing of the cross-entropy, in [0, 1).
    """

    def __init__(
        self,
        model: EmbeddingNet,
        num_classes: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("lr", lr)
        check_non_negative("weight_decay", weight_decay)
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if None not in (num_classes, model.out_features) and model.out_features != num_classes:
            raise ValueError(f"the model has out_features={model.out_features} but num_classes={num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        # The model is not a hyperparameter: its weights are in the checkpoint, its configuration in config.yaml.
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.num_classes: int | None = None
        self.lr = lr
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.test_confusion_matrix: list[list[int]] | None = None
        self.preprocessing: DigitImagePreprocessing | None = None
        self.class_names: list[str] | None = None
        self._bound: weakref.ref | None = None  # the data module bound last, held weakly
        if num_classes is not None or model.out_features is not None:
            self._set_num_classes(num_classes or model.out_features)

    def _set_num_classes(self, num_classes: int) -> None:
        """Fix the number of classes and build the metrics that depend on it (once)."""
        if self.num_classes is not None:
            if num_classes != self.num_classes:
                raise ValueError(f"the model has out_features={num_classes} but num_classes={self.num_classes}")
            return
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.accuracy = nn.ModuleDict(
            {stage: MulticlassAccuracy(num_classes, average="micro") for stage in ("val", "test")}
        )
        self.confusion = MulticlassConfusionMatrix(num_classes)

    def set_preprocessing(self, preprocessing: DigitImagePreprocessing, class_names: Sequence[str]) -> None:
        """Use ``preprocessing`` and ``class_names``: size the network from them (or check the sizes it was
        given), keep them for :meth:`export_pretrained`."""
        if self.num_classes is not None and len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for num_classes={self.num_classes}: {list(class_names)}")
        self.model.set_sizes(preprocessing.num_ids, 0, len(class_names))
        self._set_num_classes(len(class_names))
        self.preprocessing = preprocessing
        self.class_names = [str(name) for name in class_names]

    def bind_data(self, datamodule: Any) -> None:
        """Take the preprocessing and class names of a :class:`DigitImageData` data module (see
        :meth:`set_preprocessing`). ``jointembed`` calls this before every run, so the network has its final shape
        before any callback copies it (e.g. weight averaging); :meth:`setup` calls it otherwise. Binding the same
        data module again does nothing.

        Raises:
            ValueError: A size given to the network (or ``num_classes``) that differs from the data's (both named),
                or a network whose sizes are left to the data and a data module that does not tell them.
        """
        if self._bound is not None and self._bound() is datamodule:
            return
        if isinstance(datamodule, DigitImageData):
            self.set_preprocessing(datamodule.image_preprocessing(), datamodule.class_names())
        elif not self.model.sized:
            raise ValueError(
                f"the network leaves its sizes to the data (null), but the data module {type(datamodule).__name__} "
                "does not tell them (image_preprocessing() and class_names(), see DigitImageData): give the "
                "EmbeddingNet its sizes"
            )
        self._bound = weakref.ref(datamodule)

    def setup(self, stage: str) -> None:
        """Bind the trainer's data module, unless that was done before the run (see :meth:`bind_data`)."""
        trainer = self._trainer
        datamodule = trainer.datamodule if trainer is not None else None
        if datamodule is None:
            self.model.require_sizes()
        else:
            refuse_unsized_copy(trainer, self.model.sized)
            self.bind_data(datamodule)
        self._set_num_classes(self.model.out_features)  # a network sized by hand, outside the task

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_bound"] = None  # a copy or pickle (weight averaging, spawned processes) binds its own data module
        return state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Size a network that leaves its sizes to the data from the checkpoint's weights, so that
        ``ClassificationTask.load_from_checkpoint(path, model=EmbeddingNet(...))`` needs no data."""
        if not self.model.sized:
            self.model.set_sizes_from_state_dict(checkpoint["state_dict"], prefix="model.")
            self._set_num_classes(self.model.out_features)

    def to_classifier(self) -> DigitClassifier:
        """The network (shared, not copied) with its preprocessing and class names, for raw images.

        Raises:
            RuntimeError: No preprocessing yet: the task was not set up with a :class:`DigitImageData` data module
                and :meth:`set_preprocessing` was not called.
        """
        if self.preprocessing is None or self.class_names is None:
            raise RuntimeError(
                "this ClassificationTask has no image preprocessing to save with its network: fit or test it with "
                "a data module that provides one (DigitsDataModule), or call set_preprocessing(...)"
            )
        return DigitClassifier(self.model, self.class_names, self.preprocessing)

    def export_pretrained(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the trained network, class names and preprocessing as a pretrained folder
        (:meth:`DigitClassifier.from_pretrained <jointembed.models.digit_classifier.DigitClassifier.from_pretrained>`
        loads it).

        Args:
            folder: Destination (written atomically).
            metrics: Test metrics (the confusion matrix among them) for the model card.

        Returns:
            The folder.
        """
        return self.to_classifier().save_pretrained(folder, metrics)

    def forward(self, sparse: SparseBatch, dense: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, num_classes)`` logits."""
        return self.model(sparse, dense)

    def predict_proba(self, sparse: SparseBatch, dense: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, num_classes)`` class probabilities (softmax of the logits)."""
        return self(sparse, dense).softmax(dim=-1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)[0]
        self.log("train/loss", loss, batch_size=len(batch["target"]), prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self._evaluate(batch, "test")
        self.confusion.update(logits.argmax(dim=-1), batch["target"])

    def on_test_epoch_start(self) -> None:
        self.confusion.reset()
        self.test_confusion_matrix = None

    def on_test_epoch_end(self) -> None:
        self.test_confusion_matrix = self.confusion.compute().tolist()
        self.confusion.reset()
        _print_confusion_matrix(self.test_confusion_matrix)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.predict_proba(batch["sparse"], batch.get("dense"))

    def extra_test_metrics(self) -> dict[str, Any]:
        """``{"test/confusion_matrix": [[count]]}`` from the last test epoch (rows true, columns predicted)."""
        if self.test_confusion_matrix is None:
            return {}
        return {"test/confusion_matrix": self.test_confusion_matrix}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["sparse"], batch.get("dense"))
        loss = nn.functional.cross_entropy(logits, batch["target"], label_smoothing=self.label_smoothing)
        return loss, logits

    def _evaluate(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        size = len(batch["target"])
        loss, logits = self._loss(batch)
        accuracy = self.accuracy[stage]
        accuracy.update(logits, batch["target"])
        self.log(f"{stage}/loss", loss, batch_size=size)
        self.log(f"{stage}/acc", accuracy, batch_size=size, prog_bar=True)
        return logits


def format_confusion_matrix(matrix: list[list[int]]) -> str:
    """A confusion matrix as aligned text: one row per true class, one column per predicted class."""
    width = max(len(str(v)) for row in matrix for v in row)
    width = max(width, len(str(len(matrix) - 1)))
    header = "true\\pred " + " ".join(f"{j:>{width}}" for j in range(len(matrix)))
    rows = [f"{i:>9} " + " ".join(f"{v:>{width}}" for v in row) for i, row in enumerate(matrix)]
    return "\n".join([header, *rows])


@rank_zero_only
def _print_confusion_matrix(matrix: list[list[int]]) -> None:
    print(f"test confusion matrix (rows: true class, columns: predicted class):\n{format_confusion_matrix(matrix)}")
