"""Lightning callbacks that every ``jointembed`` run gets."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["DivergenceGuard", "RandomStateCheckpoint", "TrainingDivergedError"]


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


class RandomStateCheckpoint(Callback):
    """Keep the random number generators' states (torch, numpy, Python) in every checkpoint and restore them on
    resume, so augmentation and dropout continue as in an uninterrupted run (Lightning saves model, optimiser and
    loop state, not the generators)."""

    def state_dict(self) -> dict[str, Any]:
        import random

        import numpy as np
        import torch

        kind, keys, position, has_gauss, gauss = np.random.get_state()
        version, python_state, python_gauss = random.getstate()
        # Plain types and tensors only: checkpoints are read back with weights_only=True.
        return {
            "torch": torch.get_rng_state(),
            "numpy": [str(kind), keys.tolist(), int(position), int(has_gauss), float(gauss)],
            "python": [version, list(python_state), python_gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        import random

        import numpy as np
        import torch

        torch.set_rng_state(state_dict["torch"])
        numpy_state = state_dict["numpy"]
        np.random.set_state((numpy_state[0], np.asarray(numpy_state[1], dtype=np.uint32), *numpy_state[2:]))
        python_state = state_dict["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))


def refuse_unsized_copy(trainer: Any, sized: bool) -> None:
    """Raise when a weight-averaging callback has already copied a model whose sizes are still to come from the
    data (its copy, made in the callback's own setup, has no layers): the data must be bound before the run.

    Raises:
        ValueError: Such a callback is present and the model is not sized yet.
    """
    try:  # Lightning >= 2.6
        from lightning.pytorch.callbacks import WeightAveraging
    except ImportError:  # pragma: no cover
        return
    copies = [c for c in trainer.callbacks if isinstance(c, WeightAveraging)]
    if copies and not sized:
        raise ValueError(
            f"{type(copies[0]).__name__} copied the model before its sizes were taken from the data: call "
            "task.bind_data(datamodule) before trainer.fit (jointembed fit does), or give the sizes"
        )
