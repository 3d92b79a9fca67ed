"""Overhead of embedding through the API: ``model.embed(field=[raw values])`` against the encoder's raw forward on
the same values already batched. Prints one JSON line per field.

The raw values are pre-decoded (audio as ``(samples, rate)`` at the model's rate, images as uint8 arrays at the
model's size), so the figure is what the API adds on top of the forward pass: per-value preprocessing through
the field's unit, collation, the DataLoader and eval/no-grad bookkeeping. The two are interleaved in one process,
single-threaded, best of ``--rounds``. Target: embed throughput >= 0.95x the raw forward's.

Usage: python benchmarks/embed_overhead.py [--values 512] [--batch-size 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from jointembed.modalities import AudioModality, ImageModality
from jointembed.models.joint import JointEmbeddingModel
from jointembed.registry import create_encoder


def _recipe_model() -> JointEmbeddingModel:
    """The encoders and input settings of recipes/digits_multimodal.yaml (random weights), and the default small
    CNN on 64-pixel images (``image64``) for an image encoder that is not tiny."""
    torch.manual_seed(0)
    audio = create_encoder(
        "audio_cnn", sample_rate=8000, n_mels=32, hop_ms=16.0, channels=[16, 32, 64, 128], output_dim=64
    )
    image = create_encoder("cnn_image", channels=[16, 32, 64], output_dim=64)
    image64 = create_encoder("cnn_image", output_dim=64)
    inputs = {
        "audio": AudioModality(max_seconds=1.0),
        "image": ImageModality(image_size=16),
        "image64": ImageModality(image_size=64),
    }
    return JointEmbeddingModel({"audio": audio, "image": image, "image64": image64}, inputs).eval()


def _best(fn, rounds: int) -> float:
    return min(_timed(fn) for _ in range(rounds))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--values", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = _recipe_model()
    rng = np.random.default_rng(0)
    raw = {
        "audio": [(rng.uniform(-0.5, 0.5, 8000).astype(np.float32), 8000) for _ in range(args.values)],
        "image": [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(args.values)],
        "image64": [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(args.values)],
    }
    for field, values in raw.items():
        unit, encoder = model.inputs[field], model.encoders[field]
        batches = [
            unit.collate([unit.load(v) for v in values[i : i + args.batch_size]])
            for i in range(0, len(values), args.batch_size)
        ]

        def forward(encoder=encoder, batches=batches) -> None:
            with torch.no_grad():
                for batch in batches:
                    encoder(batch)

        def embed(field=field, values=values) -> None:
            model.embed(**{field: values}, batch_size=args.batch_size, progress=False)

        times = {"forward": [], "embed": []}
        for _ in range(args.rounds):  # interleaved, so a change in machine load hits both alike
            times["forward"].append(_timed(forward))
            times["embed"].append(_timed(embed))
        forward_s, embed_s = min(times["forward"]), min(times["embed"])
        figures = {
            "field": field,
            "values": args.values,
            "batch_size": args.batch_size,
            "forward_values_per_s": round(args.values / forward_s, 1),
            "embed_values_per_s": round(args.values / embed_s, 1),
            "embed_vs_forward": round(forward_s / embed_s, 3),
            "load_average_1min": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
