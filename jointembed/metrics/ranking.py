"""Ranking metrics for recommendation: top-k lists against each user's held-out target items.

Conventions (all metrics use binary relevance; a target item counts once however often it appears):

- ``hr@k`` (hit rate): 1 if any of the first k recommendations is a target, else 0.
- ``recall@k``: ``|hits| / min(k, |targets|)``, so a perfect list scores 1 even when a user has more than k
  targets (the "truncated" recall of Liang et al., 2018).
- ``ndcg@k``: ``DCG / IDCG`` with ``DCG = Σ_{rank r ≤ k, hit} 1 / log2(r + 1)`` (r is 1-based) and ``IDCG`` the DCG
  of ``min(k, |targets|)`` hits at the top.
- ``coverage@k``: the share of the catalogue appearing in at least one of the (given) top-k lists.

Per-user metrics are averaged over the users with at least one target; users without targets are skipped.
Top-k rows hold distinct item IDs; ``-1`` pads rows that have fewer than k candidates and never hits.

:func:`chunked_top_k` turns scores into top-k lists, masking the items a user has already seen, a block of users at
a time so a 500,000 x 1,000,000 score matrix never exists; the recommender, the baselines,
:func:`topk_excluding_seen` (one block) and :func:`topk_from_scorer` (scores by user ID) all rank with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from jointembed.histories import Histories
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
    "chunked_top_k",
    "budget_rows",
    "SCORE_BUDGET",
    "RANKING_METRICS",
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


# Every ranking result is reported under these names followed by "@k": evaluate_rankings' keys, the recommendation
# task's val/ and test/ metrics and the baselines' test/baseline_<name>/ metrics.
RANKING_METRICS = ("hr", "recall", "ndcg", "coverage")
_PER_USER = {"hr": _hit_rate, "recall": _recall, "ndcg": _ndcg}


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
        ``"<name>@k"`` for each name of :data:`RANKING_METRICS` (``hr``, ``recall``, ``ndcg``, ``coverage``) and
        each k, plus ``"num_users"``: the number of
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
        for name, fn in _PER_USER.items():
            values = fn(hits[:, :k], num_targets)
            result[f"{name}@{k}"] = float(values[has].mean()) if has.any() else float("nan")
        result[f"coverage@{k}"] = catalog_coverage(top, num_items, k)
    result["num_users"] = int(has.sum())
    return result


# Largest (users × items) score block any top-k materialises at once: 2**24 floats = 64 MiB, i.e. 16 users at a
# time for a 1,000,000-item catalogue.
SCORE_BUDGET = 2**24


def budget_rows(num_items: int) -> int:
    """Rows of an ``(rows, num_items)`` score block that fit in :data:`SCORE_BUDGET` (at least 1)."""
    return max(1, SCORE_BUDGET // max(1, num_items))


class _SeenRows:
    """The seen items of query rows ``[start, stop)`` as ``(row in block, item)`` index tensors.

    ``seen`` is a :class:`SparseBatch` aligned with the queries (sliced on its own device, no copy to the CPU),
    or rows aligned with them or, with ``users``, Histories indexed by ``users[i]``.
    """

    def __init__(self, seen: TargetsLike, num_rows: int, users: np.ndarray | Sequence[int] | None) -> None:
        self.users = None if users is None else np.asarray(users, dtype=np.int64).reshape(-1)
        self.bags: SparseBatch | None = None
        if isinstance(seen, SparseBatch) and self.users is None:
            self.bags, self.bag_ids, size = seen, seen.bag_ids(), len(seen)
        else:
            self.histories = _as_histories(seen)
            size = len(self.histories)
        if self.users is None and size != num_rows:
            raise ValueError(f"seen has {size} rows but there are {num_rows} queries; pass users= to select rows")
        if self.users is not None and self.users.size != num_rows:
            raise ValueError(f"users has {self.users.size} entries but there are {num_rows} queries")

    def __call__(self, start: int, stop: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bags is not None:
            lo = int(self.bags.offsets[start])
            hi = int(self.bags.offsets[stop]) if stop < len(self.bags) else self.bags.values.numel()
            return (self.bag_ids[lo:hi] - start).to(device), self.bags.values[lo:hi].to(device)
        chosen = np.arange(start, stop) if self.users is None else self.users[start:stop]
        rows = self.histories.select(chosen)
        return torch.from_numpy(rows.row_ids()).to(device), torch.from_numpy(rows.items).to(device)


def chunked_top_k(
    scores_of: Callable[[slice], torch.Tensor],
    num_rows: int,
    k: int,
    seen: TargetsLike | None = None,
    users: np.ndarray | Sequence[int] | None = None,
    *,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k columns of each row of a ``(num_rows, N)`` score matrix that never exists whole.

    The one top-k of jointembed: the recommender, the baselines and :func:`topk_from_scorer` all rank with it.
    Blocks of ``chunk_size`` rows are scored, each row's seen items and non-finite scores (a diverged model) set
    to ``-inf``, and reduced to their top k.

    Args:
        scores_of: Maps a slice of query rows to their ``(len(rows), N)`` scores (any device and float dtype).
        num_rows: Number of query rows B.
        k: Items per row, ``>= 1``; more than ``N`` pads.
        seen: Items to exclude per row: rows aligned with the queries (a :class:`SparseBatch`, Histories or
            lists), or, with ``users``, Histories indexed by user ID; ``None`` excludes nothing.
        users: ``(B,)`` row of ``seen`` for each query.
        chunk_size: Rows scored at once (:func:`budget_rows` keeps a block within :data:`SCORE_BUDGET`).

    Returns:
        ``ids (B, k)`` int64 and ``scores (B, k)`` float32 on the scores' device, best first; ``-1`` / ``-inf``
        where fewer than k items are left (excluded items, or items whose own score is ``-inf``).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    exclude = None if seen is None else _SeenRows(seen, num_rows, users)
    ids, scores = [], []
    for start in range(0, num_rows, chunk_size):
        stop = min(start + chunk_size, num_rows)
        block = scores_of(slice(start, stop)).float()
        if block.ndim != 2 or block.shape[0] != stop - start:
            raise ValueError(f"the scorer returned shape {tuple(block.shape)} for {stop - start} query rows")
        num_items = block.shape[1]
        # A diverged model scores NaN/inf: such items are never recommended (torch.topk would rank NaN first).
        block = torch.where(torch.isfinite(block), block, float("-inf"))
        if exclude is not None:
            rows, items = exclude(start, stop, block.device)
            if items.numel() and int(items.max()) >= num_items:
                raise ValueError(f"seen holds item {int(items.max())} but the scores have only {num_items} columns")
            block[rows, items] = float("-inf")
        top = block.topk(min(k, num_items), dim=1)
        ids.append(top.indices.masked_fill(top.values == float("-inf"), -1))
        scores.append(top.values)
        if k > num_items:
            ids[-1] = F.pad(ids[-1], (0, k - num_items), value=-1)
            scores[-1] = F.pad(scores[-1], (0, k - num_items), value=float("-inf"))
    if not ids:
        empty = torch.empty(0, k)
        return empty.long(), empty
    return torch.cat(ids), torch.cat(scores)


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
    if not scores.is_floating_point():
        scores = scores.float()
    elif not inplace and seen is not None:
        scores = scores.clone()
    num_rows = scores.shape[0]
    return chunked_top_k(lambda rows: scores[rows], num_rows, k, seen, users, chunk_size=max(1, num_rows))[0]


def topk_from_scorer(
    score_fn: Callable[[np.ndarray], torch.Tensor],
    users: np.ndarray | Sequence[int],
    seen: Histories | None,
    k: int,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Top-k recommendations for many users, scoring ``chunk_size`` users at a time (see :func:`chunked_top_k`).

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
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    scores_of = lambda rows: score_fn(users[rows])  # noqa: E731
    ids, _ = chunked_top_k(scores_of, users.size, k, seen, users if seen is not None else None, chunk_size=chunk_size)
    return ids.cpu()
