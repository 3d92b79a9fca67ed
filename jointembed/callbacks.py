"""Lightning callbacks that every ``jointembed`` run gets."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["DivergenceGuard", "TrainingDivergedError"]


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch, the step and the loss."""


class DivergenceGuard(Callback):
    """Stop training with :class:`TrainingDivergedError` the first time the training loss is not finite.

    A diverged run otherwise goes on to test NaN weights and report numbers (once: a perfect retrieval score),
    and exits 0. Lightning's ``EarlyStopping(check_finite=True)`` stops quietly instead; raising makes the
    process exit non-zero with the step in the message.
    """

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"training diverged at epoch {trainer.current_epoch}, step {trainer.global_step} (batch "
                f"{batch_idx}): the loss is {value}. Lower the learning rate (the model's lr) or check the data; "
                "the run stops here, untested, and writes no pretrained folder"
            )
