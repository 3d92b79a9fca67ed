"""The CNN encoders run channels-last in inference (max pooling is far faster there on a CPU) with the values of the
default layout, and train in the default layout exactly as before; their parameters keep the default layout, so
checkpoints save and load unchanged."""

from __future__ import annotations

import copy

import pytest
import torch

from jointembed.registry import create_encoder, get_encoder_class


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """The encoder after one training step (running statistics moved off their start) and its copy in the
    default layout."""
    torch.manual_seed(0)
    encoder = create_encoder(name, **get_encoder_class(name).tiny_config())
    batch = encoder.example_inputs(8)
    encoder.train()(batch)
    reference = copy.deepcopy(encoder)
    reference.memory_format = torch.contiguous_format
    return encoder, reference, batch


def _pool_inputs(encoder: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    for module in encoder.modules():
        if isinstance(module, torch.nn.MaxPool2d):
            module.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    return seen


@pytest.mark.parametrize("name", ["audio_cnn", "cnn_image"])
def test_inference_runs_channels_last_with_the_default_layouts_values(name: str) -> None:
    encoder, reference, batch = _pair(name)
    pooled = _pool_inputs(encoder.eval())
    with torch.no_grad():
        torch.testing.assert_close(encoder(batch), reference.eval()(batch), atol=1e-6, rtol=0)
    assert pooled and all(x.is_contiguous(memory_format=torch.channels_last) for x in pooled)


@pytest.mark.parametrize("name", ["audio_cnn", "cnn_image"])
def test_training_keeps_the_default_layout_and_its_gradients(name: str) -> None:
    encoder, reference, batch = _pair(name)
    pooled = _pool_inputs(encoder)
    for model in (encoder, reference):
        model.train().zero_grad()
        torch.manual_seed(1)  # the same SpecAugment masks
        out = model(batch)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    assert all(x.is_contiguous() for x in pooled)
    for (key, mine), theirs in zip(encoder.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(mine.grad, theirs.grad), key
        assert mine.is_contiguous(), key
