"""WarmupEMAWeightAveraging: the averaged weights follow the raw ones early (values computed by hand), and without
warm-up it is Lightning's EMAWeightAveraging."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch.utils.data import DataLoader

from jointembed.callbacks import WarmupEMAWeightAveraging


class Walk(LightningModule):
    """One weight, w ← w − 1 per SGD step (the loss is w, the learning rate 1); a step counter buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def training_step(self, batch, batch_idx):
        self.steps += 1
        return self.w * 1.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)

    def train_dataloader(self):
        return DataLoader(torch.zeros(8, 1), batch_size=1)


def averaged_after(steps: int, callback) -> Walk:
    """The module after ``steps`` steps: the callback copies the average into it when training ends."""
    model = Walk()
    trainer = Trainer(max_steps=steps, callbacks=[callback], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(model)
    return model


def test_warm_up_follows_the_raw_weights_early() -> None:
    # raw weights after steps 1, 2, 3: -1, -2, -3. The first update copies -1; the second has decay
    # min(0.98, 2/11) = 2/11: 2/11·(-1) + 9/11·(-2) = -20/11; the third min(0.98, 3/12) = 1/4:
    # 1/4·(-20/11) + 3/4·(-3) = -119/44
    model = averaged_after(3, WarmupEMAWeightAveraging(decay=0.98))
    torch.testing.assert_close(model.w.detach(), torch.tensor(-119 / 44))
    assert int(model.steps) == 3  # an integer buffer is copied, not averaged
    two_steps = averaged_after(2, WarmupEMAWeightAveraging(decay=0.98))
    torch.testing.assert_close(two_steps.w.detach(), torch.tensor(-20 / 11))


def test_without_warm_up_it_is_lightnings_ema() -> None:
    # decay 0.98 throughout: -1, then 0.98·(-1) + 0.02·(-2) = -1.02, then 0.98·(-1.02) + 0.02·(-3) = -1.0596
    ours = averaged_after(3, WarmupEMAWeightAveraging(decay=0.98, warmup=False)).w.detach()
    torch.testing.assert_close(ours, torch.tensor(-1.0596))
    torch.testing.assert_close(ours, averaged_after(3, EMAWeightAveraging(decay=0.98)).w.detach())


def test_the_decay_is_capped_and_checked() -> None:
    callback = WarmupEMAWeightAveraging(decay=0.9)
    assert callback.decay_at(1) == pytest.approx(2 / 11)
    assert callback.decay_at(8) == pytest.approx(0.5)
    assert callback.decay_at(1000) == 0.9
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\], got 1.5"):
        WarmupEMAWeightAveraging(decay=1.5)
