"""Tiny contract-following encoders and synthetic multimodal data for the joint model and contrastive task tests.

- ``test_vector`` encoder: a float tensor ``(n, in_features)`` → Linear + tanh backbone → projection head.
- ``test_words`` encoder: ``list[str]`` → mean of hashed word embeddings (crc32 buckets) → projection head.
- :class:`ClusterData`: examples of ``num_clusters`` classes seen two (or three) ways: two noisy linear views of
  the class centre (``"a"``, ``"b"``) and a short text naming the class (``"text"``), each missing at random.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from jointembed.encoders.base import Encoder, ProjectionHead
from jointembed.registry import register_encoder

NAMES = ["red", "green", "blue", "amber", "violet"]


@register_encoder("test_vector")
class VectorEncoder(Encoder):
    """Float vectors ``(n, in_features)`` → ``(n, output_dim)`` unit vectors.

    Args:
        in_features: Input width.
        hidden: Backbone width.
        output_dim: The shared dimension D.
    """

    modality = "vector"

    def __init__(self, in_features: int = 4, hidden: int = 8, output_dim: int = 6) -> None:
        super().__init__()
        self._set_config(locals())
        self.backbone = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh())
        self.feature_dim = hidden
        self.head = ProjectionHead(hidden, output_dim)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {"in_features": 4, "hidden": 8, "output_dim": 8}

    def encode_backbone(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone(inputs.to(self.device))

    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
        return torch.randn(batch_size, self.backbone[0].in_features, generator=torch.Generator().manual_seed(seed))


@register_encoder("test_words")
class WordEncoder(Encoder):
    """``list[str]`` → mean of hashed word embeddings → ``(n, output_dim)`` unit vectors.

    Args:
        num_buckets: Hash buckets of the words.
        embedding_dim: Width of each word's embedding.
        output_dim: The shared dimension D.
    """

    modality = "text"

    def __init__(self, num_buckets: int = 64, embedding_dim: int = 8, output_dim: int = 6) -> None:
        super().__init__()
        self._set_config(locals())
        self.num_buckets = num_buckets
        self.embedding = nn.EmbeddingBag(num_buckets, embedding_dim, mode="mean")
        self.feature_dim = embedding_dim
        self.head = ProjectionHead(embedding_dim, output_dim)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {"num_buckets": 64, "embedding_dim": 8, "output_dim": 8}

    def encode_backbone(self, inputs: Sequence[str]) -> torch.Tensor:
        words = [[zlib.crc32(w.encode()) % self.num_buckets for w in text.split()] or [0] for text in inputs]
        offsets = torch.tensor([0] + [len(w) for w in words], dtype=torch.long).cumsum(0)[:-1]
        flat = torch.tensor([i for w in words for i in w], dtype=torch.long)
        return self.embedding(flat.to(self.device), offsets.to(self.device))

    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> list[str]:
        return [f"the colour {NAMES[(seed + i) % len(NAMES)]}" for i in range(batch_size)]


def make_batch(
    present: dict[str, Sequence[bool]],
    features: dict[str, torch.Tensor],
    labels: Sequence[int] | None = None,
    groups: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A contract batch: ``features[m]`` holds one row per example (B rows); only present rows are kept."""
    batch: dict[str, Any] = {"present": {m: torch.tensor(list(p), dtype=torch.bool) for m, p in present.items()}}
    for m, mask in batch["present"].items():
        value = features[m]
        batch[m] = (
            [v for v, keep in zip(value, mask.tolist(), strict=True) if keep]
            if isinstance(value, list)
            else value[mask]
        )
    size = len(next(iter(present.values())))
    batch["label"] = torch.tensor(list(labels) if labels is not None else [-1] * size)
    batch["group"] = torch.tensor(list(groups) if groups is not None else [-1] * size)
    batch["row"] = torch.arange(1, size + 1)
    return batch


def collate_examples(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch examples ``{"a": (F,) or None, "b": ..., "text": str or None, "label": int}``."""
    modalities = [m for m in ("a", "b", "text") if m in examples[0]]
    present = {m: [ex[m] is not None for ex in examples] for m in modalities}
    batch: dict[str, Any] = {"present": {m: torch.tensor(p, dtype=torch.bool) for m, p in present.items()}}
    for m in modalities:
        items = [ex[m] for ex in examples if ex[m] is not None]
        batch[m] = items if m == "text" else (torch.stack(items) if items else torch.zeros(0, 0))
    batch["label"] = torch.tensor([ex["label"] for ex in examples])
    batch["group"] = torch.full((len(examples),), -1)
    batch["row"] = torch.arange(1, len(examples) + 1)
    return batch


class ClusterData(L.LightningDataModule):
    """Synthetic classes seen as two noisy linear views (``a``: 4 features, ``b``: 5) and optionally a text.

    Args:
        num_clusters: Number of classes (at most 5).
        per_split: Examples per split (train, val, test).
        noise: Standard deviation of the view noise.
        missing: Probability that a view is missing (at least one view is always kept).
        with_text: Add a ``text`` modality naming the class.
        batch_size: Examples per batch.
        seed: Seed of the class centres, views and noise.
    """

    def __init__(
        self,
        num_clusters: int = 5,
        per_split: int = 200,
        noise: float = 0.3,
        missing: float = 0.2,
        with_text: bool = False,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        centres = torch.randn(num_clusters, 3, generator=g) * 2
        views = {"a": torch.randn(3, 4, generator=g), "b": torch.randn(3, 5, generator=g)}
        self.label_names = NAMES[:num_clusters]
        self.batch_size = batch_size
        self.splits = {}
        for split in ("train", "val", "test"):
            labels = torch.randint(0, num_clusters, (per_split,), generator=g)
            keep = torch.rand(per_split, 3, generator=g) >= missing
            keep[:, 0] |= ~(keep[:, 1] | keep[:, 2])
            examples = []
            for i, c in enumerate(labels.tolist()):
                ex: dict[str, Any] = {"label": c}
                for j, m in enumerate(views):
                    x = centres[c] @ views[m] + noise * torch.randn(views[m].shape[1], generator=g)
                    ex[m] = x if keep[i, j] else None
                if with_text:
                    ex["text"] = f"the colour {NAMES[c]}" if keep[i, 2] else None
                examples.append(ex)
            self.splits[split] = examples

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size,
            shuffle=split == "train",
            collate_fn=collate_examples,
            generator=torch.Generator().manual_seed(0) if split == "train" else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def cluster_model(with_text: bool = False, output_dim: int = 6) -> Any:
    """A joint model for :class:`ClusterData`: vector encoders for ``a`` and ``b`` (and words for ``text``)."""
    from jointembed.models.joint import JointEmbeddingModel

    encoders: dict[str, Encoder] = {
        "a": VectorEncoder(4, 16, output_dim),
        "b": VectorEncoder(5, 16, output_dim),
    }
    if with_text:
        encoders["text"] = WordEncoder(64, 8, output_dim)
    return JointEmbeddingModel(encoders)
