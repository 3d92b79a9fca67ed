"""Numba kernel for the exact top k of a few queries: one pass over the rows, scoring and keeping the best k.

Scoring a handful of queries against a million rows with a matrix product writes every score to memory, then
reads them all again for ``topk``; the product itself (a matrix-vector product for one query) reads the table
more slowly than FAISS's flat scan. :func:`scan_top_k` reads each row once, scores it against every query while
it is in registers and keeps each query's best k in a small heap, so the pass runs at the speed the table
streams from memory and nothing the size of the catalogue is written (``benchmarks/recommend_serving.py``).
Scores are summed in the vector unit's order (``fastmath`` reassociation), so they agree with a matrix product
to rounding (~1e-7 relative), not bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["scan_top_k"]


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _dot(a, b):
    total = a.dtype.type(0)
    for d in range(a.shape[0]):
        total += a[d] * b[d]
    return total


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _sift_down(scores, rows, size):
    """Restore the min-heap property of ``scores[:size]`` (and ``rows`` alongside) after the root changed."""
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        child = left
        if left + 1 < size and scores[left + 1] < scores[left]:
            child = left + 1
        if scores[child] >= scores[i]:
            return
        scores[i], scores[child] = scores[child], scores[i]
        rows[i], rows[child] = rows[child], rows[i]
        i = child


@numba.njit(nogil=True, cache=True, error_model="numpy")
def scan_top_k(queries, vectors, bias, allowed, seen_queries, seen_rows, out_scores, out_rows):
    """The best ``k`` rows of each query by ``queries[j] · vectors[r] + bias[r]``, in one pass over the rows.

    Args:
        queries: ``(q, D)`` float32.
        vectors: ``(n, D)`` float32, C-contiguous.
        bias: ``(n,)`` float32 added to every query's score of a row, or an empty array for none.
        allowed: ``(n,)`` bool, rows that may be returned, or an empty array for all.
        seen_queries, seen_rows: ``(m,)`` int64 excluded ``(query, row)`` pairs (rows a query must never get),
            sorted by row.
        out_scores: ``(q, k)`` float32, filled with the best scores, best first; ``-inf`` pads.
        out_rows: ``(q, k)`` int64, filled with their rows; ``-1`` pads.

    A score that is not finite (NaN or ±inf) is never returned; a row that ties the current k-th best does not
    displace it.
    """
    q = queries.shape[0]
    n = vectors.shape[0]
    k = out_scores.shape[1]
    inf = np.float32(np.inf)
    out_scores[:] = -inf
    out_rows[:] = -1
    cursor = 0  # the first excluded pair whose row is not yet passed
    m = seen_rows.shape[0]
    has_bias, has_allowed = bias.shape[0] > 0, allowed.shape[0] > 0
    for r in range(n):
        if has_allowed and not allowed[r]:
            continue
        offset = bias[r] if has_bias else np.float32(0)
        row = vectors[r]
        for j in range(q):
            s = _dot(queries[j], row) + offset
            if not (s > out_scores[j, 0] and s < inf):  # not better than the k-th, or NaN/inf
                continue
            while cursor < m and seen_rows[cursor] < r:
                cursor += 1
            excluded = False
            c = cursor
            while c < m and seen_rows[c] == r:
                excluded = excluded or seen_queries[c] == j
                c += 1
            if excluded:
                continue
            out_scores[j, 0] = s
            out_rows[j, 0] = r
            _sift_down(out_scores[j], out_rows[j], k)
    for j in range(q):  # heaps to best-first order
        order = np.argsort(-out_scores[j], kind="mergesort")
        out_scores[j] = out_scores[j][order]
        out_rows[j] = out_rows[j][order]
