"""Symmetric InfoNCE (CLIP) loss between two sets of paired embeddings, with multi-positive targets.

For paired embeddings ``a`` ``(n, D)`` and ``b`` ``(n, D)`` the logits are ``s · a bᵀ`` with a learnable scale
``s = exp(log_scale)`` (the inverse temperature: CLIP's init ``1 / 0.07``, clamped to ``max_scale`` = 100 in the
forward pass, so the gradient to ``log_scale`` is zero while it sits above the clamp).

Multi-positive targets: ``positives[i, j]`` is True when ``b_j`` is a correct match for ``a_i`` (the diagonal
always is; examples sharing a label or group too). Each row's target is the *uniform distribution over its
positives* and the loss is the soft-target cross-entropy ``-Σ_j t_ij log softmax(logits_i)_j`` (we chose soft
targets over masking other positives out of the denominator: it keeps one softmax per row, and equals the plain
CLIP loss when ``positives`` is the identity). The loss is the mean over rows of the a→b direction, the same
over columns for b→a (targets from ``positivesᵀ``), and the average of the two directions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.registry import register_loss

__all__ = ["InfoNCELoss", "ScaledPairLoss", "check_pair_inputs"]


def check_pair_inputs(a: torch.Tensor, b: torch.Tensor, positives: torch.Tensor | None) -> torch.Tensor:
    """Validate paired embeddings ``(n, D)`` and return the ``(n, n)`` bool positives with a True diagonal
    (the identity when ``positives`` is None)."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (n, D) with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.shape[0]
    if n == 0:
        raise ValueError("a contrastive loss needs at least one pair, got n=0")
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    if positives is None:
        return eye
    if positives.shape != (n, n) or positives.dtype != torch.bool:
        raise ValueError(
            f"positives must be a bool tensor of shape ({n}, {n}), got {positives.dtype} {tuple(positives.shape)}"
        )
    return positives.to(a.device) | eye


class ScaledPairLoss(nn.Module):
    """Base of the pairwise contrastive losses: a learnable logit scale ``exp(log_scale)``, clamped to
    ``max_scale`` when read (so its gradient is zero while it sits above the clamp).

    Args:
        init_scale: Initial scale, in ``(0, max_scale]``.
        max_scale: Upper clamp of the scale.
        learnable: Learn the scale (True) or keep it fixed at ``init_scale``.
    """

    def __init__(self, init_scale: float, max_scale: float, learnable: bool) -> None:
        super().__init__()
        if not 0 < init_scale <= max_scale:
            raise ValueError(f"need 0 < init_scale <= max_scale, got init_scale={init_scale}, max_scale={max_scale}")
        self.max_scale = max_scale
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)), requires_grad=learnable)

    @property
    def scale(self) -> torch.Tensor:
        """The current (clamped) scale, a scalar tensor."""
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()


@register_loss("info_nce")
class InfoNCELoss(ScaledPairLoss):
    """Symmetric CLIP loss with a learnable, clamped inverse temperature and multi-positive soft targets.

    Args:
        init_scale: Initial logit scale (inverse temperature); CLIP's ``1 / 0.07``.
        max_scale: Upper clamp of the scale (CLIP's 100).
        learnable_scale: Learn the scale (True) or keep it fixed at ``init_scale``.
    """

    def __init__(self, init_scale: float = 1 / 0.07, max_scale: float = 100.0, learnable_scale: bool = True) -> None:
        super().__init__(init_scale, max_scale, learnable_scale)

    def forward(self, a: torch.Tensor, b: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss for paired embeddings ``a`` ``(n, D)``, ``b`` ``(n, D)`` (L2-normalised) and optional
        ``positives`` ``(n, n)`` bool (``[i, j]``: ``b_j`` matches ``a_i``; None = only the pairs themselves)."""
        positives = check_pair_inputs(a, b, positives)
        logits = self.scale * a @ b.T
        return 0.5 * (_soft_cross_entropy(logits, positives) + _soft_cross_entropy(logits.T, positives.T))

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):.4g}, max_scale={self.max_scale}"


def _soft_cross_entropy(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over rows of the cross-entropy against the uniform distribution over each row's positives."""
    targets = positives.to(logits.dtype)
    targets = targets / targets.sum(dim=1, keepdim=True)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
