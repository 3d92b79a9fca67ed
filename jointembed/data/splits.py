"""A LightningDataModule base for data already held as one Dataset per split."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from jointembed.config import check_at_least

__all__ = ["SplitDataModule"]


class SplitDataModule(LightningDataModule):
    """Serves ``self.datasets["train" | "val" | "test"]`` (filled by a subclass's ``setup``) through DataLoaders.

    Training batches are shuffled with a generator seeded by ``seed``, so a run is reproducible.

    Args:
        collate_fn: Turns a list of examples into a batch.
        batch_size: Examples per batch.
        num_workers: DataLoader workers.
        seed: Seed of the shuffling.
    """

    def __init__(self, collate_fn: Callable, batch_size: int, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        check_at_least("batch_size", batch_size, 1)
        check_at_least("num_workers", num_workers, 0)
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            raise RuntimeError("call setup() before asking for a dataloader")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches."""
        return self._loader("test", shuffle=False)
