"""Training the two-tower cold-start recommender: a user's history against the movie watched next, contrasted
with in-batch and uniformly sampled movies (log-Q corrected), and each movie's ID bound to its content.

Validation and test measure every segment of :mod:`jointembed.data.coldstart` (warm, cold, cold in all,
cold users) beside the baselines; the test writes the table into ``test_metrics.json`` and prints it.
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from jointembed.config import check_at_least, check_non_negative, check_positive
from jointembed.data.coldstart import format_table
from jointembed.histories import Histories
from jointembed.models.recommender import recent_watches
from jointembed.models.two_tower import TwoTowerRecommender
from jointembed.pretrained import open_checkpoint, read_lightning_checkpoint

__all__ = ["ColdStartTask", "TwoTowerScorer"]

CHECKPOINT_KEY = "jointembed_two_tower"
#: The ``(γ, λ)`` tried by :meth:`ColdStartTask.calibrate_short_histories`, no change first: the personal part of a
#: short history times ``γ``, and ``λ`` times the movies' log counts added.
SHORT_HISTORY_GRID = tuple((g, lam) for g in (1.0, 0.5, 0.25, 0.0) for lam in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0))
#: The values of ``β`` (how far the words' predicted popularity of a movie without ID is trusted) tried by
#: :meth:`ColdStartTask.calibrate_cold`: 0 (every such movie at the warm movies' mean popularity: the words' taste
#: alone ranks them), then from 1/16 to 2 (twice what the words predict).
COLD_POPULARITY_GRID = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0, 1.5, 2.0)


class TwoTowerScorer:
    """A trained two-tower model as a scorer (``score(histories, users) -> (len(users), N)``, the baselines'
    interface): the queries of the histories' rows (:meth:`TwoTowerRecommender.user_queries`) against fixed movie
    rows ``(N, D + 1 [+ V])`` (:meth:`TwoTowerRecommender.item_rows`)."""

    scores_cold_items = True

    def __init__(self, model: TwoTowerRecommender, item_rows: torch.Tensor, texts: list[str]) -> None:
        self.model, self.items, self.texts = model, item_rows, texts

    @torch.no_grad()
    def score(self, histories: Histories, users: np.ndarray) -> torch.Tensor:
        bags = histories.to_sparse_batch(users).to(self.items.device)
        recent = recent_watches(bags, self.model.recent_items) if self.model.recent_items else None
        was_training = self.model.training
        self.model.eval()
        try:
            return (self.model.user_queries(bags, recent, self.texts) @ self.items.T).float().cpu()
        finally:
            self.model.train(was_training)


def _first_best(scores: dict[Any, float]) -> Any:
    """The key of the highest score, the first in order among equals (a grid lists its no-change value first)."""
    return max(scores, key=lambda key: (scores[key], -list(scores).index(key)))


def seen_candidates(history: Any, candidates: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` bool: candidate ``c`` (sorted IDs) is in history bag ``b`` and is not that example's target
    column ``column[b]``."""
    values = history.values.to(candidates.device)
    bag = history.bag_ids().to(candidates.device)
    position = torch.searchsorted(candidates, values).clamp_max(len(candidates) - 1)
    found = candidates[position] == values
    seen = torch.zeros(len(column), len(candidates), dtype=torch.bool, device=candidates.device)
    seen[bag[found], position[found]] = True
    seen[torch.arange(len(column), device=column.device), column] = False
    return seen


class ColdStartTask(L.LightningModule):
    """Trains a :class:`~jointembed.models.two_tower.TwoTowerRecommender` on a cold-start data module
    (:class:`~jointembed.data.coldstart.MovieLensColdStartDataModule` or the movie-world one).

    Each training example is ``(history, next movie)``. Its candidates are the batch's distinct targets and
    ``num_negatives`` warm movies drawn uniformly; each candidate's logit ``cos(u, v_j) / τ`` is corrected by
    ``-log Q_j``, the expected number of times ``j`` is among the candidates (``B · p_j`` as an in-batch target,
    ``p_j`` its training frequency, plus ``S / N_warm`` as a sample), so popular movies are not pushed down for
    being drawn more often (Yi et al. 2019). The binding loss is InfoNCE between the batch movies' ID embeddings
    and their content vectors, so both sit at the same place in the space.

    Args:
        model: The two-tower model (its ``num_items`` may be ``None``: taken from the data).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        num_negatives: Uniformly sampled warm movies per batch.
        bind_weight: Weight of the binding loss.
        eval_k: Cut-off of the ranking metrics.
        taste_weight: Weight of a third term: the batch's users against the content vectors alone of the batch's
            movies, without log-Q correction, so content learns taste (what a user watches more than its
            popularity says) rather than popularity, which content mostly cannot tell. On ml-100k 1.0 took cold
            Recall@10 from 0.160 to 0.179 and warm from 0.243 to 0.223; validation could not tell the two apart.
        exclude_seen: Leave the movies of a user's own history out of that user's candidates (as the ranking at
            test does). A watched movie is never the next watch, so as a negative it teaches that being like
            the history is bad: the wide part's profile affinity, highest for the history's own movies, then
            learns a negative weight.
        calibrate_cold: With the wide part, calibrate at each validation, on data no model trained on, what
            training cannot learn in sample: the predicted popularity of movies without ID, on the validation
            cold movies (:meth:`calibrate_cold`), and the blend of a short history with popularity, on the
            validation cold users (:meth:`calibrate_short_histories`). The checkpoint keeps the values chosen.
    """

    def __init__(
        self,
        model: TwoTowerRecommender,
        lr: float = 0.005,
        weight_decay: float = 0.0,
        num_negatives: int = 256,
        bind_weight: float = 1.0,
        eval_k: int = 10,
        taste_weight: float = 0.0,
        exclude_seen: bool = False,
        calibrate_cold: bool = True,
    ) -> None:
        super().__init__()
        check_positive("lr", lr)
        check_non_negative("weight_decay", weight_decay)
        check_at_least("num_negatives", num_negatives, 0)
        check_non_negative("bind_weight", bind_weight)
        check_at_least("eval_k", eval_k, 1)
        check_non_negative("taste_weight", taste_weight)
        self.taste_weight, self.exclude_seen, self.calibrate = taste_weight, exclude_seen, calibrate_cold
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.lr, self.weight_decay, self.num_negatives = lr, weight_decay, num_negatives
        self.bind_weight, self.eval_k = bind_weight, eval_k
        self._data: Any = None
        self.item_texts: list[str] = []
        self._test_metrics: dict[str, float] = {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the model's configuration (JSON) in the checkpoint, so it loads without the recipe."""
        checkpoint[CHECKPOINT_KEY] = self.model.get_config()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, **kwargs: Any) -> ColdStartTask:  # type: ignore[override]
        """Restore a task from a checkpoint written by ``jointembed fit``; the model is rebuilt from the
        configuration the checkpoint carries unless ``model=`` is given. Read with ``weights_only=True``."""
        if "model" not in kwargs:
            with open_checkpoint(checkpoint_path) as checkpoint:
                config = checkpoint.get(CHECKPOINT_KEY)
                if config is None:
                    raise ValueError(
                        f"{checkpoint_path}: no model configuration inside; pass model=TwoTowerRecommender(...)"
                    )
                kwargs["model"] = TwoTowerRecommender.from_config(config)
        else:
            read_lightning_checkpoint(checkpoint_path)  # refuse a file that is not weights-only before Lightning
        kwargs["weights_only"] = True
        return super().load_from_checkpoint(checkpoint_path, **kwargs)

    # ----- data ---------------------------------------------------------------------------------------------

    def bind_data(self, datamodule: Any) -> None:
        """Size the model from the data, take each movie's content text, which movies are warm (watched in
        training) and their training frequencies; report movies without content."""
        if self._data is not None and self._data() is datamodule:
            return
        if self.model.recent_items != datamodule.recent_items:
            raise ValueError(
                f"the model embeds the {self.model.recent_items} latest watches (model recent_items) but the data "
                f"adds {datamodule.recent_items} (data recent_items): set both to the same number"
            )
        datamodule.setup("fit")
        self._data = weakref.ref(datamodule)
        self.model.set_num_items(datamodule.num_items)
        self.item_texts = list(datamodule.item_texts)
        counts = torch.as_tensor(datamodule.item_counts, dtype=torch.float64)
        warm = torch.as_tensor(datamodule.cold.warm_items) & (counts > 0)
        self.register_buffer("warm", warm, persistent=False)
        self.register_buffer("target_probs", (counts / counts.sum()).float(), persistent=False)
        self.register_buffer("warm_ids", warm.nonzero().squeeze(1), persistent=False)
        if self.model.wide is not None:  # the log counts a short history's blend ranks by (the prior's scale)
            self.model.wide.item_log_counts.copy_(torch.log(counts.clamp_min(1.0)).float())
        empty = datamodule.cold.no_content
        if len(empty):
            shown = ", ".join(str(datamodule.item_titles[i] if datamodule.item_titles else i) for i in empty[:5])
            warnings.warn(
                f"{len(empty)} movie(s) have no content (e.g. {shown}): they are never cold, and their vector is "
                "their ID embedding alone",
                stacklevel=2,
            )
        self.no_content = torch.zeros(len(self.item_texts), dtype=torch.bool)
        self.no_content[torch.as_tensor(empty, dtype=torch.long)] = True
        self.model.cache_content(self.item_texts)
        self.model.fit_wide(self.item_texts, warm, counts)

    def setup(self, stage: str) -> None:
        if self.trainer.datamodule is not None:
            self.bind_data(self.trainer.datamodule)

    def _texts(self, ids: torch.Tensor) -> list[str]:
        return [self.item_texts[i] for i in ids.tolist()]

    # ----- training -----------------------------------------------------------------------------------------

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        model = self.model
        users = model.user_vectors(batch["history"], batch.get("user_features"), self.item_texts)
        target = batch["target"]
        sampled = self.warm_ids[torch.randint(len(self.warm_ids), (self.num_negatives,), device=self.device)]
        candidates = torch.unique(torch.cat([target, sampled]))
        column = torch.searchsorted(candidates, target)
        keep = self.warm[candidates] & (torch.rand(len(candidates), device=self.device) >= model.id_dropout)
        vectors, bias = model.items(candidates, self._texts(candidates), keep)
        expected = len(target) * self.target_probs[candidates] + self.num_negatives / len(self.warm_ids)
        logits = model.scores(users, batch["history"], vectors, bias, candidates, keep) - torch.log(expected)
        if self.exclude_seen:
            logits = logits.masked_fill(seen_candidates(batch["history"], candidates, column), float("-inf"))
        recommend = F.cross_entropy(logits, column)
        distinct = torch.unique(target)
        content = model.content_vectors(self._texts(distinct), distinct)
        with_text = ~self.no_content.to(distinct.device)[distinct]  # a movie without content has nothing to bind
        pairs = content[with_text] @ model.id_vectors(distinct[with_text]).T / model.temperature
        labels = torch.arange(len(pairs), device=self.device)
        bind = (F.cross_entropy(pairs, labels) + F.cross_entropy(pairs.T, labels)) / 2 if len(pairs) else pairs.sum()
        loss = recommend + self.bind_weight * bind
        if self.taste_weight:
            # content alone against the other examples' movies, uncorrected: in-batch negatives are drawn as
            # often as movies are watched, so this ranks by taste (p(j|u) / p(j)), which content can carry,
            # rather than by popularity, which it mostly cannot
            # (with the wide part, its affinity for movies without ID joins: the words learn taste too)
            cold = torch.zeros(len(distinct), dtype=torch.bool, device=distinct.device)
            no_bias = torch.zeros(len(distinct), dtype=content.dtype, device=content.device)
            taste_logits = model.scores(users, batch["history"], content, no_bias, distinct, cold)
            taste_column = torch.searchsorted(distinct, target)
            if self.exclude_seen:
                seen = seen_candidates(batch["history"], distinct, taste_column)
                taste_logits = taste_logits.masked_fill(seen, float("-inf"))
            taste = F.cross_entropy(taste_logits, taste_column)
            loss = loss + self.taste_weight * taste
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {float(loss)} at step {self.global_step}")
        self.log_dict({"train/loss": loss, "train/recommend": recommend, "train/bind": bind}, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    # ----- evaluation ---------------------------------------------------------------------------------------

    def scorer(self) -> TwoTowerScorer:
        """The model as a scorer over every movie: warm movies by ID + content, the others by content alone
        (movies without content and without watches are left at their content-free ID vector and never
        recommended as cold)."""
        vectors, biases = self.model.catalogue(self.item_texts, self.warm.cpu())
        every = torch.arange(len(self.item_texts), device=vectors.device)
        rows = self.model.item_rows(vectors, biases, self.item_texts, self.warm.to(vectors.device), every)
        return TwoTowerScorer(self.model, rows, self.item_texts)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Nothing per batch: the whole validation runs at the end of the epoch, on the split itself."""

    @torch.no_grad()
    def calibrate_cold(self) -> dict[float, float]:
        """Calibrate the wide part's popularity of movies without ID (:meth:`WideContent.calibrate
        <jointembed.models.wide.WideContent.calibrate>`): map the warm movies' log watch counts to their learned
        biases, then keep the ``β`` of :data:`COLD_POPULARITY_GRID` with the best validation cold Recall@k (the
        first of equals). Returns ``{β: recall}``. The movies' rows are linear in ``β`` (only movies without ID
        move), so two catalogue passes serve the whole grid. Nothing (``{}``) without the wide part or data."""
        wide = self.model.wide
        if wide is None or self._data is None:
            return {}
        data = self._data()
        counts = torch.as_tensor(np.asarray(data.item_counts), dtype=torch.float64)
        warm = self.warm.cpu()
        wide.cold_map[0] = math.nan  # the warm biases as trained
        _, biases = self.model.catalogue(self.item_texts, warm)
        rows = []
        for beta in (0.0, 1.0):
            wide.calibrate(torch.log(counts[warm].clamp_min(1.0)), biases[warm.to(biases.device)], beta)
            rows.append(self.scorer().items)
        slope = rows[1] - rows[0]
        recall = {}
        for beta in COLD_POPULARITY_GRID:
            scorer = TwoTowerScorer(self.model, rows[0] + beta * slope, self.item_texts)
            metrics = data.coldstart_metrics({"m": scorer}, self.eval_k, "val", False, segments=("cold",))
            recall[beta] = metrics[f"val_coldstart/cold/m/recall@{self.eval_k}"]
        wide.cold_popularity.fill_(_first_best(recall))
        return recall

    @torch.no_grad()
    def calibrate_short_histories(self) -> dict[tuple[float, float], float]:
        """Set the wide part's :attr:`~jointembed.models.wide.WideContent.short_map` to the ``(γ, λ)`` of
        :data:`SHORT_HISTORY_GRID` with the best Recall@k of the validation cold users (the first of equals),
        for histories up to the longest of their inputs; return ``{(γ, λ): recall}``. Nothing (``{}``) without
        the wide part, data or validation cold users."""
        wide = self.model.wide
        data = self._data() if self._data is not None else None
        if wide is None or data is None or not data.cold.val_cold_users.size:
            return {}
        longest = int(data.cold.val_cold_user_input.lengths()[data.cold.val_cold_users].max())
        scorer = self.scorer()  # the rows do not depend on γ, λ: only the queries do
        recall = {}
        for gamma, weight in SHORT_HISTORY_GRID:
            wide.short_map.copy_(torch.tensor([float(longest), gamma, weight]))
            metrics = data.coldstart_metrics({"m": scorer}, self.eval_k, "val", False, segments=("cold_users",))
            recall[gamma, weight] = metrics[f"val_coldstart/cold_users/m/recall@{self.eval_k}"]
        wide.short_map.copy_(torch.tensor([float(longest), *_first_best(recall)]))
        return recall

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self._data is None:
            return
        if self.calibrate and self.model.wide is not None:
            self.calibrate_cold()
            self.calibrate_short_histories()
            wide = self.model.wide
            self.log_dict({"val/cold_popularity": wide.cold_popularity, "val/short_gamma": wide.short_map[1],
                           "val/short_popularity": wide.short_map[2]})  # fmt: skip
        metrics = self._data().coldstart_metrics({"two_tower": self.scorer()}, self.eval_k, "val", baselines=False)
        k = self.eval_k
        warm = metrics[f"val_coldstart/warm/two_tower/recall@{k}"]
        cold = metrics[f"val_coldstart/cold/two_tower/recall@{k}"]
        logged = {
            f"val/warm_recall@{k}": warm,
            f"val/cold_recall@{k}": cold,
            f"val/ndcg@{k}": metrics[f"val_coldstart/warm/two_tower/ndcg@{k}"],
            f"val/mean_recall@{k}": (warm + cold) / 2,
        }
        if (users := f"val_coldstart/cold_users/two_tower/recall@{k}") in metrics:
            logged[f"val/cold_user_recall@{k}"] = metrics[users]
        self.log_dict(logged, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Nothing per batch: the whole test runs at the end of the epoch, on the split itself."""

    def on_test_epoch_end(self) -> None:
        metrics = self._data().coldstart_metrics({"two_tower": self.scorer()}, self.eval_k, "test")
        self._test_metrics = metrics
        # the model's recall per segment as logged metrics; the whole table goes to test_metrics.json
        mine = {k: v for k, v in metrics.items() if "/two_tower/recall@" in k and not math.isnan(v)}
        self.log_dict(mine)
        if self.trainer.is_global_zero:
            print(format_table(metrics, self.eval_k))

    def extra_test_metrics(self) -> dict[str, Any]:
        """Every segment's metrics of the model and the baselines, and the table as text, for
        ``test_metrics.json``."""
        if not self._test_metrics:
            return {}
        return {**self._test_metrics, "coldstart_table": format_table(self._test_metrics, self.eval_k)}

    # ----- export -------------------------------------------------------------------------------------------

    def export_pretrained(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the model with its catalogue: every movie's key, title, content text and whether it is warm, so
        a loaded model ranks warm and cold movies together."""
        data = self._data() if self._data is not None else None
        keys = data.item_keys if data is not None and data.item_keys is not None else list(range(len(self.warm)))
        titles = data.item_titles if data is not None else None
        extra = {
            "item_keys": list(keys),
            "item_titles": list(titles) if titles is not None else None,
            "item_texts": self.item_texts,
            "warm": self.warm.cpu().tolist(),
            "test_metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))},
        }
        return self.model.save_pretrained(folder, extra)
