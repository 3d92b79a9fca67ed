"""Sparse gradient steps for the optimiser tests, and plain per-row reference implementations of the updates."""

from __future__ import annotations

import math

import torch

NUM_ROWS, DIM = 30, 4
# Repeated rows sum (as in an EmbeddingBag gradient); one step has no rows at all; two are strictly increasing
# (coalesced, as SparseEmbedding's gradient: the kernels skip the merge), one of them reaching both ends.
STEP_ROWS = ([1, 4, 4, 7, 4], [4, 9], [], [1, 1, 2, 29, 0], [7, 4, 1], [0, 3, 4, 29])


def sparse_steps(dtype: torch.dtype = torch.float32, seed: int = 0) -> list[torch.Tensor]:
    """One uncoalesced ``(NUM_ROWS, DIM)`` sparse gradient per entry of :data:`STEP_ROWS`."""
    gen = torch.Generator().manual_seed(seed)
    steps = []
    for rows in STEP_ROWS:
        values = torch.randn(len(rows), DIM, generator=gen, dtype=dtype)
        index = torch.tensor([rows], dtype=torch.int64).reshape(1, len(rows))
        steps.append(torch.sparse_coo_tensor(index, values, (NUM_ROWS, DIM), check_invariants=True))
    return steps


def _summed_rows(grad: torch.Tensor) -> dict[int, list[float]]:
    sums: dict[int, list[float]] = {}
    for row, values in zip(grad._indices()[0].tolist(), grad._values().tolist(), strict=True):
        previous = sums.setdefault(row, [0.0] * len(values))
        sums[row] = [a + b for a, b in zip(previous, values, strict=True)]
    return sums


def reference_lazy_adam(
    weight: torch.Tensor, grads: list[torch.Tensor], lr: float, betas: tuple[float, float], eps: float, wd: float
) -> torch.Tensor:
    """LazyAdam written out row by row and element by element in float64: the touched rows' moments and
    values, decoupled weight decay on those rows only, bias correction by the parameter's step count."""
    w = weight.double().tolist()
    m = [[0.0] * len(r) for r in w]
    v = [[0.0] * len(r) for r in w]
    beta1, beta2 = betas
    for step, grad in enumerate(grads, start=1):
        for row, g in _summed_rows(grad).items():
            for d, gd in enumerate(g):
                m[row][d] = beta1 * m[row][d] + (1 - beta1) * gd
                v[row][d] = beta2 * v[row][d] + (1 - beta2) * gd * gd
                m_hat, v_hat = m[row][d] / (1 - beta1**step), v[row][d] / (1 - beta2**step)
                w[row][d] -= lr * m_hat / (math.sqrt(v_hat) + eps) + lr * wd * w[row][d]
    return torch.tensor(w, dtype=torch.float64)


def reference_rowwise_adagrad(
    weight: torch.Tensor, grads: list[torch.Tensor], lr: float, eps: float, wd: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise Adagrad written out row by row in float64; returns the weights and the ``(N,)`` accumulators."""
    w = weight.double().tolist()
    acc = [0.0] * len(w)
    for grad in grads:
        for row, g in _summed_rows(grad).items():
            g = [gd + wd * x for gd, x in zip(g, w[row], strict=True)]
            acc[row] += sum(gd * gd for gd in g) / len(g)
            w[row] = [x - lr * gd / (math.sqrt(acc[row]) + eps) for x, gd in zip(w[row], g, strict=True)]
    return torch.tensor(w, dtype=torch.float64), torch.tensor(acc, dtype=torch.float64)
