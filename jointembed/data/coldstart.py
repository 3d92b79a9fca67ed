"""Cold start: an item-disjoint and user-disjoint split of a watch log, data modules that serve it, and the
warm / cold / cold-user evaluation table that any scorer (the two-tower model, the collaborative-filtering
recommender, popularity, EASE, random) is measured with.

The split (:func:`coldstart_split`):

- **cold items**: ``cold_fraction`` of the movies (at random, seeded, among those with content and at least one
  watch) lose every watch from training and from every input history; their watches are the *cold targets* of
  the test (ranked among the cold items). ``val_cold_fraction`` more form a disjoint validation set of cold items.
- **cold users**: ``cold_user_fraction`` of the users never appear in training; at test each gives its first
  1–``max_cold_user_watches`` (warm) watches as input and the rest are targets. ``val_cold_user_fraction`` more,
  drawn from a random stream of their own (so the test split is the same with or without them), are the
  validation cold users, held out of training alike.
- **warm**: on what remains, the usual per-user leave-last-out (the last watch the test target, the one before
  it the validation target), exactly as :class:`~jointembed.data.recommendation.InteractionsDataModule` does, so
  a model of the earlier recipes trains and is tested on the same warm split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from jointembed.baselines import (
    EASE,
    ContentPopularityRecommender,
    ContentProfileRecommender,
    PopularityRecommender,
    RandomRecommender,
)
from jointembed.data.interactions import Interactions, temporal_split
from jointembed.data.recommendation import MovieLensDataModule, MovieWorldDataModule, RecommendationSplit
from jointembed.histories import Histories
from jointembed.metrics.ranking import budget_rows, hit_rate_at_k, ndcg_at_k, recall_at_k, topk_from_scorer
from jointembed.metrics.significance import PairedComparison, format_comparison, paired_comparison

__all__ = [
    "ColdStartSplit",
    "coldstart_split",
    "ColdStartData",
    "MovieLensColdStartDataModule",
    "MovieWorldColdStartDataModule",
    "Scorer",
    "segment_metrics",
    "format_table",
]

#: ``score(histories, users) -> (len(users), N)``: the interface of :mod:`jointembed.baselines`.
Scorer = Any


@dataclass
class ColdStartSplit:
    """What each part of the cold-start evaluation sees; every Histories has one row per user ID.

    Attributes:
        warm: The warm leave-last-out split (cold items and cold users removed).
        cold_items, val_cold_items: Sorted item IDs of the test and validation cold items.
        cold_targets, val_cold_targets: Each user's watches of those items.
        cold_users: Sorted IDs of the held-out users.
        cold_user_input, cold_user_targets: Their first few warm watches, and the rest.
        all_counts: ``(N,)`` watches of every item over the whole log (the oracle popularity of cold items).
        no_content: Item IDs without usable content, never chosen as cold.
        val_cold_users, val_cold_user_input, val_cold_user_targets: The validation cold users, alike.
    """

    warm: RecommendationSplit
    cold_items: np.ndarray
    val_cold_items: np.ndarray
    cold_targets: Histories
    val_cold_targets: Histories
    cold_users: np.ndarray
    cold_user_input: Histories
    cold_user_targets: Histories
    all_counts: np.ndarray
    no_content: np.ndarray
    val_cold_users: np.ndarray
    val_cold_user_input: Histories
    val_cold_user_targets: Histories

    @property
    def warm_items(self) -> np.ndarray:
        """``(N,)`` bool: items that may appear in training."""
        mask = np.ones(self.warm.train.num_items, dtype=bool)
        mask[self.cold_items] = False
        mask[self.val_cold_items] = False
        return mask


def _histories(interactions: Interactions, keep: np.ndarray) -> Histories:
    return Histories.from_interactions(interactions.subset(keep))


def coldstart_split(
    interactions: Interactions,
    cold_fraction: float = 0.2,
    val_cold_fraction: float = 0.1,
    cold_user_fraction: float = 0.1,
    max_cold_user_watches: int = 5,
    no_content: Sequence[int] = (),
    seed: int = 0,
    val_cold_user_fraction: float = 0.0,
) -> ColdStartSplit:
    """Split a watch log for cold-start evaluation (see the module docstring).

    Args:
        interactions: The whole log.
        cold_fraction: Share of all items that are test cold items.
        val_cold_fraction: Share of all items that are validation cold items (disjoint from the test ones).
        cold_user_fraction: Share of the users (with at least two watches) held out as cold users.
        max_cold_user_watches: A cold user's input is its first 1 to this many watches (uniform, seeded).
        no_content: Items without usable content: they stay warm (content cannot place them).
        seed: Seed of every random choice.
        val_cold_user_fraction: Share of the users (of the same candidates) held out as validation cold users.

    Raises:
        ValueError: Fractions out of range, or too few items with content to draw the cold items from.
    """
    for name, value in (("cold_fraction", cold_fraction), ("val_cold_fraction", val_cold_fraction),
                        ("cold_user_fraction", cold_user_fraction),
                        ("val_cold_user_fraction", val_cold_user_fraction)):  # fmt: skip
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if max_cold_user_watches < 1:
        raise ValueError(f"max_cold_user_watches must be >= 1, got {max_cold_user_watches}")
    rng = np.random.default_rng(seed)
    n_items = interactions.num_items
    counts = np.bincount(interactions.items, minlength=n_items)
    eligible = np.flatnonzero(counts > 0)
    eligible = np.setdiff1d(eligible, np.asarray(no_content, dtype=np.int64))
    n_test, n_val = round(cold_fraction * n_items), round(val_cold_fraction * n_items)
    if n_test + n_val > eligible.size:
        raise ValueError(
            f"cannot draw {n_test} + {n_val} cold items from the {eligible.size} items with content and watches"
        )
    drawn = rng.permutation(eligible)
    cold_items, val_cold_items = np.sort(drawn[:n_test]), np.sort(drawn[n_test : n_test + n_val])
    is_test_cold = np.isin(interactions.items, cold_items)
    is_val_cold = np.isin(interactions.items, val_cold_items)
    is_cold_item = is_test_cold | is_val_cold

    warm_counts = np.bincount(interactions.users[~is_cold_item], minlength=interactions.num_users)
    candidates = np.flatnonzero(warm_counts >= 2)
    n_users = round(cold_user_fraction * candidates.size)
    cold_users = np.sort(rng.choice(candidates, n_users, replace=False)) if n_users else np.zeros(0, np.int64)
    is_cold_user = np.isin(interactions.users, cold_users)
    val_rng = np.random.default_rng([seed, 1])  # its own stream: the test split does not depend on it
    n_val_users = round(val_cold_user_fraction * candidates.size)
    if n_users + n_val_users > candidates.size:
        raise ValueError(f"cannot hold out {n_users} + {n_val_users} cold users from {candidates.size} candidates")
    rest = np.setdiff1d(candidates, cold_users)
    val_cold_users = np.sort(val_rng.choice(rest, n_val_users, replace=False)) if n_val_users else cold_users[:0]
    is_val_cold_user = np.isin(interactions.users, val_cold_users)

    warm_log = ~is_cold_item & ~is_cold_user & ~is_val_cold_user
    train, val, test = temporal_split(_histories(interactions, warm_log), n_val=1, n_test=1)
    warm = RecommendationSplit(
        train, train, val, np.flatnonzero(val.lengths() > 0), train.concat_rows(val), test,
        np.flatnonzero(test.lengths() > 0),
    )  # fmt: skip
    cold_targets = _histories(interactions, is_test_cold & ~is_cold_user)
    val_cold_targets = _histories(interactions, is_val_cold & ~is_cold_user)

    def first_watches(users: np.ndarray, is_user: np.ndarray, draw: np.random.Generator) -> tuple[Histories, ...]:
        user_log = _histories(interactions, ~is_cold_item & is_user)
        lengths = user_log.lengths()
        n_input = np.zeros(len(lengths), dtype=np.int64)
        n_input[users] = np.minimum(draw.integers(1, max_cold_user_watches + 1, users.size), lengths[users] - 1)
        is_input = user_log.positions() < np.repeat(n_input, lengths)
        return user_log.mask(is_input), user_log.mask(~is_input)

    cold_input, cold_rest = first_watches(cold_users, is_cold_user, rng)
    val_input, val_rest = first_watches(val_cold_users, is_val_cold_user, val_rng)
    return ColdStartSplit(
        warm, cold_items, val_cold_items, cold_targets, val_cold_targets, cold_users, cold_input, cold_rest,
        counts, np.asarray(sorted(no_content), dtype=np.int64), val_cold_users, val_input, val_rest,
    )  # fmt: skip


# ----- evaluation ----------------------------------------------------------------------------------------------


def segment_metrics(
    scorer: Scorer,
    inputs: Histories,
    targets: Histories,
    users: np.ndarray,
    candidates: np.ndarray | None,
    k: int = 10,
) -> dict[str, float]:
    """Recall@k, NDCG@k and HR@k (means over users with a target) of one scorer on one segment, and the standard
    error of the recall.

    Args:
        scorer: ``score(histories, users) -> (len(users), N)`` (a baseline, or a model's adapter).
        inputs: Input histories (their items are excluded from the ranking).
        targets: Target histories.
        users: Users to evaluate (those without a target are skipped).
        candidates: ``(N,)`` bool: only these items are ranked; ``None`` ranks all.
        k: Cut-off.
    """
    return _segment(scorer, inputs, targets, users, candidates, k)[0]


def _segment(
    scorer: Scorer,
    inputs: Histories,
    targets: Histories,
    users: np.ndarray,
    candidates: np.ndarray | None,
    k: int,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`segment_metrics` and the ``(U,)`` Recall@k and NDCG@k per evaluated user (the same users for every
    scorer of a segment: who is evaluated depends on the histories alone)."""
    users = users[(targets.lengths()[users] > 0) & (inputs.lengths()[users] > 0)]
    if users.size == 0:
        nan = float("nan")
        return {f"recall@{k}": nan, f"ndcg@{k}": nan, f"hr@{k}": nan, "users": 0}, {}
    mask = None if candidates is None else torch.from_numpy(~candidates)

    def score(chunk: np.ndarray) -> torch.Tensor:
        block = scorer.score(inputs, chunk).float().clone()
        if mask is not None:
            block[:, mask.to(block.device)] = float("-inf")
        return block

    top = topk_from_scorer(score, users, inputs, k, chunk_size=min(1024, budget_rows(inputs.num_items)))
    rows = targets.select(users)
    recall = recall_at_k(top, rows, k, per_user=True)
    ndcg = ndcg_at_k(top, rows, k, per_user=True)
    metrics = {
        f"recall@{k}": float(np.mean(recall)),
        f"recall_se@{k}": float(np.std(recall, ddof=1) / np.sqrt(recall.size)) if recall.size > 1 else 0.0,
        f"ndcg@{k}": float(np.mean(ndcg)),
        f"hr@{k}": float(hit_rate_at_k(top, rows, k)),
        "users": int(users.size),
    }
    return metrics, {f"recall@{k}": recall, f"ndcg@{k}": ndcg}


#: ``{model_vs_baseline: {metric: PairedComparison as a dict}}``: one segment's comparisons.
Comparisons = dict[str, dict[str, dict[str, float]]]


def _compare(models: list[str], per_user: dict[str, dict[str, np.ndarray]]) -> Comparisons:
    """Each model against each other scorer of the segment, user by user (see
    :mod:`jointembed.metrics.significance`)."""
    result: Comparisons = {}
    for model in (m for m in models if per_user.get(m)):
        for baseline, values in per_user.items():
            if baseline in models or not values:
                continue
            result[f"{model}_vs_{baseline}"] = {
                metric: paired_comparison(mine, values[metric])._asdict() for metric, mine in per_user[model].items()
            }
    return result


class _OraclePopularity:
    """Ranks items by their watches over the whole log: for cold items, popularity a real system could not know."""

    def __init__(self, counts: np.ndarray) -> None:
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def score(self, histories: Histories, users: np.ndarray) -> torch.Tensor:
        return self.counts.repeat(len(users), 1)


def format_table(metrics: dict[str, Any], k: int = 10) -> str:
    """The ``coldstart/<segment>/<scorer>/<metric>`` entries as a text table: one row per segment and scorer;
    then, where there is one, the ``<stage>_coldstart_vs`` entry as a second table: each model against each
    baseline, the paired difference per user with its 95 % interval and p-value."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0].endswith("coldstart") and not isinstance(value, dict):
            rows.setdefault((parts[1], parts[2]), {})[parts[3]] = value
    width = max([len("scorer"), *(len(scorer) for _, scorer in rows)])
    recall, ndcg = f"recall@{k}", f"ndcg@{k}"
    lines = [f"{'segment':<12} {'scorer':<{width}} {recall:>10} {'± se':>7} {ndcg:>9} {'users':>6}"]
    for (segment, scorer), m in rows.items():
        lines.append(
            f"{segment:<12} {scorer:<{width}} {m.get(f'recall@{k}', float('nan')):>10.4f} "
            f"{m.get(f'recall_se@{k}', float('nan')):>7.4f} {m.get(f'ndcg@{k}', float('nan')):>9.4f} "
            f"{int(m.get('users', 0)):>6}"
        )
    return "\n".join([*lines, *_format_comparisons(metrics, k)])


def _format_comparisons(metrics: dict[str, Any], k: int) -> list[str]:
    rows = [
        (segment, pair, {metric: format_comparison(PairedComparison(**stats)) for metric, stats in by_metric.items()})
        for key, segments in metrics.items()
        if key.endswith("coldstart_vs") and isinstance(segments, dict)
        for segment, pairs in segments.items()
        for pair, by_metric in pairs.items()
    ]
    if not rows:
        return []
    recall, ndcg = f"recall@{k}", f"ndcg@{k}"
    width = max(len(pair) for _, pair, _ in rows)
    cell = max(len(c) for _, _, cells in rows for c in cells.values())
    lines = ["", "paired difference per user, [95 % bootstrap interval], sign-flip p:"]
    lines.append(f"{'segment':<12} {'model_vs_baseline':<{width}} {recall:<{cell}}  {ndcg}")
    for segment, pair, cells in rows:
        lines.append(f"{segment:<12} {pair:<{width}} {cells.get(recall, '-'):<{cell}}  {cells.get(ndcg, '-')}")
    return lines


# ----- data modules --------------------------------------------------------------------------------------------


class ColdStartData:
    """The cold-start part shared by the data modules below: builds the split after the log is loaded, gives
    each item's content text, and evaluates scorers on every segment. The host class is an
    :class:`~jointembed.data.recommendation.InteractionsDataModule` (with ``protocol: leave_last_out``)."""

    cold: ColdStartSplit | None = None
    item_texts: list[str] | None = None

    def _init_cold(self, cold_fraction: float, val_cold_fraction: float, cold_user_fraction: float,
                   max_cold_user_watches: int, val_cold_user_fraction: float) -> None:  # fmt: skip
        self.cold_args = {
            "cold_fraction": cold_fraction,
            "val_cold_fraction": val_cold_fraction,
            "cold_user_fraction": cold_user_fraction,
            "max_cold_user_watches": max_cold_user_watches,
            "val_cold_user_fraction": val_cold_user_fraction,
        }
        self.cold = None
        self.item_texts = None
        if self.protocol != "leave_last_out":
            raise ValueError(
                f"a cold-start split holds users out itself (cold_user_fraction); protocol must be 'leave_last_out' "
                f"for the warm part, got {self.protocol!r}"
            )

    def _make_split(self, interactions: Interactions) -> RecommendationSplit:
        from jointembed.data.item_content import empty_content, item_content_texts

        self.item_texts = item_content_texts(interactions)
        no_content = empty_content(interactions)
        self.cold = coldstart_split(interactions, **self.cold_args, no_content=no_content, seed=self.seed)
        return self.cold.warm

    def coldstart_metrics(
        self,
        scorers: dict[str, Scorer],
        k: int = 10,
        stage: str = "test",
        baselines: bool = True,
        segments: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """``{"<stage>_coldstart/<segment>/<scorer>/<metric>": value}`` for the given scorers and the baselines.

        Segments: ``warm`` (warm test targets ranked among warm items), ``cold`` (cold-item targets ranked among
        the cold items; baselines: the content profile of :class:`~jointembed.baselines.ContentProfileRecommender`,
        popularity predicted from content (:class:`~jointembed.baselines.ContentPopularityRecommender`: cold
        movies have no watches, so plain popularity would be a random order), random, and the oracle
        popularity, from watches no system has seen), ``cold_in_all`` (the same targets ranked among every item, for
        scorers that can score cold items), ``cold_users`` (held-out users from their first 1–5 watches, ranked
        among warm items). With ``stage="val"`` the validation targets, validation cold items and validation cold
        users are used, and only ``warm``/``cold``/``cold_users`` (the last when there are validation cold users).

        Each of ``scorers`` is also compared with each baseline of a segment on the same users, in one nested
        entry (not a scalar, so metric printers leave it to the table): ``"<stage>_coldstart_vs": {segment:
        {"<scorer>_vs_<baseline>": {"recall@k" and "ndcg@k": {"difference", "low", "high", "p_value", "users"}}}}``,
        the mean paired difference, its 95 % bootstrap interval over users and the sign-flip p (see
        :mod:`jointembed.metrics.significance`); :func:`format_table` shows them. It is absent when no segment
        has a baseline to compare with (``baselines=False``).

        Args:
            scorers: ``{name: scorer}``; a scorer with ``scores_cold_items = False`` (a collaborative-filtering
                model, which has no vector for an item it never saw) is left out of the cold segments.
            k: Cut-off.
            stage: ``test`` or ``val``.
            baselines: Also score popularity, EASE, random and the oracle popularity of cold items.
            segments: Only these segments (``None``: every segment of the stage).
        """
        self._split()
        c = self.cold
        warm, counts = c.warm, c.all_counts
        fit_on = warm.test_input if stage == "test" else warm.train
        popularity = PopularityRecommender().fit(fit_on)
        chosen_baselines: dict[str, Scorer] = {"popularity": popularity}
        if stage == "test" and warm.train.num_items <= self.ease_max_items:
            chosen_baselines["ease"] = EASE(l2=self.ease_l2, max_items=self.ease_max_items).fit(fit_on)
        random = RandomRecommender(seed=self.seed).fit(fit_on)
        extra = {"random": random} if baselines else {}
        oracle = {"popularity_oracle": _OraclePopularity(counts), **extra} if baselines else {}
        if baselines and self.item_texts is not None:
            oracle = {
                "content_profile": ContentProfileRecommender(self.item_texts).fit(fit_on),
                "popularity_from_content": ContentPopularityRecommender(self.item_texts).fit(fit_on),
                **oracle,
            }
        if not baselines:
            chosen_baselines = {}
        cold_items = c.cold_items if stage == "test" else c.val_cold_items
        cold_mask = np.zeros(warm.train.num_items, dtype=bool)
        cold_mask[cold_items] = True
        if stage == "test":
            inputs, targets, users = warm.test_input, warm.test_targets, warm.test_users
            cold_targets = c.cold_targets
        else:
            inputs, targets, users = warm.val_input, warm.val_targets, warm.val_users
            cold_targets = c.val_cold_targets
        cold_scorers = {name: s for name, s in scorers.items() if getattr(s, "scores_cold_items", True)}
        chosen_segments: list[tuple[str, dict[str, Scorer], Histories, Histories, np.ndarray, np.ndarray | None]] = [
            ("warm", {**scorers, **chosen_baselines, **extra}, inputs, targets, users, c.warm_items),
            ("cold", {**cold_scorers, **oracle}, inputs, cold_targets, np.arange(len(inputs)), cold_mask),
        ]  # fmt: skip
        if stage == "val" and c.val_cold_users.size:
            chosen_segments.append(("cold_users", {**scorers, **chosen_baselines}, c.val_cold_user_input,
                                    c.val_cold_user_targets, c.val_cold_users, c.warm_items))  # fmt: skip
        if stage == "test":
            everything = np.ones(warm.train.num_items, dtype=bool)
            chosen_segments.append(
                ("cold_in_all", cold_scorers, inputs, cold_targets, np.arange(len(inputs)), everything)
            )
            chosen_segments.append(("cold_users", {**scorers, **chosen_baselines}, c.cold_user_input,
                                    c.cold_user_targets, c.cold_users, c.warm_items))  # fmt: skip
        if segments is not None:
            names = [name for name, *_ in chosen_segments]
            if unknown := sorted(set(segments) - set(names)):
                raise ValueError(f"no segment {unknown} at stage {stage!r}: the segments are {names}")
            chosen_segments = [entry for entry in chosen_segments if entry[0] in segments]
        result: dict[str, Any] = {}
        comparisons: dict[str, Comparisons] = {}
        for segment, chosen, seg_inputs, seg_targets, seg_users, candidates in chosen_segments:
            per_user: dict[str, dict[str, np.ndarray]] = {}
            for name, scorer in chosen.items():
                metrics, per_user[name] = _segment(scorer, seg_inputs, seg_targets, seg_users, candidates, k)
                for metric, value in metrics.items():
                    result[f"{stage}_coldstart/{segment}/{name}/{metric}"] = value
            if found := _compare(list(scorers), per_user):
                comparisons[segment] = found
        if comparisons:
            result[f"{stage}_coldstart_vs"] = comparisons
        return result


class MovieLensColdStartDataModule(ColdStartData, MovieLensDataModule):
    """MovieLens (the folder a user downloaded) split for cold start: see :mod:`jointembed.data.coldstart`.

    Args:
        path: Folder holding the ratings and movies files.
        min_rating: Keep only ratings >= this as watches; ``None`` keeps every rating.
        cold_fraction: Share of the movies that are test cold items.
        val_cold_fraction: Share of the movies that are validation cold items.
        cold_user_fraction: Share of the users held out as cold users.
        max_cold_user_watches: A cold user's input is its first 1 to this many watches.
        val_cold_user_fraction: Share of the users held out as validation cold users (what the two-tower's
            short-history blend is chosen on).
        **kwargs: Loader and history settings of :class:`~jointembed.data.recommendation.InteractionsDataModule`
            (the protocol is always ``leave_last_out`` on the warm part).
    """

    def __init__(
        self,
        path: str,
        min_rating: float | None = None,
        cold_fraction: float = 0.2,
        val_cold_fraction: float = 0.1,
        cold_user_fraction: float = 0.1,
        max_cold_user_watches: int = 5,
        val_cold_user_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        MovieLensDataModule.__init__(self, path, min_rating, **kwargs)
        self._init_cold(
            cold_fraction, val_cold_fraction, cold_user_fraction, max_cold_user_watches, val_cold_user_fraction
        )


class MovieWorldColdStartDataModule(ColdStartData, MovieWorldDataModule):
    """The synthetic movie world split for cold start (its movies have generated titles and genre words that
    carry the planted aspects): see :mod:`jointembed.data.coldstart`.

    Args:
        num_movies: Catalogue size.
        num_users: Number of users.
        num_hidden_aspects: Latent aspects beyond the two named ones (not visible in the content).
        mean_watches: Mean watches per user.
        world_seed: Seed of the generated world.
        cold_fraction: Share of the movies that are test cold items.
        val_cold_fraction: Share of the movies that are validation cold items.
        cold_user_fraction: Share of the users held out as cold users.
        max_cold_user_watches: A cold user's input is its first 1 to this many watches.
        val_cold_user_fraction: Share of the users held out as validation cold users (what the two-tower's
            short-history blend is chosen on).
        **kwargs: Further settings of :class:`~jointembed.data.recommendation.MovieWorldDataModule`.
    """

    def __init__(
        self,
        num_movies: int = 2000,
        num_users: int = 3000,
        num_hidden_aspects: int = 6,
        mean_watches: float = 20.0,
        world_seed: int = 0,
        cold_fraction: float = 0.2,
        val_cold_fraction: float = 0.1,
        cold_user_fraction: float = 0.1,
        max_cold_user_watches: int = 5,
        val_cold_user_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        MovieWorldDataModule.__init__(
            self, num_movies, num_users, num_hidden_aspects, mean_watches, world_seed=world_seed, **kwargs
        )
        self._init_cold(
            cold_fraction, val_cold_fraction, cold_user_fraction, max_cold_user_watches, val_cold_user_fraction
        )
