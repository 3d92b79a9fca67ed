"""SigLIP: the pairwise sigmoid loss (Zhai et al., 2023) between two sets of paired embeddings.

Every pair ``(a_i, b_j)`` is an independent binary classification with logit ``z_ij = t · a_i·b_j + bias``,
where ``t = exp(log_t)`` is a learnable scale (init ``log 10``, clamped to ``max_scale``) and ``bias`` a learnable
offset (init -10, which keeps the initial loss small although negatives outnumber positives). Labels are +1
for positives (the diagonal and, when ``positives`` is given, pairs sharing a label or group) and -1 otherwise.
As in the paper the loss is ``-Σ_ij log σ(label_ij · z_ij) / n``: summed over all ``n²`` pairs, divided by ``n``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.losses.info_nce import ScaledPairLoss, check_pair_inputs
from jointembed.registry import register_loss

__all__ = ["SigLIPLoss"]


@register_loss("siglip")
class SigLIPLoss(ScaledPairLoss):
    """Sigmoid loss over every pair with a learnable scale and bias.

    Args:
        init_scale: Initial scale ``t`` (the paper's ``exp(log 10)`` = 10).
        init_bias: Initial bias (the paper's -10).
        max_scale: Upper clamp of the scale.
        learnable: Learn the scale and the bias (True) or keep them fixed.
    """

    def __init__(
        self, init_scale: float = 10.0, init_bias: float = -10.0, max_scale: float = 100.0, learnable: bool = True
    ) -> None:
        super().__init__(init_scale, max_scale, learnable)
        self.bias = nn.Parameter(torch.tensor(float(init_bias)), requires_grad=learnable)

    def forward(self, a: torch.Tensor, b: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss for paired embeddings ``a`` ``(n, D)``, ``b`` ``(n, D)`` (L2-normalised) and optional
        ``positives`` ``(n, n)`` bool (``[i, j]``: ``b_j`` matches ``a_i``; None = only the pairs themselves)."""
        positives = check_pair_inputs(a, b, positives)
        logits = self.scale * a @ b.T + self.bias
        signs = positives.to(logits.dtype) * 2 - 1
        return -F.logsigmoid(signs * logits).sum() / a.shape[0]

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):.4g}, bias={float(self.bias):.4g}, max_scale={self.max_scale}"
