"""Numba kernels for sparse row updates: merge a step's duplicate IDs, then update moments and weights row by row.

Each kernel takes the table, its optimiser state and the raw (uncoalesced) gradient of one step, as NumPy views
of the torch tensors (no copies), and updates everything in place:

1. one pass over the ``nnz`` gradient rows sums the rows of each distinct ID into a scratch buffer, in the order
   they appear (a hash table of twice the step's size finds each ID's slot: no sort and no table-sized index);
2. one pass over the distinct rows reads the row's state and weights once, updates them and writes them back.

The per-row loops vectorise (AVX/AVX-512) because ``error_model="numpy"`` lets a division by zero give inf as
in torch instead of raising (Python's model puts a branch in every division). Arithmetic follows the torch
fallback operation by operation, in the parameter's dtype, so both paths agree to rounding.

Only imported when numba is installed and a sparse gradient arrives (importing numba takes ~0.3 s; the first
call of each kernel compiles it, then it is cached on disk).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["lazy_adam_rows", "rowwise_adagrad_rows"]

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
_EMPTY = np.int64(-1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads consecutive IDs over the table


@numba.njit(**_JIT)
def _merge_rows(indices, values, rows, grad):
    """Sum the ``(nnz, D)`` ``values`` of equal ``indices`` into ``grad[:n]``, the distinct IDs into ``rows[:n]``
    in order of first appearance; returns ``n``."""
    nnz, dim = values.shape
    capacity = 16
    while capacity < 2 * nnz:
        capacity *= 2
    mask = np.uint64(capacity - 1)
    keys = np.full(capacity, _EMPTY, np.int64)
    slots = np.empty(capacity, np.int64)
    n = 0
    for i in range(nnz):
        row = indices[i]
        h = ((np.uint64(row) * _GOLDEN) >> np.uint64(20)) & mask
        while True:
            key = keys[h]
            if key == row:
                slot = slots[h]
                for d in range(dim):
                    grad[slot, d] += values[i, d]
                break
            if key == _EMPTY:
                keys[h] = row
                slots[h] = n
                rows[n] = row
                for d in range(dim):
                    grad[n, d] = values[i, d]
                n += 1
                break
            h = (h + np.uint64(1)) & mask
    return n


@numba.njit(**_JIT)
def lazy_adam_rows(weight, exp_avg, exp_avg_sq, indices, values, rows, grad, lr, beta1, beta2, eps, wd, step):
    """LazyAdam on the rows of one sparse gradient; returns the number of distinct rows.

    Args (NumPy arrays share memory with the torch tensors):
        weight, exp_avg, exp_avg_sq: ``(N, D)`` the table and its moments, updated in place.
        indices: ``(nnz,)`` int64 row of each gradient row, duplicates allowed.
        values: ``(nnz, D)`` the gradient rows.
        rows, grad: ``(nnz,)`` int64 and ``(nnz, D)`` scratch space.
        lr, beta1, beta2, eps, wd: the group's settings (``wd``: decoupled weight decay).
        step: this parameter's step count, for the bias corrections.
    """
    n = _merge_rows(indices, values, rows, grad)
    dim = weight.shape[1]
    t = values.dtype.type
    lerp_weight = t(1 - beta1)
    lerp_small = 1 - beta1 < 0.5  # torch's lerp switches formula at weight 0.5; follow it
    b2, c2 = t(beta2), t(1 - beta2)
    bias2 = t(1 - beta2**step)
    neg_step = t(-lr / (1 - beta1**step))
    e, decay = t(eps), t(lr * wd)
    one = t(1)
    for u in range(n):
        r = rows[u]
        for d in range(dim):
            g = grad[u, d]
            m = exp_avg[r, d]
            if lerp_small:
                m = m + lerp_weight * (g - m)
            else:
                m = g - (g - m) * (one - lerp_weight)
            v = exp_avg_sq[r, d] * b2 + c2 * g * g
            exp_avg[r, d] = m
            exp_avg_sq[r, d] = v
            w = weight[r, d]
            weight[r, d] = w + ((m / (np.sqrt(v / bias2) + e)) * neg_step - decay * w)
    return n


@numba.njit(**_JIT)
def rowwise_adagrad_rows(weight, state_sum, indices, values, rows, grad, lr, eps, wd):
    """Row-wise Adagrad on the rows of one sparse gradient; returns the number of distinct rows.

    Args (NumPy arrays share memory with the torch tensors):
        weight: ``(N, D)`` the table, updated in place.
        state_sum: ``(N,)`` each row's sum of mean squared gradients, updated in place.
        indices, values, rows, grad: as in :func:`lazy_adam_rows`.
        lr, eps, wd: the group's settings (``wd``: L2 penalty added to the gradient).
    """
    n = _merge_rows(indices, values, rows, grad)
    dim = weight.shape[1]
    t = values.dtype.type
    rate, e, decay, width, one = t(lr), t(eps), t(wd), t(dim), t(1)
    for u in range(n):
        r = rows[u]
        if wd != 0:
            for d in range(dim):
                grad[u, d] = grad[u, d] + decay * weight[r, d]
        square = t(0)
        for d in range(dim):
            square += grad[u, d] * grad[u, d]
        total = state_sum[r] + square / width
        state_sum[r] = total
        scale = (one / (np.sqrt(total) + e)) * -rate  # as the torch path: reciprocal, then times -lr
        for d in range(dim):
            weight[r, d] = weight[r, d] + grad[u, d] * scale
    return n
