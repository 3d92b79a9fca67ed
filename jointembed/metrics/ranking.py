"""Ranking metrics for recommendation: top-k lists against each user's held-out target items.

Conventions (all metrics use binary relevance; a target item counts once however often it appears):

- ``hit_rate@k``: 1 if any of the first k recommendations is a target, else 0.
- ``recall@k``: ``|hits| / min(k, |targets|)``, so a perfect list scores 1 even when a user has more than k
  targets (the "truncated" recall of Liang et al., 2018).
- ``ndcg@k``: ``DCG / IDCG`` with ``DCG = Σ_{rank r ≤ k, hit} 1 / log2(r + 1)`` (r is 1-based) and ``IDCG`` the DCG
  of ``min(k, |targets|)`` hits at the top.
- ``coverage@k``: the share of the catalogue appearing in at least one of the (given) top-k lists.

Per-user metrics are averaged over the users with at least one target; users without targets are skipped.
Top-k rows hold distinct item IDs; ``-1`` pads rows that have fewer than k candidates and never hits.

:func:`topk_excluding_seen` and :func:`topk_from_scorer` turn scores into top-k lists, masking the items a user
has already seen, and the latter works in chunks of users so a 500,000 x 1,000,000 score matrix never exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from jointembed.data.interactions import Histories
from jointembed.sparse import SparseBatch

__all__ = [
    "hit_matrix",
    "recall_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "catalog_coverage",
    "evaluate_rankings",
    "topk_excluding_seen",
    "topk_from_scorer",
]

# per-user item lists: CSR Histories, a SparseBatch of bags, or one sequence / array per user
TargetsLike = Histories | SparseBatch | Sequence[Sequence[int] | np.ndarray]
TopK = np.ndarray | torch.Tensor


def _topk_array(topk: TopK, k: int | None) -> np.ndarray:
    array = topk.detach().cpu().numpy() if isinstance(topk, torch.Tensor) else np.asarray(topk)
    if array.ndim != 2 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"topk must be a 2-D integer array (users, k), got shape {array.shape}, dtype {array.dtype}")
    if k is not None:
        if k < 1 or k > array.shape[1]:
            raise ValueError(f"k must be in [1, {array.shape[1]}] (the width of topk), got {k}")
        array = array[:, :k]
    return array.astype(np.int64, copy=False)


def _as_histories(targets: TargetsLike, num_items: int | None = None) -> Histories:
    if isinstance(targets, Histories):
        return targets
    if isinstance(targets, SparseBatch):
        values = targets.values.detach().cpu().numpy().astype(np.int64)
        indptr = np.append(targets.offsets.detach().cpu().numpy().astype(np.int64), values.size)
        top = int(values.max()) + 1 if values.size else 0
        return Histories(indptr, values, max(top, num_items or 0))
    rows = [np.asarray(t, dtype=np.int64).reshape(-1) for t in targets]
    top = max((int(r.max()) for r in rows if r.size), default=-1)
    return Histories.from_lists(rows, max(top + 1, num_items or 0))


def hit_matrix(topk: TopK, targets: TargetsLike) -> tuple[np.ndarray, np.ndarray]:
    """Which recommendations are targets.

    Args:
        topk: ``(U, k)`` recommended item IDs per user, best first (numpy or torch); ``-1`` pads.
        targets: U rows of target items (a :class:`Histories`, a :class:`SparseBatch` or a list of arrays),
            aligned with ``topk``.

    Returns:
        ``(hits, num_targets)``: ``(U, k)`` bool and ``(U,)`` int64 number of distinct targets per user.
    """
    top = _topk_array(topk, None)
    rows = _as_histories(targets)
    if len(rows) != top.shape[0]:
        raise ValueError(f"topk has {top.shape[0]} rows but targets has {len(rows)}; pass one target row per user")
    ordered = np.sort(top, axis=1)
    if np.any((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)):
        raise ValueError("a topk row repeats an item; each row must hold distinct item IDs")
    width = max(rows.num_items, int(top.max(initial=-1)) + 1, 1)
    target_keys = np.unique(rows.row_ids() * width + rows.items)
    num_targets = np.bincount(target_keys // width, minlength=len(rows)).astype(np.int64)
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * width + top
    hits = np.isin(keys, target_keys) & (top >= 0)
    return hits, num_targets


def _recall(hits: np.ndarray, num_targets: np.ndarray) -> np.ndarray:
    return hits.sum(1) / np.maximum(np.minimum(hits.shape[1], num_targets), 1)


def _hit_rate(hits: np.ndarray, num_targets: np.ndarray) -> np.ndarray:
    return hits.any(1).astype(np.float64)


def _ndcg(hits: np.ndarray, num_targets: np.ndarray) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    ideal = np.concatenate([[1.0], np.cumsum(discounts)])[np.minimum(hits.shape[1], num_targets)]  # [0]: no 0/0
    return hits @ discounts / ideal


def _metric(
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    topk: TopK,
    targets: TargetsLike,
    k: int | None,
    per_user: bool,
) -> float | np.ndarray:
    """``fn`` per user on the first k columns; the mean over users with targets, or per user with NaN."""
    hits, num_targets = hit_matrix(_topk_array(topk, k), targets)
    values = fn(hits, num_targets)
    has = num_targets > 0
    if per_user:
        return np.where(has, values, np.nan)
    return float(values[has].mean()) if has.any() else float("nan")


def recall_at_k(topk: TopK, targets: TargetsLike, k: int | None = None, per_user: bool = False) -> float | np.ndarray:
    """Recall@k = ``|hits in the first k| / min(k, |targets|)``, averaged over users with targets.

    Args:
        topk: ``(U, K)`` recommendations, best first; only the first ``k`` columns count.
        targets: U rows of target items.
        k: Cut-off (default: all K columns).
        per_user: Return the ``(U,)`` per-user values (NaN for users without targets) instead of the mean.
    """
    return _metric(_recall, topk, targets, k, per_user)


def hit_rate_at_k(topk: TopK, targets: TargetsLike, k: int | None = None, per_user: bool = False) -> float | np.ndarray:
    """HitRate@k: share of users with at least one target among their first k recommendations (args as recall)."""
    return _metric(_hit_rate, topk, targets, k, per_user)


def ndcg_at_k(topk: TopK, targets: TargetsLike, k: int | None = None, per_user: bool = False) -> float | np.ndarray:
    """NDCG@k, binary relevance: ``Σ_hits 1/log2(rank+1)`` over the DCG of ``min(k, |targets|)`` top hits."""
    return _metric(_ndcg, topk, targets, k, per_user)


def catalog_coverage(topk: TopK, num_items: int, k: int | None = None) -> float:
    """Share of the ``num_items`` catalogue that appears in at least one row's first k recommendations."""
    top = _topk_array(topk, k)
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    shown = np.unique(top[top >= 0])
    if shown.size and shown[-1] >= num_items:
        raise ValueError(f"topk holds item {int(shown[-1])} but num_items is {num_items}")
    return shown.size / num_items


def evaluate_rankings(
    topk: TopK,
    targets: TargetsLike,
    num_items: int,
    ks: Sequence[int] | None = None,
    users: np.ndarray | Sequence[int] | None = None,
) -> dict[str, float]:
    """All ranking metrics at each cut-off.

    Args:
        topk: ``(B, K)`` recommendations, best first.
        targets: Target rows aligned with ``topk``, or, with ``users``, a Histories indexed by user ID.
        num_items: Catalogue size, for coverage.
        ks: Cut-offs, each <= K (default ``[K]``).
        users: ``(B,)`` user ID of each ``topk`` row; selects those rows of ``targets``.

    Returns:
        ``{"hit_rate@k", "ndcg@k", "recall@k", "coverage@k"}`` for each k, plus ``"num_users"``: the number of
        rows with at least one target (the users the means are over).
    """
    top = _topk_array(topk, None)
    rows = _as_histories(targets, num_items)
    if users is not None:
        rows = rows.select(np.asarray(users))
    hits, num_targets = hit_matrix(top, rows)
    has = num_targets > 0
    result: dict[str, float] = {}
    for k in ks or [top.shape[1]]:
        _topk_array(top, k)  # validates k
        for name, fn in (("hit_rate", _hit_rate), ("ndcg", _ndcg), ("recall", _recall)):
            values = fn(hits[:, :k], num_targets)
            result[f"{name}@{k}"] = float(values[has].mean()) if has.any() else float("nan")
        result[f"coverage@{k}"] = catalog_coverage(top, num_items, k)
    result["num_users"] = int(has.sum())
    return result


# Largest (users × items) score block any top-k materialises at once: 2**24 floats = 64 MiB, i.e. 16 users at a
# time for a 1,000,000-item catalogue.
SCORE_BUDGET = 2**24


def topk_excluding_seen(
    scores: torch.Tensor,
    seen: TargetsLike | None,
    k: int,
    users: np.ndarray | Sequence[int] | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Top-k items per row after setting each row's already-seen items to ``-inf``.

    Args:
        scores: ``(B, N)`` score of every catalogue item for each of B users (any device).
        seen: Items to exclude: rows aligned with ``scores``, or, with ``users``, a Histories indexed by user
            ID. ``None`` excludes nothing.
        k: Number of recommendations per row.
        users: ``(B,)`` user ID of each score row; selects those rows of ``seen``.
        inplace: Write the mask into ``scores`` instead of a copy (saves memory for large chunks).

    Returns:
        ``(B, k)`` int64 item IDs, best first, on ``scores.device``; ``-1`` where fewer than k items are left
        (also for items whose own score is ``-inf``).
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (users, items), got shape {tuple(scores.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    num_rows, num_items = scores.shape
    if not scores.is_floating_point():
        scores = scores.float()
    elif not inplace and seen is not None:
        scores = scores.clone()
    if seen is not None:
        rows = _as_histories(seen, num_items)
        if users is not None:
            rows = rows.select(np.asarray(users))
        if len(rows) != num_rows:
            raise ValueError(f"scores has {num_rows} rows but seen has {len(rows)}; pass users= to select rows")
        if rows.nnz and int(rows.items.max()) >= num_items:
            raise ValueError(f"seen holds item {int(rows.items.max())} but scores has only {num_items} columns")
        row_index = torch.from_numpy(rows.row_ids()).to(scores.device)
        scores[row_index, torch.from_numpy(rows.items).to(scores.device)] = float("-inf")
    values, index = torch.topk(scores, min(k, num_items), dim=1)
    index = index.masked_fill(values == float("-inf"), -1)
    if k > num_items:
        index = torch.nn.functional.pad(index, (0, k - num_items), value=-1)
    return index


def topk_from_scorer(
    score_fn: Callable[[np.ndarray], torch.Tensor],
    users: np.ndarray | Sequence[int],
    seen: Histories | None,
    k: int,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Top-k recommendations for many users, scoring ``chunk_size`` users at a time.

    Only one ``(chunk_size, N)`` score block exists at once (256 x 1,000,000 float32 = 1 GiB), so the full
    users x catalogue matrix is never built.

    Args:
        score_fn: Maps ``(b,)`` int64 user IDs (numpy) to a ``(b, N)`` float score tensor (any device). The
            seen items are masked in that tensor in place, so return a fresh tensor, not a view of a kept one.
        users: ``(B,)`` user IDs to recommend for.
        seen: Histories indexed by user ID whose items are excluded, or ``None``.
        k: Recommendations per user.
        chunk_size: Users scored at once.

    Returns:
        ``(B, k)`` int64 item IDs on the CPU, best first, ``-1`` padded (see :func:`topk_excluding_seen`).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    parts = []
    for start in range(0, users.size, chunk_size):
        chunk = users[start : start + chunk_size]
        scores = score_fn(chunk)
        if scores.shape[0] != chunk.size:
            raise ValueError(f"score_fn returned {scores.shape[0]} rows for {chunk.size} users")
        parts.append(
            topk_excluding_seen(scores, seen, k, users=chunk if seen is not None else None, inplace=True).cpu()
        )
    if not parts:
        return torch.zeros(0, k, dtype=torch.long)
    return torch.cat(parts)
