"""SigLIP loss against a hand computation, multi-positive labels, and gradients to the scale and bias."""

from __future__ import annotations

import math

import torch

from jointembed.losses.siglip import SigLIPLoss
from jointembed.registry import create_loss, list_losses

A = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
B = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]


def _hand_loss(scale: float, bias: float, positives: list[list[bool]]) -> float:
    total = 0.0
    for i, a in enumerate(A):
        for j, b in enumerate(B):
            z = scale * sum(x * y for x, y in zip(a, b, strict=True)) + bias
            sign = 1.0 if positives[i][j] else -1.0
            total += math.log(1 + math.exp(-sign * z))  # -log sigmoid(sign * z)
    return total / len(A)


def test_three_by_three_by_hand() -> None:
    loss = SigLIPLoss()  # scale 10, bias -10
    eye = [[i == j for j in range(3)] for i in range(3)]
    torch.testing.assert_close(loss(torch.tensor(A), torch.tensor(B)), torch.tensor(_hand_loss(10.0, -10.0, eye)))
    other = SigLIPLoss(init_scale=3.0, init_bias=-1.0)
    torch.testing.assert_close(other(torch.tensor(A), torch.tensor(B)), torch.tensor(_hand_loss(3.0, -1.0, eye)))


def test_multi_positive_labels_by_hand() -> None:
    labels = [0, 1, 1]
    positives = [[labels[i] == labels[j] for j in range(3)] for i in range(3)]
    loss = SigLIPLoss(init_scale=3.0, init_bias=-1.0)
    value = loss(torch.tensor(A), torch.tensor(B), torch.tensor(positives))
    torch.testing.assert_close(value, torch.tensor(_hand_loss(3.0, -1.0, positives)))


def test_gradient_reaches_scale_and_bias() -> None:
    loss = SigLIPLoss()
    a = torch.nn.functional.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    loss(a.requires_grad_(), a.detach().flip(0)).backward()
    assert float(loss.log_scale.grad) != 0.0
    assert float(loss.bias.grad) != 0.0
    assert bool(torch.isfinite(a.grad).all())
    frozen = SigLIPLoss(learnable=False)
    assert not frozen.log_scale.requires_grad and not frozen.bias.requires_grad


def test_registered() -> None:
    assert "siglip" in list_losses()
    assert isinstance(create_loss("siglip"), SigLIPLoss)
