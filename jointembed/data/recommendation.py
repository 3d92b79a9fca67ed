"""LightningDataModules for recommendation: watch histories in, (history, held-out item) examples out.

Two sources share one evaluation protocol: :class:`MovieLensDataModule` reads the files a user downloaded,
:class:`MovieWorldDataModule` generates a synthetic movie world. Both split the watches with
``leave_last_out`` (each user's last watch is the test target, the one before it the validation target),
``global_time`` (train before a date, test after it: :func:`~jointembed.data.interactions.global_time_split`) or
``held_out_users`` (some users never seen in training are scored from a fold-in part of their history), rank
the whole catalogue with already-watched movies excluded, and score the popularity and EASE baselines on the
same split (:meth:`InteractionsDataModule.baseline_metrics`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from jointembed.baselines import EASE, PopularityRecommender
from jointembed.config import check_at_least, check_positive
from jointembed.data.interactions import (
    Histories,
    Interactions,
    global_time_split,
    held_out_users,
    random_rank_in_rows,
    temporal_split,
)
from jointembed.data.movie_world import MovieWorld, generate_movie_world
from jointembed.data.movielens import read_movielens
from jointembed.metrics.ranking import RANKING_METRICS, evaluate_rankings, hit_rate_at_k, ndcg_at_k
from jointembed.models.recommender import recent_watches
from jointembed.sparse import SparseBatch

__all__ = ["InteractionsDataModule", "MovieLensDataModule", "MovieWorldDataModule", "RecommendationSplit"]

Protocol = Literal["leave_last_out", "global_time", "held_out_users"]


@dataclass
class RecommendationSplit:
    """What each stage sees. Every Histories has one row per user ID.

    Attributes:
        train: Histories the training examples are cut from.
        val_input, val_targets, val_users: Validation input histories, held-out items and the users evaluated.
        test_input, test_targets, test_users: The same for test.
    """

    train: Histories
    val_input: Histories
    val_targets: Histories
    val_users: np.ndarray
    test_input: Histories
    test_targets: Histories
    test_users: np.ndarray


class TrainExamples(Dataset):
    """Training examples: a user's history with one of its items held out as the target.

    With ``targets_per_user=None`` every watch of every user (with at least two) is a target once per epoch;
    otherwise each epoch draws ``targets_per_user`` random targets per user, which bounds an epoch's length on
    huge logs. The history is the user's other watches (``causal=False``) or only those before the target
    (``causal=True``, which matches predicting the next watch), the ``max_history`` most recent when set.
    Batches are built whole in :meth:`__getitems__` with vectorised numpy, not example by example.
    """

    def __init__(
        self, histories: Histories, targets_per_user: int | None, max_history: int | None, causal: bool = False
    ) -> None:
        self.h = histories
        self.lengths = histories.lengths()
        self.max_history = max_history
        self.targets_per_user = targets_per_user
        self.causal = causal
        users = np.flatnonzero(self.lengths >= 2)
        if users.size == 0:
            raise ValueError("no user has two or more training watches: nothing to train on")
        self.users = users
        if targets_per_user is None:
            positions = histories.positions()
            # a causal example needs at least one earlier watch: the first watch is never a target
            has = np.repeat(self.lengths >= 2, self.lengths) & (positions >= int(causal))
            self.event_users, self.event_pos = histories.row_ids()[has], positions[has]

    def __len__(self) -> int:
        if self.targets_per_user is None:
            return int(self.event_users.size)
        return int(self.users.size * self.targets_per_user)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        idx = np.asarray(indices, dtype=np.int64)
        if self.targets_per_user is None:
            users, pos = self.event_users[idx], self.event_pos[idx]
        else:
            users = self.users[idx // self.targets_per_user]
            # torch's RNG: seeded by seed_everything and distinct in every DataLoader worker
            first = int(self.causal)
            draws = torch.rand(idx.size, dtype=torch.float64).numpy()
            pos = first + (draws * (self.lengths[users] - first)).astype(np.int64)
        return self._batch(users, pos)

    def _batch(self, users: np.ndarray, pos: np.ndarray) -> dict[str, Any]:
        lengths, starts = self.lengths[users], self.h.indptr[users]
        if self.causal:  # the watches before the target
            h = pos if self.max_history is None else np.minimum(pos, self.max_history)
            window, holds_target = pos - h, np.zeros(pos.shape, dtype=bool)
        else:  # the h most recent watches other than the target: shifted left by one if it holds it
            h = lengths - 1 if self.max_history is None else np.minimum(lengths - 1, self.max_history)
            holds_target = pos >= lengths - h
            window = np.where(holds_target, lengths - h - 1, lengths - h)
        offsets = np.cumsum(h) - h
        within = np.arange(h.sum(), dtype=np.int64) - np.repeat(offsets, h)
        positions = np.repeat(window, h) + within
        positions += (positions >= np.repeat(pos, h)) & np.repeat(holds_target, h)
        values = self.h.items[np.repeat(starts, h) + positions]
        history = SparseBatch(torch.from_numpy(values), torch.from_numpy(offsets))
        return {"history": history, "target": torch.from_numpy(self.h.items[starts + pos])}


class MultiTargetExamples(Dataset):
    """Training examples shaped like the ``held_out_users`` test: one per user, many targets at once.

    Each epoch, every user with at least two watches is one example: a fresh random ``target_fraction`` of their
    watches (at least one, at most all but one) are the targets and the rest, the ``max_history`` most recent
    when set, the input. One user vector then learns from every target, so an epoch trains on about
    ``target_fraction`` of all watches for the price of one history per user; with one target per example
    (:class:`TrainExamples`) that many targets would need that many history lookups.
    Batches: ``{"history": SparseBatch (B bags), "targets": SparseBatch (B bags)}``, built whole in
    :meth:`__getitems__`.
    """

    def __init__(self, histories: Histories, target_fraction: float, max_history: int | None) -> None:
        if not 0.0 < target_fraction < 1.0:
            raise ValueError(f"target_fraction must be in (0, 1), got {target_fraction}")
        self.h = histories
        self.lengths = histories.lengths()
        self.target_fraction = target_fraction
        self.max_history = max_history
        self.users = np.flatnonzero(self.lengths >= 2)
        if self.users.size == 0:
            raise ValueError("no user has two or more training watches: nothing to train on")

    def __len__(self) -> int:
        return int(self.users.size)

    def _targets_of(self, lengths: np.ndarray) -> np.ndarray:
        """Targets of a user with each length: ``round(target_fraction * L)`` (half up), in ``[1, L - 1]``."""
        return np.clip(np.floor(self.target_fraction * lengths + 0.5).astype(np.int64), 1, lengths - 1)

    def num_targets(self) -> int:
        """Target watches per epoch, over all examples."""
        return int(self._targets_of(self.lengths[self.users]).sum())

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        users = self.users[np.asarray(indices, dtype=np.int64)]
        lengths = self.lengths[users]
        n_target = self._targets_of(lengths)
        bag = np.repeat(np.arange(users.size), lengths)
        pos = np.arange(lengths.sum(), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        values = self.h.items[np.repeat(self.h.indptr[users], lengths) + pos]
        # torch's RNG: seeded by seed_everything, and distinct in every DataLoader worker
        rank = random_rank_in_rows(bag, torch.rand(pos.size, dtype=torch.float64).numpy())
        is_target = rank < np.repeat(n_target, lengths)
        n_input = lengths - n_target
        keep = n_input if self.max_history is None else np.minimum(n_input, self.max_history)
        # inputs stay in watch order; the last `keep` of them are the most recent
        input_rank = np.cumsum(~is_target) - np.repeat(np.cumsum(n_input) - n_input, lengths) - 1
        is_input = ~is_target & (input_rank >= np.repeat(n_input - keep, lengths))
        return {
            "history": SparseBatch(torch.from_numpy(values[is_input]), torch.from_numpy(np.cumsum(keep) - keep)),
            "targets": SparseBatch(
                torch.from_numpy(values[is_target]), torch.from_numpy(np.cumsum(n_target) - n_target)
            ),
        }


class EvalUsers(Dataset):
    """Evaluation users: the full input history (it is also what gets excluded), the held-out targets and the
    ``(B,)`` user IDs."""

    def __init__(self, inputs: Histories, targets: Histories, users: np.ndarray) -> None:
        self.inputs, self.targets, self.users = inputs, targets, users

    def __len__(self) -> int:
        return int(self.users.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        users = self.users[np.asarray(indices, dtype=np.int64)]
        return {
            "history": self.inputs.to_sparse_batch(users),
            "targets": self.targets.to_sparse_batch(users),
            "users": torch.from_numpy(users),
        }


def _drop_timestamps(split: RecommendationSplit) -> None:
    """Free the split's per-entry timestamps: nothing after the split reads them (8 bytes a watch)."""
    for name, value in vars(split).items():
        if isinstance(value, Histories) and value.timestamps is not None:
            setattr(split, name, replace(value, timestamps=None))


def _identity(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def _with_recent(batch: dict[str, Any], k: int) -> dict[str, Any]:
    """Add the last ``k`` watches of each (time-ordered) history as the ``user_features`` bag."""
    batch["user_features"] = recent_watches(batch["history"], k)
    return batch


class InteractionsDataModule(L.LightningDataModule, ABC):
    """Splits a watch log and serves recommendation batches; subclasses say where the log comes from.

    Training batches: ``{"history": SparseBatch (B bags), "target": LongTensor (B,)}``, or with
    ``target_fraction`` ``{"history": SparseBatch, "targets": SparseBatch}`` (B users, several targets each).
    Validation and test batches: ``{"history": SparseBatch, "targets": SparseBatch, "users": (B,) int64}`` (all
    held-out items of each user, and the user IDs, which key the per-user test results).

    Args:
        protocol: ``leave_last_out``: per user, the last watch is the test target and the one before it the
            validation target; test input = every earlier watch. ``global_time``: one calendar for all users
            (:func:`~jointembed.data.interactions.global_time_split`): training = the watches before the
            validation cut, validation targets = those up to the test cut (input: the user's training watches),
            test targets = those after it (input: every earlier watch); users with no earlier watch are left out
            of a stage, and items first watched after the validation cut stay in the catalogue (unseen in
            training). The movie world has no calendar (its times are each user's watch order), so there the cuts
            fall at the same watch count for every user. ``held_out_users``: ``held_out_fraction`` of the users
            (and as many for validation) are unseen in training; the latest ``holdout_fraction`` of each one's
            watches are targets, the rest the input.
        time_split: ``(validation, test)`` cuts of ``global_time``, as shares of the watches by time: with
            ``(0.8, 0.9)`` the earliest 80 % train, the next 10 % are validation targets, the last 10 % test
            targets (a watch exactly at a cut time falls after it).
        held_out_fraction: Share of users held out for test (and again for validation) with ``held_out_users``.
        holdout_fraction: Share of a held-out user's watches that are targets.
        batch_size: Training examples per batch.
        eval_batch_size: Users per validation/test batch.
        targets_per_user: Random targets drawn per user per epoch; ``None`` makes every watch a target once.
        max_history: Most recent watches kept in a training history; ``None`` keeps all.
        causal: Train on histories of the watches before the target only (next-watch prediction, what the
            ``leave_last_out`` test asks) instead of all the user's other watches.
        target_fraction: Train on one example per user per epoch whose targets are a random share of their
            watches, predicted together from the rest (:class:`MultiTargetExamples`, shaped like the
            ``held_out_users`` test). An epoch then covers that share of every watch as a target; on huge logs
            this learns far more per second than one target per example. Excludes ``targets_per_user`` and
            ``causal``; ``batch_size`` then counts users.
        recent_items: Also give the model the ``recent_items`` latest watches of every history as a bag of its
            own (batch key ``user_features``), so it can weigh what was watched last apart from the whole
            history; the model then needs ``num_user_features`` = the catalogue size (``null`` takes it from
            here: :attr:`num_user_features`). 0 turns it off. On
            ml-100k's leave-last-out test, 2 (chosen on validation) lifted HR@10 from 0.144 to 0.181.
        max_eval_users: Evaluate a seeded random sample of this many users (ranking a huge catalogue is the
            slow part of evaluation); ``None`` evaluates all.
        ease_l2: L2 weight of the EASE baseline (100 was best on ml-100k validation).
        ease_max_items: Skip EASE above this catalogue size: its dense item-item inverse needs ~24·N² bytes
            (10,000 items: 2.4 GB) and O(N³) time.
        num_workers: DataLoader workers.
        seed: Seed of the split and of the evaluation sample.
    """

    def __init__(
        self,
        protocol: Protocol = "leave_last_out",
        time_split: tuple[float, float] = (0.8, 0.9),
        held_out_fraction: float = 0.1,
        holdout_fraction: float = 0.2,
        batch_size: int = 256,
        eval_batch_size: int = 256,
        targets_per_user: int | None = None,
        max_history: int | None = None,
        causal: bool = False,
        target_fraction: float | None = None,
        recent_items: int = 0,
        max_eval_users: int | None = None,
        ease_l2: float = 100.0,
        ease_max_items: int = 10_000,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if protocol not in ("leave_last_out", "global_time", "held_out_users"):
            raise ValueError(f"protocol must be 'leave_last_out', 'global_time' or 'held_out_users', got {protocol!r}")
        if len(time_split) != 2 or not 0.0 < time_split[0] < time_split[1] < 1.0:
            raise ValueError(f"time_split must be (validation, test) quantiles with 0 < v < t < 1, got {time_split}")
        for name, value in (("targets_per_user", targets_per_user), ("max_history", max_history)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if target_fraction is not None:
            if not 0.0 < target_fraction < 1.0:
                raise ValueError(f"target_fraction must be in (0, 1) or None, got {target_fraction}")
            if targets_per_user is not None or causal:
                raise ValueError(
                    "target_fraction trains on one multi-target example per user: it cannot be combined with "
                    f"targets_per_user={targets_per_user} or causal={causal}; set those to null/false"
                )
        if recent_items < 0:
            raise ValueError(f"recent_items must be >= 0, got {recent_items}")
        check_at_least("batch_size", batch_size, 1)
        check_at_least("eval_batch_size", eval_batch_size, 1)
        check_at_least("num_workers", num_workers, 0)
        self.target_fraction = target_fraction
        self.recent_items = recent_items
        self.protocol, self.held_out_fraction, self.holdout_fraction = protocol, held_out_fraction, holdout_fraction
        self.time_split = (float(time_split[0]), float(time_split[1]))
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.targets_per_user, self.max_history, self.max_eval_users = targets_per_user, max_history, max_eval_users
        self.ease_l2, self.ease_max_items, self.num_workers, self.seed = ease_l2, ease_max_items, num_workers, seed
        self.causal = causal
        self.interactions: Interactions | None = None
        self.split: RecommendationSplit | None = None
        self.item_counts: np.ndarray | None = None

    @abstractmethod
    def load_interactions(self) -> Interactions:
        """The watch log: each source (a reader, a generator) implements this."""

    @property
    def num_items(self) -> int | None:
        """Catalogue size, once the data is loaded."""
        return None if self.interactions is None else self.interactions.num_items

    @property
    def num_user_features(self) -> int | None:
        """Size of the table the ``user_features`` bags index: the catalogue size with ``recent_items`` (the
        recent-watches bag holds item IDs), 0 without (``None`` until the data is loaded)."""
        return self.num_items if self.recent_items else 0

    @property
    def item_titles(self) -> list[str] | None:
        """Title of each item ID, when the source has titles."""
        return None if self.interactions is None else self.interactions.item_titles

    @property
    def item_keys(self) -> list[int | str] | None:
        """Raw key of each item ID (e.g. MovieLens movie IDs), when the source has a vocabulary."""
        if self.interactions is None or self.interactions.item_vocab is None:
            return None
        return self.interactions.item_vocab.values

    @property
    def user_keys(self) -> list[int | str] | None:
        """Raw key of each user ID (e.g. MovieLens user IDs), when the source has a vocabulary."""
        if self.interactions is None or self.interactions.user_vocab is None:
            return None
        return self.interactions.user_vocab.values

    @property
    def item_metadata(self) -> dict[str, list[Any]] | None:
        """``{"watches": N training watches per item}``, kept with the exported model for maps of the item space
        (``None`` until the data is loaded)."""
        return None if self.item_counts is None else {"watches": self.item_counts.tolist()}

    def setup(self, stage: str | None = None) -> None:
        """Load and split once (every stage shares the split; a recommendation task calls this before the run to
        size its model, and Lightning's later calls do nothing)."""
        if self.split is not None:
            return
        self.interactions = self.load_interactions()
        self.split = self._make_split(self.interactions)
        _drop_timestamps(self.split)
        self.item_counts = np.bincount(self.split.train.items, minlength=self.interactions.num_items)

    def _make_split(self, interactions: Interactions) -> RecommendationSplit:
        if self.protocol == "leave_last_out":
            train, val, test = temporal_split(interactions, n_val=1, n_test=1)
            test_input = train.concat_rows(val)
            val_users = np.flatnonzero(val.lengths() > 0)
            test_users = np.flatnonzero(test.lengths() > 0)
            split = RecommendationSplit(train, train, val, val_users, test_input, test, test_users)
        elif self.protocol == "global_time":
            g = global_time_split(interactions, *self.time_split)
            rank_zero_info(g.summary())
            split = RecommendationSplit(g.train, g.train, g.val, g.val_users, g.test_input(), g.test, g.test_users)
        else:
            s = held_out_users(
                interactions,
                self.held_out_fraction,
                seed=self.seed,
                holdout_fraction=self.holdout_fraction,
                val_fraction=self.held_out_fraction,
            )
            split = RecommendationSplit(
                s.train, s.val_fold_in, s.val_targets, s.val_users, s.test_fold_in, s.test_targets, s.test_users
            )
        rng = np.random.default_rng(self.seed)
        for name in ("val_users", "test_users"):
            users = getattr(split, name)
            if self.max_eval_users is not None and users.size > self.max_eval_users:
                setattr(split, name, np.sort(rng.choice(users, self.max_eval_users, replace=False)))
        return split

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=partial(_with_recent, k=self.recent_items) if self.recent_items else _identity,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _split(self) -> RecommendationSplit:
        if self.split is None:
            self.setup()
        return self.split

    def train_dataloader(self) -> DataLoader:
        train = self._split().train
        if self.target_fraction is not None:
            data: Dataset = MultiTargetExamples(train, self.target_fraction, self.max_history)
        else:
            data = TrainExamples(train, self.targets_per_user, self.max_history, self.causal)
        return self._loader(data, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        s = self._split()
        return self._loader(EvalUsers(s.val_input, s.val_targets, s.val_users), self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        s = self._split()
        return self._loader(EvalUsers(s.test_input, s.test_targets, s.test_users), self.eval_batch_size, False)

    def predict_dataloader(self) -> DataLoader:
        """Recommendations for every test user from their full input history."""
        s = self._split()
        return self._loader(EvalUsers(s.test_input, s.test_targets, s.test_users), self.eval_batch_size, False)

    def baseline_metrics(self, k: int = 10) -> dict[str, float]:
        """Test metrics of the popularity and EASE baselines on this module's split, keyed like the model's.

        Both are fit on everything the model may see before test (train, plus validation watches with
        ``leave_last_out`` and ``global_time``) and rank the full catalogue with watched items excluded. EASE is
        skipped (its keys are absent) above ``ease_max_items``, where its dense item-item matrix does not fit.
        """
        s = self._split()
        result: dict[str, float] = {}
        for name, top in self._baseline_top(k).items():
            metrics = evaluate_rankings(top, s.test_targets, s.train.num_items, ks=[k], users=s.test_users)
            for metric in RANKING_METRICS:
                result[f"test/baseline_{name}/{metric}@{k}"] = metrics[f"{metric}@{k}"]
        return result

    def baseline_per_user(self, k: int = 10) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """Per-user HR@k and NDCG@k of the baselines of :meth:`baseline_metrics` (fit once for both), for paired
        comparisons with a model scored on the same users.

        Returns:
            ``(users, {name: {"hr@k": (U,), "ndcg@k": (U,)}})``: the ``(U,)`` test user IDs and each baseline's
            values for them, in that order (NaN for a user without a target).
        """
        s = self._split()
        rows = s.test_targets.select(s.test_users)
        per_user = {
            name: {
                f"hr@{k}": np.asarray(hit_rate_at_k(top, rows, k, per_user=True)),
                f"ndcg@{k}": np.asarray(ndcg_at_k(top, rows, k, per_user=True)),
            }
            for name, top in self._baseline_top(k).items()
        }
        return s.test_users, per_user

    def _baseline_top(self, k: int) -> dict[str, np.ndarray]:
        """Each baseline's ``(U, k)`` top items for the test users, computed once per split and k."""
        s = self._split()
        cache = self.__dict__.setdefault("_baseline_tops", {})
        if k in cache and cache[k][0] is s:
            return cache[k][1]
        # per-user and global time splits: everything before the test targets; held-out users: the other users
        fit_on = s.train if self.protocol == "held_out_users" else s.test_input
        baselines: dict[str, Any] = {"popularity": PopularityRecommender()}
        if s.train.num_items <= self.ease_max_items:
            baselines["ease"] = EASE(l2=self.ease_l2, max_items=self.ease_max_items)
        tops = {
            name: np.asarray(b.fit(fit_on).recommend(s.test_input, s.test_users, k=k)) for name, b in baselines.items()
        }
        cache[k] = (s, tops)
        return tops


class MovieLensDataModule(InteractionsDataModule):
    """MovieLens from the folder a user downloaded (100K ``u.data``, 1M ``ratings.dat`` or ``ratings.csv``).

    MovieLens may not be redistributed, so jointembed never ships it: give the folder's path
    (``datasets/download_movielens.py`` fetches it for you where the internet is reachable).

    Args:
        path: Folder holding the ratings (and, for titles, the movies) file.
        min_rating: Keep only ratings >= this as watches; ``None`` keeps every rating.
        **kwargs: Split and loader settings of :class:`InteractionsDataModule`.
    """

    def __init__(self, path: str, min_rating: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path, self.min_rating = path, min_rating

    def load_interactions(self) -> Interactions:
        """Read the ratings as watches, deduplicated (a re-watch would otherwise be hidden by 'exclude seen')."""
        return read_movielens(self.path, min_rating=self.min_rating).deduplicate()


class MovieWorldDataModule(InteractionsDataModule):
    """A synthetic movie world (see :func:`~jointembed.data.movie_world.generate_movie_world`).

    Args:
        num_movies: Catalogue size.
        num_users: Number of users.
        num_hidden_aspects: Latent aspects beyond children↔adult and blockbuster↔arthouse.
        mean_watches: Mean watches per user.
        popularity_exponent: Zipf exponent of movie popularity (larger = longer head).
        pool_factor: Candidates drawn per watch when sampling (larger is closer to exact, slower to generate).
        temperature: Softmax temperature of taste affinity (smaller makes taste matter more; see the generator).
        world_seed: Seed of the generated world.
        genre_accuracy: How often a movie's generated genre words match the sign of its named aspects (0.5: no
            information; its titles and genres never change the watches).
        **kwargs: Split and loader settings of :class:`InteractionsDataModule`.
    """

    def __init__(
        self,
        num_movies: int = 2000,
        num_users: int = 3000,
        num_hidden_aspects: int = 6,
        mean_watches: float = 20.0,
        popularity_exponent: float = 1.0,
        pool_factor: int = 8,
        temperature: float = 1.0,
        world_seed: int = 0,
        genre_accuracy: float = 0.75,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive("temperature", temperature)
        self.world_args = {
            "genre_accuracy": genre_accuracy,
            "num_movies": num_movies,
            "num_users": num_users,
            "num_hidden_aspects": num_hidden_aspects,
            "mean_watches": mean_watches,
            "popularity_exponent": popularity_exponent,
            "pool_factor": pool_factor,
            "temperature": temperature,
            "seed": world_seed,
        }
        self.world: MovieWorld | None = None

    def load_interactions(self) -> Interactions:
        """Generate the world (kept in ``self.world`` with its true aspects)."""
        self.world = generate_movie_world(**self.world_args)
        return self.world.interactions

    @property
    def item_metadata(self) -> dict[str, list[Any]] | None:
        """The training watches and each movie's true aspects (``children_adult``, ``blockbuster_arthouse``,
        ``hidden_0``...; 4 decimals), so a map of the exported model can be coloured by them."""
        metadata = super().item_metadata
        if metadata is None or self.world is None:
            return metadata
        aspects = np.round(self.world.movie_aspects.astype(np.float64), 4)
        return metadata | {name: aspects[:, i].tolist() for i, name in enumerate(self.world.aspect_names)}
