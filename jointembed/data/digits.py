"""Handwritten digits as sparse vectors: scikit-learn's bundled 8×8 digits (1,797 images, no download).

Each image is read as a bag of the IDs of its lit pixels (``row * 8 + column`` for pixels with intensity > 0,
IDs 0..63) weighted by ``intensity / 16`` (intensities run 0..16), so an embedding layer with the ``sum``
combiner computes a learnt linear projection of the image. The images are split, stratified by class and
seeded, into 70 % training, 10 % validation and 20 % test (1,258 / 180 / 359 images by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from jointembed.data.splits import SplitDataModule
from jointembed.sparse import SparseBatch

__all__ = ["DigitsDataModule", "image_to_bag", "collate_digits", "split_indices", "NUM_PIXELS", "MAX_INTENSITY"]

NUM_PIXELS = 64
MAX_INTENSITY = 16.0


def image_to_bag(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lit pixels of one image.

    Args:
        image: ``(8, 8)`` or ``(64,)`` intensities in 0..16.

    Returns:
        ``ids`` ``(n,)`` int64 row-major pixel IDs with intensity > 0, in increasing order, and ``weights``
        ``(n,)`` float32 ``intensity / 16``.
    """
    flat = np.asarray(image, dtype=np.float64).reshape(-1)
    if flat.shape != (NUM_PIXELS,):
        raise ValueError(f"a digit image has {NUM_PIXELS} pixels, got shape {np.shape(image)}")
    ids = np.flatnonzero(flat > 0)
    return ids.astype(np.int64), (flat[ids] / MAX_INTENSITY).astype(np.float32)


def split_indices(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded, stratified split of ``range(len(labels))`` into ``train``, ``val`` and ``test`` index arrays.

    The test and validation sizes are ``round(fraction * N)``; every split keeps the class proportions.
    """
    n = len(labels)
    num_test, num_val = round(test_fraction * n), round(val_fraction * n)
    if num_test < 1 or num_val < 1 or num_test + num_val >= n:
        raise ValueError(f"fractions val={val_fraction}, test={test_fraction} of {n} images leave an empty split")
    all_idx = np.arange(n)
    rest, test = train_test_split(all_idx, test_size=num_test, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=num_val, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


class _DigitBags(Dataset):
    """Each item: ``{"ids": (n,) int64, "weights": (n,) float32, "target": int}`` for one image."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.bags = [image_to_bag(image) for image in images]
        self.labels = labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ids, weights = self.bags[index]
        return {"ids": ids, "weights": weights, "target": int(self.labels[index])}


def collate_digits(examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor | SparseBatch]:
    """Batch images: ``{"sparse": SparseBatch of lit-pixel IDs weighted by intensity, "target": (B,) int64}``."""
    lengths = torch.tensor([len(ex["ids"]) for ex in examples])
    values = torch.from_numpy(np.concatenate([ex["ids"] for ex in examples]))
    weights = torch.from_numpy(np.concatenate([ex["weights"] for ex in examples]))
    sparse = SparseBatch.from_tensors(values, lengths=lengths, weights=weights, num_values=NUM_PIXELS)
    return {"sparse": sparse, "target": torch.tensor([ex["target"] for ex in examples], dtype=torch.long)}


class DigitsDataModule(SplitDataModule):
    """scikit-learn's 8×8 digits as bags of lit pixel IDs, split 70/10/20 (stratified, seeded).

    Batches: ``{"sparse": SparseBatch, "target": (B,) int64}`` (classes 0..9). IDs run over the 64 pixels.

    Args:
        val_fraction: Fraction of the images held out for validation.
        test_fraction: Fraction of the images held out for testing.
        batch_size: Images per batch.
        seed: Seed of the split and of the training shuffle.
        num_workers: DataLoader worker processes.
    """

    num_sparse_ids = NUM_PIXELS
    num_dense_features = 0
    num_classes = 10

    def __init__(
        self,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(collate_digits, batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.splits: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        """Load the bundled images and split them (once)."""
        if self.datasets:
            return
        digits = load_digits()
        labels = np.asarray(digits.target)
        self.splits = split_indices(labels, self.val_fraction, self.test_fraction, self.seed)
        self.datasets = {name: _DigitBags(digits.images[idx], labels[idx]) for name, idx in self.splits.items()}
