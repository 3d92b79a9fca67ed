"""Row-wise Adagrad: one accumulator per embedding row for sparse gradients, ordinary Adagrad for dense ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from jointembed.optim.sparse_rows import (
    Backend,
    RowWorkspace,
    check_backend,
    check_rows,
    distinct_rows,
    kernels_for,
    sparse_parts,
)

__all__ = ["RowWiseAdagrad"]


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row for embedding tables, as TorchRec and FBGEMM define it.

    For a parameter whose gradient is sparse, each row ``r`` the gradient touches (its rows summed, ``D``
    elements) is updated as::

        g = grad[r] + weight_decay * w[r]
        acc[r] += mean(g ** 2)                  # one number per row
        w[r] -= lr * g / (sqrt(acc[r]) + eps)

    Rows absent from a step are left alone (lazy, as LazyAdam). The state is one number per row, ``N`` for an
    ``(N, D)`` table: ``1 / (2D)`` of Adam's two moments (4 MB instead of 256 MB for a 1,000,000 × 32 table).

    Parameters whose gradient is dense get ordinary element-wise Adagrad (``torch.optim.Adagrad`` without
    learning-rate decay), so a tower trained alongside the tables needs a learning rate for Adagrad, typically
    10x Adam's. Which rule a parameter gets is fixed by its first gradient: sparse makes it row-wise (a later
    dense gradient then updates all its rows row-wise), dense makes it element-wise. Weight decay is an L2
    penalty added to the gradient, as in ``torch.optim.Adagrad`` and FBGEMM's ``L2`` mode.

    Args:
        params: Parameters or parameter groups (each group may set ``lr``, ``eps`` and ``weight_decay``).
        lr: Learning rate.
        eps: Added to the denominator.
        weight_decay: L2 penalty, added to the gradient of the rows updated.
        backend: How sparse gradients are applied, as in :class:`~jointembed.optim.LazyAdam`: ``"numba"``,
            ``"torch"`` or ``"auto"``; both give the same results to rounding.

    Raises:
        ValueError: A negative ``lr``, ``eps`` or ``weight_decay``, or an unknown backend.
        ModuleNotFoundError: ``backend="numba"`` without numba installed.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        backend: Backend = "auto",
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"invalid RowWiseAdagrad settings: {lr=}, {eps=}, {weight_decay=}")
        super().__init__(params, {"lr": lr, "eps": eps, "weight_decay": weight_decay})
        self.backend = check_backend(backend)
        self._workspace = RowWorkspace()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient; returns ``closure()`` if given.

        Raises:
            ValueError: A sparse gradient for a parameter made element-wise by a dense first gradient.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    shape = param.shape[:1] if grad.is_sparse else param.shape
                    state["sum"] = torch.zeros(shape, dtype=param.dtype, device=param.device)
                    state["rowwise"] = grad.is_sparse
                state["step"] += 1
                if grad.is_sparse and not state["rowwise"]:
                    raise ValueError(
                        f"a parameter of shape {tuple(param.shape)} got a sparse gradient after a dense one: "
                        "RowWiseAdagrad fixes each parameter's rule (row-wise or element-wise) at its first step"
                    )
                if grad.is_sparse:
                    self._sparse_step(param, grad, state, group)
                elif state["rowwise"]:
                    _rowwise_rows(param, None, grad.reshape(param.shape[0], -1), state["sum"], group)
                else:
                    _adagrad(param, grad, state["sum"], group)
        return loss

    def _sparse_step(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        indices, values = sparse_parts(param, grad, "RowWiseAdagrad")
        if indices.numel() == 0:
            return
        kernels = kernels_for(self.backend, param, grad)
        if kernels is None:
            _rowwise_rows(param, *distinct_rows(indices, values), state["sum"], group)
            return
        scratch = self._workspace.get(indices.numel(), values.shape[1], values.numpy().dtype)
        distinct = kernels.rowwise_adagrad_rows(
            param.detach().view(param.shape[0], -1).numpy(),
            state["sum"].numpy(),
            indices.numpy(),
            values.contiguous().numpy(),
            *scratch,
            group["lr"],
            group["eps"],
            group["weight_decay"],
        )
        check_rows(distinct, param)


def _adagrad(param: torch.Tensor, grad: torch.Tensor, state_sum: torch.Tensor, group: dict[str, Any]) -> None:
    if group["weight_decay"]:
        grad = grad.add(param, alpha=group["weight_decay"])
    state_sum.addcmul_(grad, grad, value=1)
    param.addcdiv_(grad, state_sum.sqrt().add_(group["eps"]), value=-group["lr"])


def _rowwise_rows(
    param: torch.Tensor,
    rows: torch.Tensor | None,
    row_grad: torch.Tensor,
    state_sum: torch.Tensor,
    group: dict[str, Any],
) -> None:
    """The torch path: ``rows`` ``(U,)`` distinct (``None``: every row), ``row_grad`` ``(U, D)`` their summed
    gradients, ``state_sum`` ``(N,)``."""
    flat = param.view(param.shape[0], -1)
    if group["weight_decay"]:
        weights = flat if rows is None else flat.index_select(0, rows)
        row_grad = row_grad.add(weights, alpha=group["weight_decay"])
    square = row_grad.pow(2).mean(1)
    if rows is None:
        total = state_sum.add_(square)
    else:
        total = state_sum.index_select(0, rows).add_(square)
        state_sum.index_copy_(0, rows, total)
    scale = total.sqrt().add_(group["eps"]).reciprocal_().mul_(-group["lr"])
    update = row_grad.mul(scale.unsqueeze(1))
    if rows is None:
        flat.add_(update)
    else:
        flat.index_add_(0, rows, update)
