"""Handwritten digits as sparse vectors: scikit-learn's bundled 8×8 digits (1,797 images, no download).

Each image is read as a bag of the IDs of its lit pixels (``row * 8 + column`` for pixels with intensity > 0,
IDs 0..63) weighted by ``intensity / 16`` (intensities run 0..16), so an embedding layer with the ``sum``
combiner computes a learnt linear projection of the image. The images are split, stratified by class and
seeded, into 70 % training, 10 % validation and 20 % test (1,258 / 180 / 359 images by default).

:class:`~jointembed.data.digit_images.DigitImagePreprocessing` (in :mod:`jointembed.data.digit_images`, with
:func:`image_to_bag`; both re-exported here) takes any other image (a file, a PIL image, a uint8 array, dark ink
on light paper or the reverse) to the same 8×8, 0–16 form; a pretrained digit classifier saves its settings and
calls it, and the bag it feeds the network is built by the same :func:`image_to_bag` as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from jointembed.data.digit_images import (
    CLASS_NAMES,
    IMAGE_SIZE,
    MAX_INTENSITY,
    NUM_PIXELS,
    DigitImagePreprocessing,
    bags_to_sparse,
    image_to_bag,
)
from jointembed.data.splits import SplitDataModule
from jointembed.sparse import SparseBatch

__all__ = [
    "DigitsDataModule",
    "DigitImagePreprocessing",
    "image_to_bag",
    "bags_to_sparse",
    "collate_digits",
    "split_indices",
    "IMAGE_SIZE",
    "NUM_PIXELS",
    "MAX_INTENSITY",
    "CLASS_NAMES",
]


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
    sparse = bags_to_sparse([(ex["ids"], ex["weights"]) for ex in examples])
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
    num_classes = len(CLASS_NAMES)

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

    def image_preprocessing(self) -> DigitImagePreprocessing:
        """How a raw image becomes this data's bag (the default settings; the bundled images are already 0-16)."""
        return DigitImagePreprocessing()

    def class_names(self) -> list[str]:
        """The name of each class index: ``"0"`` … ``"9"``."""
        return list(CLASS_NAMES)

    def setup(self, stage: str | None = None) -> None:
        """Load the bundled images and split them (once)."""
        if self.datasets:
            return
        digits = load_digits()
        labels = np.asarray(digits.target)
        self.splits = split_indices(labels, self.val_fraction, self.test_fraction, self.seed)
        self.datasets = {name: _DigitBags(digits.images[idx], labels[idx]) for name, idx in self.splits.items()}
