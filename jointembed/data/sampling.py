"""A shuffling sampler whose order depends only on the seed and the epoch, so a resumed run sees the same
batches as an uninterrupted one."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochShuffler"]


class EpochShuffler(Sampler[int]):
    """Indices ``0..n-1`` in a random order drawn from ``(seed, epoch)`` alone.

    A DataLoader built with ``shuffle=True`` draws each epoch's order from one generator that advances from the
    start of the run, so a run resumed from a checkpoint replays the first epoch's order instead of the one the
    uninterrupted run would have used. Lightning calls :meth:`set_epoch` on a sampler that has it at the start of
    every epoch, resumed or not.

    Args:
        size: Number of examples n.
        seed: Seed of the shuffles.
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size
