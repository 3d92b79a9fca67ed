"""The from-scratch CNN encoders in channels-last against the default (contiguous) layout, at the recipe's sizes.

Encoders (random weights, batches of ``--batch-size`` 64): ``audio_cnn`` as ``recipes/digits_multimodal.yaml``
builds it (8 kHz, 32 mels, 16 ms hop, channels 16-32-64-128, SpecAugment) on 1-second clips of 0.5-1 s of sound;
``cnn_image`` as the recipe builds it (channels 16-32-64) on 16-pixel images, and the default ``cnn_image``
(32-64-128) on 64-pixel ones. The encoders run channels-last while their norms use running statistics
(``memory_format``, set to each layout in turn here) and the default layout in training.

Per encoder, one JSON line, best of ``--rounds`` with the candidates interleaved in each round, one thread:

- ``forward_*_ms``: the forward pass (eval, no gradients) in each layout, ``forward_speedup`` (``> 1``:
  channels-last faster) and ``max_abs_output_diff`` between the two;
- ``max_pool_share_*``: the share of CPU time in max pooling in that forward pass under ``torch.profiler``;
- ``train_ms``: forward + backward in training mode (a fixed random weighting of the outputs as the loss), the
  path training takes whatever ``memory_format`` says (``max_abs_grad_diff`` between the two settings: 0);
- ``train_all_channels_last_ms`` and ``..._grad_rel_diff``: the same step in channels-last
  (``train_memory_format``), the option left out, and ``batch_norm_error_*``: the largest error of a
  training-mode BatchNorm2d against float64 on the first block's activations in each layout, which is why.

    python benchmarks/cnn_memory_format.py [--batch-size 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from jointembed.encoders.base import Encoder
from jointembed.registry import create_encoder

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _encoders(batch_size: int) -> dict[str, tuple[Encoder, Any]]:
    """Name → (encoder, batch) at the recipe's sizes."""
    torch.manual_seed(0)
    audio = create_encoder(
        "audio_cnn", sample_rate=8000, n_mels=32, hop_ms=16.0, channels=[16, 32, 64, 128], freq_mask_param=6,
        time_mask_param=10, output_dim=64,
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(4000, 8001, (batch_size,), generator=g)
    lengths[0] = 8000
    wave = 0.1 * torch.randn(batch_size, 8000, generator=g) * (torch.arange(8000) < lengths[:, None])
    return {
        "audio_cnn": (audio, {"waveform": wave, "lengths": lengths}),
        "cnn_image_16px": (
            create_encoder("cnn_image", channels=[16, 32, 64], output_dim=64),
            torch.rand(batch_size, 3, 16, 16, generator=g),
        ),
        "cnn_image_64px": (create_encoder("cnn_image", output_dim=64), torch.rand(batch_size, 3, 64, 64, generator=g)),
    }


def _forward(encoder: Encoder, batch: Any) -> torch.Tensor:
    encoder.eval()
    with torch.no_grad():
        return encoder(batch)


def _forward_backward(encoder: Encoder, batch: Any) -> torch.Tensor:
    """Gradients of every parameter, flattened, after one training step's forward and backward (seeded; the loss
    weighs the unit-norm outputs by fixed random numbers, since a plain sum of squares would be constant)."""
    encoder.train()
    encoder.zero_grad()
    torch.manual_seed(1)
    out = encoder(batch)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * weights).sum().backward()
    return torch.cat([p.grad.flatten() for p in encoder.parameters() if p.grad is not None])


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _pool_share(fn: Callable[[], Any]) -> float:
    """Share of self CPU time in max-pooling ops over 3 calls of ``fn``."""
    from torch.profiler import profile

    with profile() as prof:
        for _ in range(3):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if "max_pool" in e.key) / total


def _batch_norm_errors(encoder: Encoder, batch: Any) -> dict[str, float]:
    """Largest error of a training-mode BatchNorm2d against float64 on the first block's convolution output."""
    conv = next(m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    hook = conv.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    _forward(encoder, batch)
    hook.remove()
    x = seen[0]
    with torch.no_grad():
        reference = torch.nn.BatchNorm2d(x.shape[1]).double().train()(x.double())
        return {
            f"batch_norm_error_{name}": float(
                (torch.nn.BatchNorm2d(x.shape[1]).train()(x.contiguous(memory_format=layout)).double() - reference)
                .abs()
                .max()
            )
            for name, layout in LAYOUTS.items()
        }


def measure(encoder: Encoder, batch: Any, rounds: int) -> dict[str, Any]:
    """The figures of one encoder (see the module docstring)."""
    state = {key: value.clone() for key, value in encoder.state_dict().items()}
    outputs, grads = {}, {}
    for name, layout in LAYOUTS.items():  # from the same weights and norm statistics (a training step moves them)
        encoder.memory_format = layout
        encoder.load_state_dict(state)
        outputs[name], grads[name] = _forward(encoder, batch), _forward_backward(encoder, batch)
    encoder.load_state_dict(state)
    encoder.train_memory_format = torch.channels_last  # the option left out
    all_cl_grads = _forward_backward(encoder, batch)
    times: dict[str, list[float]] = {key: [] for key in ("train", "train_all_channels_last")}
    times.update({f"forward_{name}": [] for name in LAYOUTS})
    for _ in range(rounds):
        for name, layout in LAYOUTS.items():
            encoder.memory_format = layout
            times[f"forward_{name}"].append(_timed(lambda: _forward(encoder, batch)))
        for key, layout in (("train", torch.contiguous_format), ("train_all_channels_last", torch.channels_last)):
            encoder.train_memory_format = layout
            times[key].append(_timed(lambda: _forward_backward(encoder, batch)))
    del encoder.train_memory_format  # back to the class's
    best = {key: min(values) for key, values in times.items()}
    figures: dict[str, Any] = {f"{key}_ms": round(value * 1e3, 2) for key, value in best.items()}
    figures["forward_speedup"] = round(best["forward_contiguous"] / best["forward_channels_last"], 2)
    figures["max_abs_output_diff"] = float((outputs["contiguous"] - outputs["channels_last"]).abs().max())
    for name, layout in LAYOUTS.items():
        encoder.memory_format = layout
        figures[f"max_pool_share_{name}"] = round(_pool_share(lambda: _forward(encoder, batch)), 3)
    encoder.memory_format = torch.channels_last
    figures["max_abs_grad_diff"] = float((grads["contiguous"] - grads["channels_last"]).abs().max())
    figures["train_all_channels_last_speedup"] = round(best["train"] / best["train_all_channels_last"], 2)
    scale = grads["contiguous"].abs().max()
    figures["train_all_channels_last_grad_rel_diff"] = float((all_cl_grads - grads["contiguous"]).abs().max() / scale)
    return {**figures, **_batch_norm_errors(encoder, batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, (encoder, batch) in _encoders(args.batch_size).items():
        load_start = os.getloadavg()[0]
        figures = measure(encoder, batch, args.rounds)
        line = {"encoder": name, "batch_size": args.batch_size, "threads": args.threads, **figures}
        line.update(load_average_start=round(load_start, 2), load_average_end=round(os.getloadavg()[0], 2))
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
