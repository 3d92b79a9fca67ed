"""Regression with an embedding network: mean squared error on standardised targets, metrics in target units.

The trained network leaves as a :class:`~jointembed.models.house_price.HousePricePredictor` folder
(:meth:`RegressionTask.export_pretrained`, which ``jointembed fit`` calls): the network, and the featurizer the
data module fit, so the folder predicts dollars from raw rows.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from jointembed.callbacks import refuse_unsized_copy
from jointembed.config import check_non_negative, check_positive
from jointembed.data.housing_features import HousingFeaturizer
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.models.house_price import HousePricePredictor
from jointembed.sparse import SparseBatch

__all__ = ["RegressionTask", "FeaturizedData"]


@runtime_checkable
class FeaturizedData(Protocol):
    """A data module whose raw rows become model inputs through a fitted featurizer
    (:class:`~jointembed.data.housing.HousingDataModule`). The task sizes the network from it (``num_ids``,
    ``num_dense_features``) or checks the sizes it was given, takes its target statistics, and saves it in the
    pretrained folder."""

    def fitted_featurizer(self) -> HousingFeaturizer:
        """The featurizer fit on the training split (the data module sets itself up first if it has not)."""
        ...


_BASELINE_PREFIX = "baseline_"


def _regression_metrics() -> MetricCollection:
    return MetricCollection({"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()})


class RegressionTask(LightningModule):
    """Trains an :class:`~jointembed.models.embedding_net.EmbeddingNet` with one output to predict a number.

    Batches are dicts ``{"sparse": SparseBatch, "dense": (B, F) (optional), "target": (B,)}`` with targets in
    their own units (dollars for housing). The loss is the mean squared error of the standardised target
    ``(target - mean) / std``, so one learning rate suits any scale; the model's output is in standardised units
    and :meth:`predict` turns it back. ``mean`` and ``std`` are buffers (saved in checkpoints) set in
    :meth:`bind_data` from the featurizer of a :class:`FeaturizedData` data module, else by :meth:`set_target_stats`.
    That featurizer (or one given to :meth:`set_featurizer`) is what :meth:`export_pretrained` saves.

    The network's sizes may be left to the data (``num_embeddings``, ``num_dense_features``, ``out_features``
    null): :meth:`bind_data` builds it from the featurizer before the run; sizes it was given are checked there.

    Logged: ``train/loss``, ``val/loss``, ``val/rmse``, ``val/mae``, ``test/rmse``, ``test/mae`` in target
    units, and for every ``baseline_<name>`` prediction the batches carry (the housing data's linear
    least-squares fit), ``val/baseline_<name>_rmse`` … ``test/baseline_<name>_mae`` over the same rows.

    Args:
        model: The network; it must have ``out_features=1`` (or ``None``: one output).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    def __init__(self, model: EmbeddingNet, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        check_positive("lr", lr)
        check_non_negative("weight_decay", weight_decay)
        if model.out_features not in (None, 1):
            raise ValueError(f"a regression model needs out_features=1, got {model.out_features}")
        # The model is not a hyperparameter: its weights are in the checkpoint, its configuration in config.yaml.
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.metrics = nn.ModuleDict({stage: _regression_metrics() for stage in ("val", "test")})
        self.baseline_metrics = nn.ModuleDict()
        self.featurizer: HousingFeaturizer | None = None
        self._bound: weakref.ref | None = None  # the data module bound last, held weakly

    def set_target_stats(self, mean: float, std: float) -> None:
        """Set the target standardisation (the training split's mean and standard deviation)."""
        if not std > 0:
            raise ValueError(f"the target standard deviation must be positive, got {std}")
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(float(std))

    def set_featurizer(self, featurizer: HousingFeaturizer) -> None:
        """Use ``featurizer`` (fit on the training split): size the network from it (or check the sizes it was
        given), take its target statistics, and keep it for :meth:`export_pretrained`."""
        self.model.set_sizes(featurizer.num_ids, featurizer.num_dense_features, 1)
        self.set_target_stats(featurizer.target_mean, featurizer.target_std)
        self.featurizer = featurizer

    def bind_data(self, datamodule: Any) -> None:
        """Take the featurizer of a :class:`FeaturizedData` data module (see :meth:`set_featurizer`; the data
        module fits it first if needed). ``jointembed`` calls this before every run, so the network has its final
        shape before any callback copies it (e.g. weight averaging); :meth:`setup` calls it otherwise. Binding the
        same data module again does nothing.

        Raises:
            ValueError: A size given to the network that differs from the data's (both named), or a network whose
                sizes are left to the data and a data module that does not tell them.
        """
        if self._bound is not None and self._bound() is datamodule:
            return
        if isinstance(datamodule, FeaturizedData):
            self.set_featurizer(datamodule.fitted_featurizer())
        elif not self.model.sized:
            raise ValueError(
                f"the network leaves its sizes to the data (null), but the data module {type(datamodule).__name__} "
                "has no fitted featurizer to tell them (see FeaturizedData): give the EmbeddingNet its sizes"
            )
        self._bound = weakref.ref(datamodule)

    def setup(self, stage: str) -> None:
        """Bind the trainer's data module, unless that was done before the run (see :meth:`bind_data`)."""
        trainer = self._trainer
        datamodule = trainer.datamodule if trainer is not None else None
        if datamodule is None:
            self.model.require_sizes()
            return
        refuse_unsized_copy(trainer, self.model.sized)
        self.bind_data(datamodule)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_bound"] = None  # a copy or pickle (weight averaging, spawned processes) binds its own data module
        return state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Size a network that leaves its sizes to the data from the checkpoint's weights, so that
        ``RegressionTask.load_from_checkpoint(path, model=EmbeddingNet(...))`` needs no data."""
        if not self.model.sized:
            self.model.set_sizes_from_state_dict(checkpoint["state_dict"], prefix="model.")

    def to_predictor(self) -> HousePricePredictor:
        """The network (shared, not copied) with its featurizer and this task's target statistics, for raw rows.

        Raises:
            RuntimeError: No featurizer yet: the task was not set up with a :class:`FeaturizedData` data module
                and :meth:`set_featurizer` was not called.
        """
        if self.featurizer is None:
            raise RuntimeError(
                "this RegressionTask has no featurizer to save with its network: fit or test it with a data module "
                "that provides one (HousingDataModule), or call set_featurizer(featurizer)"
            )
        stats = {"target_mean": float(self.target_mean), "target_std": float(self.target_std)}
        return HousePricePredictor(self.model, dataclasses.replace(self.featurizer, **stats))

    def export_pretrained(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the trained network and its featurizer as a pretrained folder
        (:meth:`HousePricePredictor.from_pretrained <jointembed.models.house_price.HousePricePredictor.from_pretrained>`
        loads it).

        Args:
            folder: Destination (written atomically).
            metrics: Test metrics for the model card.

        Returns:
            The folder.
        """
        return self.to_predictor().save_pretrained(folder, metrics)

    def forward(self, sparse: SparseBatch, dense: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` standardised predictions."""
        return self.model(sparse, dense).squeeze(-1)

    def predict(self, sparse: SparseBatch, dense: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` predictions in target units (dollars for housing)."""
        return self(sparse, dense) * self.target_std + self.target_mean

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)[0]
        self.log("train/loss", loss, batch_size=len(batch["target"]), prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.predict(batch["sparse"], batch.get("dense"))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The standardised MSE and the ``(B,)`` standardised predictions."""
        target = (batch["target"].float() - self.target_mean) / self.target_std
        pred = self(batch["sparse"], batch.get("dense"))
        return nn.functional.mse_loss(pred, target), pred

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        size = len(batch["target"])
        loss, pred = self._loss(batch)
        target = batch["target"].float()
        metrics = self.metrics[stage]
        metrics.update(pred * self.target_std + self.target_mean, target)
        self.log(f"{stage}/loss", loss, batch_size=size)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=size, prog_bar=True)
        for key, value in batch.items():
            if key.startswith(_BASELINE_PREFIX):
                name = f"{stage}_{key}"
                if name not in self.baseline_metrics:
                    self.baseline_metrics[name] = _regression_metrics().to(self.device)
                baseline = self.baseline_metrics[name]
                baseline.update(value.float(), target)
                for k, metric in baseline.items():
                    # Created after Lightning listed the module's metrics, so name its attribute path here.
                    attribute = f"baseline_metrics.{name}.{k}"
                    self.log(f"{stage}/{key}_{k}", metric, batch_size=size, metric_attribute=attribute)
