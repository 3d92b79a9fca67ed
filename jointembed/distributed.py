"""Gathering tensors across processes for contrastive losses (DDP), with and without gradients.

A contrastive loss needs every example of the *global* batch as a negative, so each process gathers the
embeddings of all processes and computes the same loss on the whole batch. :func:`gather_with_grad` keeps the
gradient path to the local shard; its backward sums the gradients that every process computed for that shard.

Gradient convention: every process computes the same global loss ``L``, so after the backward sum the gradient
reaching process ``r``'s local embeddings is ``world_size * dL/dx_r``; DDP then *averages* parameter gradients
over the processes, which gives exactly the gradient of ``L`` computed on one process over the global batch.

Processes may hold different numbers of rows (the last batch, or a modality missing in part of a batch): the
sizes are gathered first, each shard is padded to the largest, and the padding is dropped after gathering. The
result is always ordered by rank. When ``torch.distributed`` is not initialised (or has one process) every
function returns its input unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "world_size", "rank", "gather_with_grad", "gather_no_grad", "gather_sizes"]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """The first-dimension size ``n`` of every process, ordered by rank (``[n]`` when not distributed)."""
    if not is_distributed():
        return [n]
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    if x.shape[0] == rows:
        return x.contiguous()
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad], dim=0)


def _all_gather_padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    # Not every backend gathers bool tensors (gloo does not): send them as bytes.
    is_bool = x.dtype == torch.bool
    padded = _pad_rows(x.detach().to(torch.uint8) if is_bool else x.detach(), max(sizes))
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    out = torch.cat([chunk[:size] for chunk, size in zip(chunks, sizes, strict=True)], dim=0)
    return out.bool() if is_bool else out


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums the global gradient over processes and keeps the local rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        r = dist.get_rank()
        ctx.start = sum(sizes[:r])
        ctx.stop = ctx.start + sizes[r]
        return _all_gather_padded(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` ``(n_r, ...)`` of every process into ``(sum_r n_r, ...)``, ordered by rank, keeping the
    gradient to this process's rows (see the module docstring for the gradient convention).

    Every process must call it, in the same order, and must later run backward through the result (as DDP's
    training step does). Returns ``x`` itself when not distributed.
    """
    if not is_distributed():
        return x
    sizes = gather_sizes(x.shape[0], x.device)
    return _GatherWithGrad.apply(x, sizes)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` ``(n_r, ...)`` (embeddings, masks, labels, indices) of every process into
    ``(sum_r n_r, ...)``, ordered by rank, without gradient. Returns ``x`` when not distributed."""
    if not is_distributed():
        return x
    sizes = gather_sizes(x.shape[0], x.device)
    return _all_gather_padded(x, sizes)
