"""Is a difference between two recommenders beyond noise? Paired tests over the users both were scored on.

Every recommendation table compares a model with a baseline on the *same* test users, so the comparison is
paired: for each user ``d_u = a_u - b_u`` (e.g. the model's NDCG@10 minus EASE's), and

- the **difference** is ``mean(d)``;
- the **95 % interval** is a percentile bootstrap over users: ``resamples`` draws of the users with
  replacement, the 2.5th and 97.5th percentiles of their mean ``d`` (seeded, so a table is reproducible);
- the **p-value** is a two-sided paired *sign-flip* (randomisation) test of "the two are exchangeable for
  every user": ``p = (1 + #{|mean(s·d)| >= |mean(d)|}) / (1 + resamples)`` over random signs ``s = ±1`` per
  user, or exactly ``#{...} / 2**n`` over all sign patterns when ``2**n <= resamples``;
- for binary hits (HR@k), :func:`mcnemar_exact` is the exact McNemar test: only the discordant users count
  (the model hits and the baseline misses, or the reverse), and under the null each is a fair coin, so
  ``p`` is the two-sided exact binomial p of ``model_only`` out of ``model_only + baseline_only``.

A difference is beyond noise (at 5 %) when its interval excludes zero; the interval and the p-value come from
different resampling schemes and may, at the edge, disagree.

Users where either value is NaN (no target, see :mod:`jointembed.metrics.ranking`) are dropped pairwise.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy.stats import binomtest

from jointembed.metrics.ranking import TargetsLike, TopK, hit_rate_at_k, ndcg_at_k

__all__ = [
    "PairedComparison",
    "McNemar",
    "paired_comparison",
    "mcnemar_exact",
    "format_comparison",
    "format_comparisons",
    "compare_per_user",
    "align_users",
    "per_user_csv",
    "PerUserResults",
    "RESAMPLES",
]

#: Bootstrap and sign-flip draws per comparison: the smallest p it can give is 1 / 2001 ~ 0.0005.
RESAMPLES = 2000
# Largest (draws x users) block drawn at once (32 MiB of int64), so 500,000 users never need 8 GB.
_BLOCK = 2**22


class PairedComparison(NamedTuple):
    """Paired comparison of a model's per-user metric ``a`` with a baseline's ``b`` on the same users.

    Attributes:
        difference: ``mean(a - b)``.
        low, high: The bootstrap interval of the difference (95 % by default).
        p_value: Two-sided sign-flip p-value of "no difference".
        users: Users compared (pairs with no NaN).
    """

    difference: float
    low: float
    high: float
    p_value: float
    users: int


class McNemar(NamedTuple):
    """Exact McNemar test of two binary hit vectors.

    Attributes:
        model_only: Users the model hits and the baseline misses.
        baseline_only: Users the baseline hits and the model misses.
        p_value: Two-sided exact binomial p of ``model_only`` among the discordant users, with probability 1/2.
    """

    model_only: int
    baseline_only: int
    p_value: float


def _pairs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs one value per user in both: got {a.size} and {b.size} values")
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]


def _draw_blocks(resamples: int, n: int) -> list[int]:
    rows = max(1, _BLOCK // max(1, n))
    return [min(rows, resamples - start) for start in range(0, resamples, rows)]


def _bootstrap_means(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples,)`` means of ``d`` over users drawn with replacement."""
    n = d.size
    return np.concatenate([d[rng.integers(0, n, (m, n))].mean(1) for m in _draw_blocks(resamples, n)])


def _sign_flip_p(d: np.ndarray, resamples: int, rng: np.random.Generator) -> float:
    n = d.size
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))  # a flip that only reorders the sum counts as equal
    if 2**n <= resamples:  # every sign pattern: the exact randomisation p
        signs = 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs((signs * d).mean(1)) >= observed - tolerance))
    extreme = 0
    for m in _draw_blocks(resamples, n):
        signs = 1.0 - 2.0 * rng.integers(0, 2, (m, n))
        extreme += int(np.sum(np.abs((signs * d).mean(1)) >= observed - tolerance))
    return (1 + extreme) / (1 + resamples)


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> PairedComparison:
    """Mean paired difference ``a - b`` with a bootstrap interval over users and a sign-flip p-value.

    Args:
        a: ``(U,)`` the model's metric per user (NaN: user not scored).
        b: ``(U,)`` the baseline's metric for the same users, in the same order.
        resamples: Bootstrap draws, and random sign patterns for the p-value.
        seed: Seed of both; the same inputs and seed give the same result.
        level: Coverage of the interval.

    Returns:
        A :class:`PairedComparison`; with no user left, every number is NaN and ``users`` is 0.

    Raises:
        ValueError: ``a`` and ``b`` of different lengths, ``resamples < 1`` or ``level`` outside (0, 1).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a, b = _pairs(a, b)
    if a.size == 0:
        return PairedComparison(math.nan, math.nan, math.nan, math.nan, 0)
    d = a - b
    rng = np.random.default_rng(seed)
    means = _bootstrap_means(d, resamples, rng)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    p = _sign_flip_p(d, resamples, rng)
    return PairedComparison(float(d.mean()), float(low), float(high), min(1.0, p), int(d.size))


def mcnemar_exact(hits_a: Sequence[float] | np.ndarray, hits_b: Sequence[float] | np.ndarray) -> McNemar:
    """Exact McNemar test: do two recommenders hit different users more often than chance would?

    Args:
        hits_a: ``(U,)`` the model's hit (bool, or 0/1 floats such as HR@k per user; NaN: user not scored).
        hits_b: ``(U,)`` the baseline's hit for the same users.

    Returns:
        A :class:`McNemar`; ``p_value`` is 1 when no user is discordant.
    """
    a, b = _pairs(hits_a, hits_b)
    a, b = a > 0.5, b > 0.5
    model_only, baseline_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = model_only + baseline_only
    p = binomtest(model_only, discordant, 0.5).pvalue if discordant else 1.0
    return McNemar(model_only, baseline_only, float(min(1.0, p)))


def _format_p(p: float) -> str:
    if math.isnan(p):
        return "p=nan"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def format_comparison(comparison: PairedComparison, digits: int = 3) -> str:
    """One table cell: ``"+0.021 [+0.004, +0.038] p=0.020"`` (difference, interval, p-value)."""
    f = f"{{:+.{digits}f}}".format
    c = comparison
    return f"{f(c.difference)} [{f(c.low)}, {f(c.high)}] {_format_p(c.p_value)}"


def format_comparisons(rows: Sequence[tuple[str, str, str, PairedComparison, McNemar | None]]) -> str:
    """A small text table, one line per ``(model, baseline, metric, comparison, mcnemar or None)``."""
    cells = [(m, base, metric, format_comparison(c), "" if t is None else _format_p(t.p_value), c.users)
             for m, base, metric, c, t in rows]  # fmt: skip
    header = ("model", "baseline", "metric", "difference [95% interval] p", "McNemar", "users")
    widths = [max(len(str(row[i])) for row in [header, *cells]) for i in range(len(header))]
    lines = []
    for row in [header, *cells]:
        padded = [f"{v!s:<{w}}" if i < 4 else f"{v!s:>{w}}" for i, (v, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(padded))
    return "\n".join(line.rstrip() for line in lines)


#: One line of a comparison table: ``(model, baseline, metric, comparison, McNemar of the hits or None)``.
Row = tuple[str, str, str, PairedComparison, McNemar | None]


def compare_per_user(
    model: Mapping[str, np.ndarray],
    baselines: Mapping[str, Mapping[str, np.ndarray]],
    metrics: Sequence[str],
    hit_metric: str | None = None,
    model_name: str = "model",
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, dict[str, dict[str, float]]], list[Row]]:
    """Compare a model with each baseline on each metric, user by user.

    Args:
        model: ``{metric: (U,) per-user values}``.
        baselines: ``{name: {metric: (U,)}}``, aligned with ``model`` (same users, same order; NaN: not scored).
        metrics: The metrics to compare (each in ``model`` and every baseline).
        hit_metric: A binary metric (e.g. ``"hr@10"``) that also gets the exact McNemar test.
        model_name: The model's name in the table rows.
        resamples: Bootstrap and sign-flip draws.
        seed: Seed of every comparison.

    Returns:
        ``({baseline: {metric: PairedComparison as a dict, "<hit_metric>_mcnemar": McNemar as a dict}}, rows)``
        for ``test_metrics.json`` and for :func:`format_comparisons`.
    """
    result: dict[str, dict[str, dict[str, float]]] = {}
    rows: list[Row] = []
    for name, values in baselines.items():
        entry: dict[str, dict[str, float]] = {}
        for metric in metrics:
            comparison = paired_comparison(model[metric], values[metric], resamples, seed)
            test = mcnemar_exact(model[metric], values[metric]) if metric == hit_metric else None
            entry[metric] = comparison._asdict()
            if test is not None:
                entry[f"{metric}_mcnemar"] = test._asdict()
            rows.append((model_name, name, metric, comparison, test))
        result[name] = entry
    return result, rows


def align_users(users: np.ndarray, other_users: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (one per ``other_users``) reordered to ``users``; NaN for a user ``other_users`` lacks.

    Args:
        users: ``(U,)`` the user IDs to align to.
        other_users: ``(V,)`` distinct user IDs that ``values`` belongs to.
        values: ``(V,)`` a metric per user.
    """
    users, other_users = np.asarray(users).reshape(-1), np.asarray(other_users).reshape(-1)
    order = np.argsort(other_users, kind="stable")
    ordered = other_users[order]
    out = np.full(users.shape, np.nan)
    if ordered.size:
        at = np.minimum(np.searchsorted(ordered, users), ordered.size - 1)
        found = ordered[at] == users
        out[found] = np.asarray(values, dtype=np.float64)[order][at[found]]
    return out


def per_user_csv(columns: Mapping[str, np.ndarray | Sequence[int | str]]) -> str:
    """Per-user results as CSV text: a header of the column names, then one line per user. Integer columns (the
    user IDs) are written as integers, float columns with every digit (so comparisons recomputed from the file
    are exact), anything else (raw user keys) as text."""
    arrays = [np.asarray(values) for values in columns.values()]
    cells = []
    for a in arrays:
        if np.issubdtype(a.dtype, np.integer):
            cells.append([str(int(v)) for v in a])
        elif np.issubdtype(a.dtype, np.floating):
            cells.append([repr(float(v)) for v in a])
        else:
            cells.append([str(v) for v in a])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*cells, strict=True))
    return out.getvalue()


class PerUserResults:
    """A test's HR@k and NDCG@k per user, gathered batch by batch, and their comparison with baselines.

    Args:
        k: Cut-off.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.users: list[np.ndarray] = []
        self.values: dict[str, list[np.ndarray]] = {f"hr@{k}": [], f"ndcg@{k}": []}
        self.keyed = True  # False once a batch came without user IDs: rows are then numbered in order

    def add(self, topk: TopK, targets: TargetsLike, users: np.ndarray | Sequence[int] | None = None) -> None:
        """Score one batch: ``topk (B, >=k)`` recommendations, B target rows and the ``(B,)`` user IDs."""
        if users is None:
            self.keyed = False
            start = sum(u.size for u in self.users)
            users = np.arange(start, start + len(topk))
        self.users.append(np.asarray(users, dtype=np.int64).reshape(-1))
        self.values[f"hr@{self.k}"].append(np.asarray(hit_rate_at_k(topk, targets, self.k, per_user=True)))
        self.values[f"ndcg@{self.k}"].append(np.asarray(ndcg_at_k(topk, targets, self.k, per_user=True)))

    def __len__(self) -> int:
        return sum(u.size for u in self.users)

    def compare(
        self, baseline_users: np.ndarray | None = None, baselines: Mapping[str, Mapping[str, np.ndarray]] = ()
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, dict[str, float]]], list[Row]]:
        """The per-user table and the model's comparison with each baseline on the users both scored.

        Args:
            baseline_users: ``(V,)`` the users the baselines' values belong to (ignored without user IDs).
            baselines: ``{name: {"hr@k": (V,), "ndcg@k": (V,)}}``.

        Returns:
            ``(columns, comparisons, rows)``: ``{"user" (or "row"): IDs, "model_<metric>", "<name>_<metric>"}``
            for :func:`per_user_csv`, and what :func:`compare_per_user` returns (empty without baselines).
        """
        users = np.concatenate(self.users)
        model = {metric: np.concatenate(parts) for metric, parts in self.values.items()}
        columns = {"user" if self.keyed else "row": users, **{f"model_{m}": v for m, v in model.items()}}
        if not self.keyed or baseline_users is None or not baselines:
            return columns, {}, []
        aligned = {
            name: {m: align_users(users, baseline_users, v) for m, v in values.items() if m in model}
            for name, values in baselines.items()
        }
        for name, values in aligned.items():
            columns.update({f"{name}_{m}": v for m, v in values.items()})
        comparisons, rows = compare_per_user(model, aligned, list(model), hit_metric=f"hr@{self.k}")
        return columns, comparisons, rows
