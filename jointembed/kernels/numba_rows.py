"""Numba kernels for sparse rows: merge a step's repeated IDs, then update moments and weights row by row.

The kernels take NumPy views of torch tensors (no copies) and work in place:

- :func:`bag_gradient_slots` + :func:`bag_gradient_sum`: the gradient of an embedding bag, one row per distinct
  ID, straight from the ``(B, D)`` gradient of the bags (instead of one row per lookup, then merging);
- :func:`lazy_adam_rows`, :func:`rowwise_adagrad_rows`: one pass over the gradient's rows sums those of each
  distinct ID into a scratch buffer, then one pass over the distinct rows reads the row's state and weights
  once, updates them and writes them back;
  a gradient whose indices are already strictly increasing (coalesced, as the embedding bag's above after
  :func:`sort_slots`) skips the first pass and the scratch buffer.

Distinct IDs get their slot from a hash table of at least twice the step's lookups (no sort of the lookups and no
table-sized index; only the distinct IDs of a bag gradient are sorted, by NumPy); the caller keeps the table
between steps, and each kernel leaves it empty. Rows are summed in the order they appear, as the torch fallback
does, and the arithmetic follows it operation by operation in the table's dtype, so both paths agree to
rounding. The per-row loops vectorise (AVX/AVX-512) because ``error_model="numpy"`` lets a division by zero
give inf as in torch (Python's model puts a branch in every division).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "bag_gradient_slots",
    "bag_gradient_sum",
    "sort_slots",
    "lazy_adam_rows",
    "rowwise_adagrad_rows",
]

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
_EMPTY = np.int64(-1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads consecutive IDs over the table
_SHIFT = np.uint64(20)


@numba.njit(**_JIT)
def _slot(keys, slots, row, n):
    """The slot of ``row`` in the hash table, inserting it as slot ``n`` if absent; returns ``(slot, inserted)``."""
    mask = np.uint64(keys.shape[0] - 1)
    h = ((np.uint64(row) * _GOLDEN) >> _SHIFT) & mask
    while True:
        key = keys[h]
        if key == row:
            return slots[h], False
        if key == _EMPTY:
            keys[h] = row
            slots[h] = n
            return n, True
        h = (h + np.uint64(1)) & mask


@numba.njit(**_JIT)
def _clear(keys, rows, n):
    """Empty the hash table after use, visiting only the probe runs of ``rows[:n]`` (which cover every entry)."""
    mask = np.uint64(keys.shape[0] - 1)
    for u in range(n):
        h = ((np.uint64(rows[u]) * _GOLDEN) >> _SHIFT) & mask
        while keys[h] != _EMPTY:
            keys[h] = _EMPTY
            h = (h + np.uint64(1)) & mask


@numba.njit(**_JIT)
def _increasing(indices):
    """Whether ``indices`` are strictly increasing, i.e. distinct and sorted: nothing to merge."""
    for i in range(1, indices.shape[0]):
        if indices[i] <= indices[i - 1]:
            return False
    return True


@numba.njit(**_JIT)
def _in_range(indices, num_rows):
    """Whether strictly increasing ``indices`` all lie in ``[0, num_rows)`` (only the ends need checking)."""
    return indices.shape[0] == 0 or (indices[0] >= 0 and indices[-1] < num_rows)


@numba.njit(**_JIT)
def _out_of_range(indices, num_rows):
    for i in range(indices.shape[0]):
        if indices[i] < 0 or indices[i] >= num_rows:
            return True
    return False


@numba.njit(**_JIT)
def _merge_rows(indices, values, rows, grad, keys, slots, num_rows):
    """Sum the ``(nnz, D)`` ``values`` of equal ``indices`` into ``grad[:n]``, the distinct IDs into ``rows[:n]``
    in order of first appearance; returns ``n``, or -1 (nothing done) for an index outside ``[0, num_rows)``."""
    if _out_of_range(indices, num_rows):
        return -1
    dim = values.shape[1]
    n = 0
    for i in range(indices.shape[0]):
        slot, inserted = _slot(keys, slots, indices[i], n)
        if inserted:
            rows[n] = indices[i]
            n += 1
            for d in range(dim):
                grad[slot, d] = values[i, d]
        else:
            for d in range(dim):
                grad[slot, d] += values[i, d]
    _clear(keys, rows, n)
    return n


@numba.njit(**_JIT)
def _distinct_rows(indices, values, rows, grad, keys, slots, num_rows):
    """``(n, rows, grad)``: a gradient's ``n`` distinct rows and their summed values. Strictly increasing
    ``indices`` (a coalesced gradient) are returned as they are, with ``values``; others are merged into the
    scratch ``rows`` and ``grad``. ``n`` is -1 (nothing done) for an index outside ``[0, num_rows)``."""
    if _increasing(indices):
        return (indices.shape[0] if _in_range(indices, num_rows) else -1), indices, values
    return _merge_rows(indices, values, rows, grad, keys, slots, num_rows), rows, grad


@numba.njit(**_JIT)
def bag_gradient_slots(ids, padding_idx, rows, slot_of, keys, slots):
    """First pass of an embedding bag's gradient: give each lookup the slot of its ID.

    Args:
        ids: ``(nnz,)`` int64 IDs of all bags.
        padding_idx: An ID that gets no gradient (slot -1), or -1 for none.
        rows: ``(nnz,)`` int64, filled with the distinct IDs (``rows[:n]``) in order of first appearance.
        slot_of: ``(nnz,)`` int64, filled with each lookup's slot (its ID's place in ``rows``).
        keys, slots: the empty hash table (a power of two >= 2 nnz entries), left empty.

    Returns:
        ``n``, the number of distinct IDs.
    """
    n = 0
    for i in range(ids.shape[0]):
        if ids[i] == padding_idx:
            slot_of[i] = -1
            continue
        slot, inserted = _slot(keys, slots, ids[i], n)
        if inserted:
            rows[n] = ids[i]
            n += 1
        slot_of[i] = slot
    _clear(keys, rows, n)
    return n


@numba.njit(**_JIT)
def sort_slots(rows, order, slot_of):
    """Put the distinct IDs in increasing order and renumber the lookups' slots to match, so the bag gradient's
    rows come out sorted: a coalesced gradient that the optimisers update without merging, in the table's
    memory order.

    Args:
        rows: ``(n,)`` the distinct IDs from :func:`bag_gradient_slots`, sorted in place.
        order: ``(n,)`` ``np.argsort(rows)`` (NumPy's sort, ~6x faster than numba's).
        slot_of: ``(nnz,)`` each lookup's slot, renumbered in place.
    """
    n = rows.shape[0]
    rank = np.empty(n, np.int64)
    ordered = np.empty(n, np.int64)
    for u in range(n):
        rank[order[u]] = u
        ordered[u] = rows[order[u]]
    rows[:] = ordered
    for i in range(slot_of.shape[0]):
        if slot_of[i] >= 0:
            slot_of[i] = rank[slot_of[i]]


@numba.njit(**_JIT)
def bag_gradient_sum(offsets, weights, denominators, bag_grad, slot_of, grad):
    """Second pass: ``grad[slot] += (bag_grad[b] / denominators[b]) * weights[i]`` for each lookup ``i`` of bag
    ``b`` (as autograd computes it for ``embedding_bag(..., per_sample_weights=weights) / denominators``).

    Args:
        offsets: ``(B,)`` start of each bag among the lookups.
        weights: ``(nnz,)`` per-lookup weights, or an empty array for all ones.
        denominators: ``(B,)`` what each bag's sum was divided by.
        bag_grad: ``(B, D)`` gradient of the bags.
        slot_of: ``(nnz,)`` from :func:`bag_gradient_slots`.
        grad: ``(n, D)`` zeros, filled with each distinct ID's gradient.
    """
    nnz = slot_of.shape[0]
    num_bags, dim = bag_grad.shape
    scaled = np.empty(dim, grad.dtype)
    for b in range(num_bags):
        end = offsets[b + 1] if b + 1 < num_bags else nnz
        for d in range(dim):
            scaled[d] = bag_grad[b, d] / denominators[b]
        for i in range(offsets[b], end):
            slot = slot_of[i]
            if slot < 0:
                continue
            if weights.shape[0] == 0:
                for d in range(dim):
                    grad[slot, d] += scaled[d]
            else:
                w = weights[i]
                for d in range(dim):
                    grad[slot, d] += scaled[d] * w


@numba.njit(**_JIT)
def lazy_adam_rows(
    weight, exp_avg, exp_avg_sq, indices, values, rows, grad, keys, slots, lr, beta1, beta2, eps, wd, step
):
    """LazyAdam on the rows of one sparse gradient; returns the number of distinct rows (-1: an index out of
    range, nothing updated).

    Args (NumPy arrays share memory with the torch tensors):
        weight, exp_avg, exp_avg_sq: ``(N, D)`` the table and its moments, updated in place.
        indices: ``(nnz,)`` int64 row of each gradient row, duplicates allowed (strictly increasing ones need
            no merging: ``values`` is then used as it is, and only read).
        values: ``(nnz, D)`` the gradient rows.
        rows, grad, keys, slots: scratch space from :class:`~jointembed.optim.sparse_rows.RowWorkspace`.
        lr, beta1, beta2, eps, wd: the group's settings (``wd``: decoupled weight decay).
        step: this parameter's step count, for the bias corrections.
    """
    n, rows, grad = _distinct_rows(indices, values, rows, grad, keys, slots, weight.shape[0])
    if n > 0:
        _lazy_adam_update(weight, exp_avg, exp_avg_sq, rows, grad, n, lr, beta1, beta2, eps, wd, step)
    return n


@numba.njit(**_JIT)
def _lazy_adam_update(weight, exp_avg, exp_avg_sq, rows, grad, n, lr, beta1, beta2, eps, wd, step):
    """Adam on ``rows[:n]`` (distinct) from their gradients ``grad[:n]``: moments and weights in one pass."""
    dim = weight.shape[1]
    t = grad.dtype.type
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


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _sum_of_squares(row):
    """Sum of squares of a row, reassociated so that it vectorises (a serial sum is one add per 4 cycles; the
    torch path sums in its own order too, so both agree to rounding, not bit for bit)."""
    total = row.dtype.type(0)
    for d in range(row.shape[0]):
        total += row[d] * row[d]
    return total


@numba.njit(**_JIT)
def rowwise_adagrad_rows(weight, state_sum, indices, values, rows, grad, keys, slots, lr, eps, wd):
    """Row-wise Adagrad on the rows of one sparse gradient; returns the number of distinct rows (-1: as in
    :func:`lazy_adam_rows`).

    Args (NumPy arrays share memory with the torch tensors):
        weight: ``(N, D)`` the table, updated in place.
        state_sum: ``(N,)`` each row's sum of mean squared gradients, updated in place.
        indices, values, rows, grad, keys, slots: as in :func:`lazy_adam_rows`.
        lr, eps, wd: the group's settings (``wd``: L2 penalty added to the gradient).
    """
    n, rows, grad = _distinct_rows(indices, values, rows, grad, keys, slots, weight.shape[0])
    if n > 0:
        _rowwise_adagrad_update(weight, state_sum, rows, grad, n, lr, eps, wd)
    return n


@numba.njit(**_JIT)
def _rowwise_adagrad_update(weight, state_sum, rows, grad, n, lr, eps, wd):
    """Row-wise Adagrad on ``rows[:n]`` (distinct) from their gradients ``grad[:n]`` (left unchanged)."""
    dim = weight.shape[1]
    t = grad.dtype.type
    rate, e, decay, width, one = t(lr), t(eps), t(wd), t(dim), t(1)
    row_grad = np.empty(dim, grad.dtype)
    for u in range(n):
        r = rows[u]
        if wd != 0:
            for d in range(dim):
                row_grad[d] = grad[u, d] + decay * weight[r, d]
        else:
            for d in range(dim):
                row_grad[d] = grad[u, d]
        total = state_sum[r] + _sum_of_squares(row_grad) / width
        state_sum[r] = total
        scale = (one / (np.sqrt(total) + e)) * -rate  # as the torch path: reciprocal, then times -lr
        for d in range(dim):
            weight[r, d] = weight[r, d] + row_grad[d] * scale
