"""An embedding bag whose sparse gradient holds one row per distinct ID, computed by a numba kernel on CPU.

``nn.EmbeddingBag(sparse=True)`` gives a gradient with one row per lookup: for 256 bags of 320 IDs, 81,920 rows
(10 MB at 32 dimensions), written by the backward pass and read again by the optimiser, which sums the rows of
each repeated ID. With Zipf-distributed IDs only ~12,000 of them are distinct. :func:`embedding_bag_rows` writes
those sums directly from the ``(B, D)`` gradient of the bags, so the sparse gradient is ~7x smaller and the
optimiser has no duplicates left to merge. The values are the same as autograd's for
``embedding_bag(ids, weight, offsets, "sum", per_sample_weights=weights) / denominators``, summed per ID in the
order the lookups appear; the rows are sorted by ID, so the gradient is a coalesced sparse tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from jointembed.kernels import HashTable, load_numba_rows, numba_available

__all__ = ["bag_rows_apply", "embedding_bag_rows"]


def bag_rows_apply(weight: torch.Tensor, weights: torch.Tensor | None) -> bool:
    """Whether :func:`embedding_bag_rows` can compute this table's gradient: numba installed, a CPU float32 or
    float64 table that needs a gradient (under autograd), and bag weights that need none."""
    return (
        numba_available()
        and torch.is_grad_enabled()
        and weight.requires_grad
        and weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.float64)
        and (weights is None or not weights.requires_grad)
    )


class _EmbeddingBagRows(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        weight: torch.Tensor,
        ids: torch.Tensor,
        offsets: torch.Tensor,
        weights: torch.Tensor | None,
        denominators: torch.Tensor,
        padding_idx: int | None,
        table: HashTable,
    ) -> torch.Tensor:
        ctx.save_for_backward(ids, offsets, weights, denominators)
        ctx.table, ctx.padding_idx, ctx.weight_shape = table, padding_idx, weight.shape
        out = F.embedding_bag(ids, weight, offsets, mode="sum", per_sample_weights=weights, padding_idx=padding_idx)
        return out / denominators.unsqueeze(1)

    @staticmethod
    def backward(ctx: Any, bag_grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        ids, offsets, weights, denominators = ctx.saved_tensors
        kernels, nnz = load_numba_rows(), ids.numel()
        keys, slots = ctx.table.at_least(nnz)
        rows, slot_of = np.empty(nnz, np.int64), np.empty(nnz, np.int64)
        padding = -1 if ctx.padding_idx is None else ctx.padding_idx
        n = kernels.bag_gradient_slots(ids.numpy(), padding, rows, slot_of, keys, slots)
        distinct = rows[:n]
        kernels.sort_slots(distinct, np.argsort(distinct), slot_of)
        bag_grad = bag_grad.contiguous()
        grad = bag_grad.new_zeros((n, bag_grad.shape[1]))
        no_weights = np.empty(0, grad.numpy().dtype)
        kernels.bag_gradient_sum(
            offsets.numpy(),
            no_weights if weights is None else weights.to(grad.dtype).numpy(),
            denominators.to(grad.dtype).numpy(),
            bag_grad.numpy(),
            slot_of,
            grad.numpy(),
        )
        # Distinct, sorted rows: a coalesced tensor (autograd drops the flag when it stores the gradient, so the
        # optimisers check the order themselves).
        indices = torch.from_numpy(distinct).unsqueeze(0)
        sparse = torch.sparse_coo_tensor(indices, grad, ctx.weight_shape, check_invariants=False, is_coalesced=True)
        return sparse, None, None, None, None, None, None


def embedding_bag_rows(
    weight: torch.Tensor,
    ids: torch.Tensor,
    offsets: torch.Tensor,
    weights: torch.Tensor | None,
    denominators: torch.Tensor,
    padding_idx: int | None,
    table: HashTable,
) -> torch.Tensor:
    """``embedding_bag(ids, weight, offsets, "sum", per_sample_weights=weights) / denominators``, with a sparse
    gradient for ``weight`` of one row per distinct ID (call only where :func:`bag_rows_apply`).

    Args:
        weight: ``(N, D)`` the table.
        ids: ``(nnz,)`` int64 IDs of all bags, each in ``[0, N)``.
        offsets: ``(B,)`` int64 start of each bag in ``ids``.
        weights: ``(nnz,)`` per-lookup weights, or ``None`` for all ones.
        denominators: ``(B,)`` non-zero divisor of each bag's sum.
        padding_idx: An ID that contributes nothing and gets no gradient, or ``None``.
        table: Scratch hash table for the backward pass, kept by the caller between steps.

    Returns:
        ``(B, D)`` the bags.
    """
    return _EmbeddingBagRows.apply(weight, ids, offsets, weights, denominators, padding_idx, table)
