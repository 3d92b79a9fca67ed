"""InfoNCE (CLIP) loss against hand computations, multi-positive targets and the learnable scale."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from jointembed.losses.info_nce import InfoNCELoss
from jointembed.registry import create_loss, list_losses

A = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
B = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]


def _dot(u: list[float], v: list[float]) -> float:
    return sum(x * y for x, y in zip(u, v, strict=True))


def _hand_loss(scale: float, positives: list[list[bool]]) -> float:
    """Soft-target CLIP loss in plain Python: rows (a->b) and columns (b->a), each averaged, then halved."""
    logits = [[scale * _dot(a, b) for b in B] for a in A]

    def direction(rows: list[list[float]], pos: list[list[bool]]) -> float:
        total = 0.0
        for row, p in zip(rows, pos, strict=True):
            log_z = math.log(sum(math.exp(x) for x in row))
            hits = [x for x, is_pos in zip(row, p, strict=True) if is_pos]
            total += -sum(x - log_z for x in hits) / len(hits)
        return total / len(rows)

    columns = [list(c) for c in zip(*logits, strict=True)]
    return 0.5 * (direction(logits, positives) + direction(columns, [list(c) for c in zip(*positives, strict=True)]))


def test_three_by_three_by_hand() -> None:
    loss = InfoNCELoss(init_scale=2.0)
    value = loss(torch.tensor(A), torch.tensor(B))
    eye = [[i == j for j in range(3)] for i in range(3)]
    torch.testing.assert_close(value, torch.tensor(_hand_loss(2.0, eye)))
    # identity positives = the usual CLIP formulation with integer targets
    logits = 2.0 * torch.tensor(A) @ torch.tensor(B).T
    clip = 0.5 * (F.cross_entropy(logits, torch.arange(3)) + F.cross_entropy(logits.T, torch.arange(3)))
    torch.testing.assert_close(value, clip)


def test_multi_positive_targets_by_hand() -> None:
    labels = [0, 1, 1]
    positives = [[labels[i] == labels[j] for j in range(3)] for i in range(3)]
    loss = InfoNCELoss(init_scale=2.0)
    value = loss(torch.tensor(A), torch.tensor(B), torch.tensor(positives))
    torch.testing.assert_close(value, torch.tensor(_hand_loss(2.0, positives)))
    assert not math.isclose(value.item(), loss(torch.tensor(A), torch.tensor(B)).item())
    # the diagonal is always a positive, even if the mask leaves it out
    no_diag = torch.tensor(positives) & ~torch.eye(3, dtype=torch.bool)
    torch.testing.assert_close(loss(torch.tensor(A), torch.tensor(B), no_diag), value)


def test_gradient_reaches_the_scale_and_the_scale_is_clamped() -> None:
    loss = InfoNCELoss()
    assert float(loss.scale) == pytest.approx(1 / 0.07)
    a = F.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=1).requires_grad_()
    loss(a, a.detach().roll(1, 0)).backward()
    assert loss.log_scale.grad is not None and float(loss.log_scale.grad) != 0.0
    assert a.grad is not None and bool(torch.isfinite(a.grad).all())
    with torch.no_grad():
        loss.log_scale.fill_(math.log(500.0))
    assert float(loss.scale) == pytest.approx(100.0)
    loss.log_scale.grad = None
    loss(a, a.detach()).backward()
    assert float(loss.log_scale.grad) == 0.0


def test_fixed_scale_and_bad_inputs() -> None:
    assert not InfoNCELoss(learnable_scale=False).log_scale.requires_grad
    loss = InfoNCELoss()
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.zeros(3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="positives"):
        loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match="init_scale"):
        InfoNCELoss(init_scale=200.0)


def test_registered() -> None:
    assert "info_nce" in list_losses()
    assert isinstance(create_loss("info_nce", init_scale=5.0), InfoNCELoss)
