"""Lightning callbacks that every ``jointembed`` run gets."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["DivergenceGuard", "RandomStateCheckpoint", "TrainingDivergedError", "WarmupEMAWeightAveraging"]


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


try:  # Lightning >= 2.6
    from lightning.pytorch.callbacks import WeightAveraging as _WeightAveraging
except ImportError:  # pragma: no cover
    _WeightAveraging = Callback  # WarmupEMAWeightAveraging then refuses to be built


class _WarmupEMA:
    """``multi_avg_fn`` of :class:`torch.optim.swa_utils.AveragedModel`: one EMA update with the warmed-up decay."""

    def __init__(self, decay: float, warmup: bool) -> None:
        self.decay, self.warmup = decay, warmup

    def decay_at(self, updates: int) -> float:
        """The decay of the update that follows ``updates`` earlier ones (the first one copies the weights)."""
        return min(self.decay, (1 + updates) / (10 + updates)) if self.warmup else self.decay

    def __call__(self, averaged: list[Any], current: list[Any], num_averaged: Any) -> None:
        import torch

        decay = self.decay_at(int(num_averaged))
        with torch.no_grad():
            for average, value in zip(averaged, current, strict=True):
                if average.is_floating_point():
                    average.lerp_(value, 1.0 - decay)
                else:  # a count (BatchNorm's num_batches_tracked): an average of it means nothing
                    average.copy_(value)


class WarmupEMAWeightAveraging(_WeightAveraging):
    """An exponential moving average of the weights, updated after every optimiser step, whose decay warms up
    with the number of updates, so a short run is not held back by its first, untrained weights.

    Update ``t + 1`` (after ``t`` earlier ones) moves the average ``a ← d·a + (1 − d)·w`` with
    ``d = min(decay, (1 + t) / (10 + t))`` (TensorFlow's ``ExponentialMovingAverage(num_updates)`` warm-up): 0.18
    at the second update, 0.5 at the ninth, 0.9 after 80; the first update copies the weights. Lightning's
    ``EMAWeightAveraging`` keeps ``d = decay`` from the start: with ``decay: 0.98`` the weights of the first step
    still weigh 0.39 after 48 steps (8 epochs of 6 steps), which held a small dataset's validation accuracy at
    chance. As with Lightning's, validation and test see the averaged weights, training goes on with the raw
    ones, and the average (a floating-point parameter or buffer; integer buffers are copied) is saved in the
    checkpoints and restored on resume.

    Args:
        decay: The decay once warmed up (in [0, 1]).
        warmup: Warm the decay up with the number of updates; ``False`` is Lightning's ``EMAWeightAveraging``.
        device: Device of the averaged copy (``None``: the model's).
        use_buffers: Average the buffers too (BatchNorm statistics), else copy them.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, device: str | None = None,
                 use_buffers: bool = True) -> None:  # fmt: skip
        if _WeightAveraging is Callback:  # pragma: no cover
            raise ImportError("WarmupEMAWeightAveraging needs lightning >= 2.6 (its WeightAveraging callback)")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.average_fn = _WarmupEMA(decay, warmup)
        super().__init__(device=device, use_buffers=use_buffers, multi_avg_fn=self.average_fn)

    def decay_at(self, updates: int) -> float:
        """The decay applied by the update that follows ``updates`` earlier ones."""
        return self.average_fn.decay_at(updates)
