"""A small but real LightningModule/DataModule pair for CLI tests of the foundation.

Each example is a bag of IDs whose target is the sum of hidden per-ID values, so a SparseEmbedding with the
sum combiner can learn it exactly; the test checks the CLI's plumbing, not a task of the package.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from jointembed.nn import SparseEmbedding
from jointembed.sparse import collate_sparse


class BagSumData(L.LightningDataModule):
    """Random bags of IDs with targets = sum of fixed hidden per-ID values.

    Args:
        num_ids: Size of the ID table.
        num_examples: Examples per split.
        batch_size: Examples per batch.
    """

    def __init__(self, num_ids: int = 20, num_examples: int = 64, batch_size: int = 16) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        values = torch.randn(num_ids, generator=gen)
        self.splits = {}
        for name in ("train", "val", "test"):
            bags = [torch.randint(0, num_ids, (int(n),), generator=gen) for n in torch.randint(1, 5, (num_examples,))]
            self.splits[name] = [(bag.tolist(), float(values[bag].sum())) for bag in bags]
        self.batch_size = batch_size

    def _loader(self, name: str) -> DataLoader:
        def collate(items):
            return collate_sparse([ids for ids, _ in items]), torch.tensor([t for _, t in items])

        return DataLoader(self.splits[name], batch_size=self.batch_size, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class BagSumRegressor(L.LightningModule):
    """Learns one scalar per ID so that a bag's prediction is the sum over its IDs.

    Args:
        num_ids: Size of the ID table.
        lr: Adam learning rate.
    """

    def __init__(self, num_ids: int = 20, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embedding = SparseEmbedding(num_ids, 1, combiner="sum")

    def _loss(self, batch):
        bags, target = batch
        return torch.nn.functional.mse_loss(self.embedding(bags).squeeze(1), target)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/mse", self._loss(batch), batch_size=len(batch[1]))

    def test_step(self, batch, batch_idx):
        self.log("test/mse", self._loss(batch), batch_size=len(batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
