"""Training a :class:`~jointembed.models.recommender.Recommender`: softmax losses, LazyAdam, ranking metrics.

Batches are dicts. Training: ``{"history": SparseBatch, "target": (B,) int64}``, one target item per example
(a user with several held-out items gives several examples), or ``{"history": SparseBatch, "targets":
SparseBatch}``, several targets per example sharing its user vector (the loss is the mean over all targets);
plus ``"user_features"`` (SparseBatch) and ``"dense"`` ``(B, F)`` when the model takes them. Validation and
test: ``{"history": SparseBatch, "targets": SparseBatch}``, the held-out items of each user (plus the optional
features). The whole catalogue is ranked for each user, the history excluded, and HR@k, Recall@k, NDCG@k and
catalogue coverage@k are logged per epoch.

What the task takes from its data module, each through a small runtime-checkable Protocol (an
:class:`~jointembed.data.recommendation.InteractionsDataModule` offers all four): the table sizes
(:class:`CatalogueSizes`), the training count of each item for a ``unigram`` proposal (:class:`ItemCounts`), the
baselines' test metrics (:class:`Baselines`) and the item keys and titles of the exported folder
(:class:`ItemCatalogue`), with any per-item metadata to keep beside them (:class:`ItemMetadata`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from lightning.pytorch import LightningModule

from jointembed.callbacks import refuse_unsized_copy
from jointembed.config import check_at_least, check_non_negative, check_positive
from jointembed.io import atomic_write_text
from jointembed.losses.sampled_softmax import CatalogueLoss, catalogue_losses, create_catalogue_loss
from jointembed.metrics.ranking import evaluate_rankings
from jointembed.metrics.significance import PerUserResults, format_comparisons, per_user_csv
from jointembed.models.recommender import Recommender
from jointembed.optim import LazyAdam, RowWiseAdagrad
from jointembed.pretrained import model_card
from jointembed.registry import get_loss_class
from jointembed.sparse import SparseBatch

__all__ = ["RecommendationTask", "CatalogueSizes", "ItemCounts", "Baselines", "ItemCatalogue", "ItemMetadata"]

OptimizerName = Literal["lazy_adam", "rowwise_adagrad"]
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"lazy_adam": LazyAdam, "rowwise_adagrad": RowWiseAdagrad}


@runtime_checkable
class CatalogueSizes(Protocol):
    """The sizes of the recommender's tables, as the data knows them. Both may be ``None`` until the data is
    loaded: :meth:`RecommendationTask.bind_data` then calls the data module's ``setup("fit")`` first, so that
    ``setup`` must be idempotent (Lightning calls it again).

    Attributes:
        num_items: Catalogue size N (item IDs ``0..N-1``).
        num_user_features: Size of the table the batches' ``user_features`` bags index (0 when the batches
            have none).
    """

    @property
    def num_items(self) -> int | None: ...

    @property
    def num_user_features(self) -> int | None: ...


@runtime_checkable
class ItemCounts(Protocol):
    """Training count of each item, for a loss whose ``unigram`` proposal follows popularity.

    Attributes:
        item_counts: ``(N,)`` counts (a tensor or an array), or ``None`` until the data is loaded.
    """

    item_counts: torch.Tensor | np.ndarray | None


@runtime_checkable
class Baselines(Protocol):
    """Baselines scored on the same test split, logged beside the model's test metrics."""

    def baseline_metrics(self, k: int) -> dict[str, float]:
        """Test metrics of each baseline at cut-off ``k``, keyed ``test/baseline_<name>/<metric>@<k>``."""
        ...


@runtime_checkable
class PerUserBaselines(Protocol):
    """Baselines that also give their test results per user, for paired comparisons with the model."""

    def baseline_per_user(self, k: int) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """``(users, {name: {"hr@k": (U,), "ndcg@k": (U,)}})``: the test user IDs and each baseline's values."""
        ...


@runtime_checkable
class ColdStartEvaluation(Protocol):
    """A data module with a cold-start split (:class:`~jointembed.data.coldstart.ColdStartData`)."""

    recent_items: int

    def coldstart_metrics(
        self, scorers: dict[str, Any], k: int = 10, stage: str = "test", baselines: bool = True
    ) -> dict[str, Any]: ...


class RecommenderScorer:
    """A :class:`Recommender` as a scorer (``score(histories, users) -> (len(users), N)``, the baselines'
    interface); it has no vector for a movie it never saw, so cold-start tables leave it out of cold segments."""

    scores_cold_items = False

    def __init__(self, model: Recommender, recent_items: int = 0) -> None:
        self.model, self.recent_items = model, recent_items

    @torch.no_grad()
    def score(self, histories: Any, users: np.ndarray) -> torch.Tensor:
        from jointembed.models.recommender import recent_watches

        bags = histories.to_sparse_batch(users).to(self.model.item_table.device)
        recent = recent_watches(bags, self.recent_items) if self.recent_items else None
        return self.model.logits(self.model.serving_user_vectors(bags, recent)).float().cpu()


@runtime_checkable
class ItemCatalogue(Protocol):
    """What a data module tells an exported recommender about its items
    (:class:`~jointembed.data.recommendation.InteractionsDataModule` is one).

    Attributes:
        item_keys: Raw key of each item ID (e.g. MovieLens movie IDs), or ``None`` when the IDs are the keys.
        item_titles: Title of each item ID, or ``None``.
        recent_items: Latest watches the data module adds as the user-feature bag (0 for none).
    """

    @property
    def item_keys(self) -> list[int | str] | None: ...

    @property
    def item_titles(self) -> list[str] | None: ...

    recent_items: int


@runtime_checkable
class ItemMetadata(Protocol):
    """Per-item facts a data module gives the exported folder, for maps of the item space (``jointembed export``
    colours the items by them).

    Attributes:
        item_metadata: ``{column: N values in ID order}`` (numbers, strs or ``None``; e.g. training watches, a
            synthetic world's true aspects), or ``None``.
    """

    @property
    def item_metadata(self) -> dict[str, Any] | None: ...


class RecommendationTask(LightningModule):
    """Trains a :class:`~jointembed.models.recommender.Recommender` to predict a held-out item from a history.

    The loss is chosen by its registered name with its own arguments, as in the contrastive task: ``full_softmax``
    over the catalogue (exact; catalogues up to ~100k items), ``sampled_softmax`` (``num_samples`` negatives from
    a ``proposal``, log-Q corrected) or ``in_batch_softmax`` (the other examples' targets as negatives, corrected
    by popularity under the ``unigram`` proposal); see :mod:`jointembed.losses.sampled_softmax`. A ``unigram``
    proposal (the default) needs training counts per item: the data module's (:class:`ItemCounts`), read in
    :meth:`bind_data`, or :meth:`set_item_counts`.

    Sizes the model leaves to the data (``num_items: null``, ``num_user_features: null``) are taken from the
    data module in :meth:`bind_data`, before the run; sizes it gives are checked against the data there.

    One optimiser steps everything: the item tables (and the user-feature table) at ``lr``, with lazy row updates
    when their gradients are sparse, and the tower at ``dense_lr`` with ``weight_decay``. It is
    :class:`~jointembed.optim.LazyAdam` (AdamW on the tower) or :class:`~jointembed.optim.RowWiseAdagrad`
    (one accumulator per table row: 1/64 of Adam's state for 32-dimensional rows; ordinary Adagrad on the tower,
    which wants a ``dense_lr`` about 10x Adam's).

    Logged: ``train/loss``; ``val/`` and ``test/`` ``hr@k``, ``recall@k``, ``ndcg@k`` (means over the users with
    targets, as defined in :mod:`jointembed.metrics.ranking`) and ``coverage@k`` (share of the catalogue in at
    least one top-k list of the epoch).

    Args:
        model: The recommender (in a recipe: ``class_path: jointembed.models.recommender.Recommender``).
        loss: Registered name of a catalogue loss: ``full_softmax``, ``sampled_softmax`` or ``in_batch_softmax``.
        loss_config: The loss's own constructor arguments, e.g. ``{"num_samples": 500, "proposal": "uniform"}``
            (the catalogue size, item counts and sparse gradients come from the model and the data).
        lr: Learning rate of the embedding tables.
        dense_lr: Learning rate of the tower.
        weight_decay: Weight decay of the tower (the tables are not decayed): decoupled under ``lazy_adam``, an
            L2 penalty under ``rowwise_adagrad``.
        eval_k: Length of the ranked lists evaluated.
        compare_baselines: At the end of a test, also log the popularity and EASE baselines' metrics on the
            same split (``test/baseline_<name>/...``) when the data module offers them (:class:`Baselines`).
        optimizer: ``lazy_adam`` or ``rowwise_adagrad`` (see above).
    """

    def __init__(
        self,
        model: Recommender,
        loss: str = "full_softmax",
        loss_config: dict[str, Any] | None = None,
        lr: float = 0.01,
        dense_lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_k: int = 10,
        compare_baselines: bool = True,
        optimizer: OptimizerName = "lazy_adam",
    ) -> None:
        super().__init__()
        check_positive("lr", lr)
        check_positive("dense_lr", dense_lr)
        check_non_negative("weight_decay", weight_decay)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if loss not in catalogue_losses():
            raise ValueError(f"loss must be a registered catalogue loss {catalogue_losses()}, got {loss!r}")
        check_at_least("eval_k", eval_k, 1)
        if model.sized and eval_k > model.num_items:  # else bind_data checks it once the model is sized
            raise ValueError(f"eval_k must be in [1, {model.num_items}] (the catalogue size), got {eval_k}")
        # The model is not a hyperparameter: its weights are in the checkpoint, its configuration in config.yaml.
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.loss_name = loss
        self.loss_config = dict(loss_config or {})
        self.lr = lr
        self.dense_lr = dense_lr
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer
        self.eval_k = eval_k
        self.compare_baselines = compare_baselines
        self.item_counts: torch.Tensor | None = None
        self._needs_counts = get_loss_class(loss).needs_counts(self.loss_config)
        # Built once the model is sized and, for a unigram proposal, the counts are known.
        self.loss_fn: CatalogueLoss | None = None
        if model.sized and not self._needs_counts:
            self.loss_fn = self._build_loss(None)
        self._bound: Any = None  # the data module the model was sized from and checked against
        self._recommended: torch.Tensor | None = None

    def _build_loss(self, counts: torch.Tensor | None) -> CatalogueLoss:
        model = self.model
        return create_catalogue_loss(self.loss_name, model.num_items, counts, model.sparse, **self.loss_config)

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """Give the ``(N,)`` training counts of each item (for a ``unigram`` proposal) and rebuild the loss."""
        self.model.require_sizes()
        if callable(counts):
            raise TypeError("item_counts must be an (N,) tensor or array, not a method: expose it as an attribute")
        counts = torch.as_tensor(counts).flatten()
        if counts.numel() != self.model.num_items:
            raise ValueError(f"item_counts has {counts.numel()} entries but the model has {self.model.num_items} items")
        self.item_counts = counts
        self.loss_fn = self._build_loss(counts).to(self.device)

    def bind_data(self, datamodule: Any) -> None:
        """Size the model from the data module, check it against it and give the loss the item counts.

        Sizes the model leaves to the data (``None``) are read from a :class:`CatalogueSizes` data module, which
        is set up first when its sizes are not known yet; sizes the model was given must equal the data's.
        ``jointembed`` calls this before every run, so the model has its final shape before any callback copies
        it (e.g. weight averaging); ``setup`` calls it otherwise. Binding the same data module again does nothing.

        Raises:
            ValueError: A size given to the model that differs from the data's (both named), or a model whose
                sizes are left to the data and a data module that does not tell them.
        """
        if datamodule is self._bound:
            return
        if isinstance(datamodule, CatalogueSizes):
            if datamodule.num_items is None:
                datamodule.setup("fit")
            self._size_model(datamodule)
        elif not self.model.sized:
            raise ValueError(
                f"the model leaves num_items or num_user_features to the data (None), but the data module "
                f"{type(datamodule).__name__} does not tell them (num_items and num_user_features properties, "
                "see CatalogueSizes): give the sizes to the Recommender"
            )
        if self.eval_k > self.model.num_items:
            raise ValueError(f"eval_k must be in [1, {self.model.num_items}] (the catalogue size), got {self.eval_k}")
        if self.loss_fn is None:
            counts = datamodule.item_counts if isinstance(datamodule, ItemCounts) else None
            if counts is not None:
                self.set_item_counts(counts)
            elif not self._needs_counts:
                self.loss_fn = self._build_loss(None)
        self._bound = datamodule

    def _size_model(self, data: CatalogueSizes) -> None:
        num_items, num_user_features = data.num_items, data.num_user_features
        if num_items is None or num_user_features is None:
            raise ValueError(f"the data module {type(data).__name__} did not give its sizes after setup")
        config = self.model.config
        if config["num_items"] is not None and config["num_items"] != num_items:
            raise ValueError(
                f"the data has num_items={num_items} but the model was built with num_items={config['num_items']} "
                "(leave it null to take the data's)"
            )
        built = config["num_user_features"]
        if built is not None and built != num_user_features:
            recent = data.recent_items if isinstance(data, ItemCatalogue) else 0
            why = (
                f"the data module adds each history's {recent} latest watches as user features (recent_items="
                f"{recent}), so the model needs num_user_features={num_user_features} (the catalogue size)"
                if recent
                else f"the data's user features need num_user_features={num_user_features}"
            )
            raise ValueError(f"{why}, got {built} (leave it null to take the data's)")
        self.model.set_sizes(num_items, num_user_features)

    def setup(self, stage: str) -> None:
        """Bind the trainer's data module, unless that was done before the run (see :meth:`bind_data`)."""
        trainer = self._trainer
        datamodule = trainer.datamodule if trainer is not None else None
        if datamodule is not None:
            refuse_unsized_copy(trainer, self.model.sized)
            self.bind_data(datamodule)
        elif not self.model.sized:
            raise ValueError(
                "the model leaves num_items or num_user_features to the data (None) but the run has no data "
                "module: pass datamodule= or give the Recommender its sizes"
            )

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_bound"] = None  # a copy (e.g. a callback's averaged model) need not carry the whole data set
        return state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Size a model that leaves its sizes to the data from the checkpoint's tables, so that
        ``RecommendationTask.load_from_checkpoint(path, model=Recommender(None, ...))`` needs no data."""
        if self.model.sized:
            return
        state = checkpoint["state_dict"]
        features = next((v for k, v in state.items() if k.startswith("model.user_feature_embedding.")), None)
        self.model.set_sizes(len(state["model.output_bias"]), 0 if features is None else len(features))
        if self.loss_fn is None and not self._needs_counts:
            self.loss_fn = self._build_loss(None)

    def _loss_module(self) -> CatalogueLoss:
        self.model.require_sizes()
        if self.loss_fn is None:
            raise ValueError(
                f"loss={self.loss_name!r} with loss_config={self.loss_config} needs item counts (its proposal is "
                "'unigram'): give the data module an `item_counts` attribute ((num_items,) training counts), call "
                "task.set_item_counts(counts), or set loss_config's proposal to 'uniform'"
            )
        return self.loss_fn

    def forward(
        self, history: SparseBatch, user_features: SparseBatch | None = None, dense: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, d)`` user vectors."""
        return self.model(history, user_features, dense)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        users = self(batch["history"], batch.get("user_features"), batch.get("dense"))
        user_index = None
        if "targets" in batch:  # several targets per example: the loss scores each user's samples once
            targets: SparseBatch = batch["targets"]
            user_index, target = targets.bag_ids(), targets.values
        else:
            target = batch["target"]
        table, bias = self.model.item_table, self.model.item_bias
        loss = self._loss_module()(users, table, bias, target, user_index=user_index)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(target))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """``{"ids": (B, eval_k), "scores": (B, eval_k)}``: the top items of each user, history excluded."""
        users = self(batch["history"], batch.get("user_features"), batch.get("dense"))
        ids, scores = self.model.top_k(users, self.eval_k, batch["history"])
        return {"ids": ids, "scores": scores}

    def on_validation_epoch_start(self) -> None:
        self._recommended = None

    def on_test_epoch_start(self) -> None:
        self._recommended = None
        self._per_user: PerUserResults | None = PerUserResults(self.eval_k)
        self._significance: dict[str, Any] = {}

    def on_validation_epoch_end(self) -> None:
        self._log_coverage("val")

    def on_test_epoch_end(self) -> None:
        self._log_coverage("test")
        datamodule = self.trainer.datamodule
        if self.compare_baselines and isinstance(datamodule, Baselines):
            # Same split, same exclusion of seen items, same metric code: the numbers sit side by side.
            for name, value in datamodule.baseline_metrics(self.eval_k).items():
                self.log(name, float(value))
        self._compare_per_user(datamodule)
        if isinstance(datamodule, ColdStartEvaluation):
            # a cold-start split: the same table as the two-tower model's, where this model can only rank the
            # warm movies (it has no vector for a movie it never saw) but folds cold users in from their watches
            from jointembed.data.coldstart import format_table

            scorer = RecommenderScorer(self.model, datamodule.recent_items)
            self._coldstart = datamodule.coldstart_metrics({"cf_recommender": scorer}, self.eval_k, "test")
            if self.trainer.is_global_zero:
                print(format_table(self._coldstart, self.eval_k))

    def extra_test_metrics(self) -> dict[str, Any]:
        """For ``test_metrics.json``: the model against each baseline, user by user (``test/significance``: the
        difference, 95 % interval and p of HR@k and NDCG@k, and McNemar's p of the hits; see
        :mod:`jointembed.metrics.significance`), and the cold-start table on a cold-start split.

        The per-user results themselves (``user`` and ``<model or baseline>_hr@k`` / ``_ndcg@k`` columns) were
        written at the end of the test to ``test_per_user.csv`` in the logger's directory, beside
        ``test_metrics.json`` (``test/per_user_file``), so anyone can recompute the comparisons.
        """
        result: dict[str, Any] = {}
        table = getattr(self, "_coldstart", None)
        if table:
            from jointembed.data.coldstart import format_table

            result.update({**table, "coldstart_table": format_table(table, self.eval_k)})
        result.update(getattr(self, "_significance", None) or {})
        return result

    def _compare_per_user(self, datamodule: Any) -> None:
        """Keep the test's per-user HR@k and NDCG@k with the baselines' for the same users, and compare them."""
        results, self._per_user = getattr(self, "_per_user", None), None
        if not results:
            return
        if self.trainer.world_size > 1:  # each process holds its own users: gathering them is not done yet
            warnings.warn("per-user test results and their significance are kept under one process only", stacklevel=2)
            return
        base_users, baselines = None, {}
        if results.keyed and self.compare_baselines and isinstance(datamodule, PerUserBaselines):
            base_users, baselines = datamodule.baseline_per_user(self.eval_k)
        columns, comparisons, rows = results.compare(base_users, baselines)
        keys = getattr(datamodule, "user_keys", None) if results.keyed else None
        if keys is not None:  # the source's own user IDs (MovieLens's), to join the file with the ratings
            users = columns.pop("user")
            columns = {"user": users, "user_key": [keys[u] for u in users], **columns}
        trainer = self.trainer
        # Only beside a logger's files: without one the run has no folder of its own (the working directory).
        if trainer.logger is not None and trainer.log_dir and trainer.is_global_zero:
            path = atomic_write_text(Path(trainer.log_dir) / "test_per_user.csv", per_user_csv(columns))
            self._significance["test/per_user_file"] = str(path)
        if not comparisons:
            return
        table = format_comparisons(rows)
        self._significance.update({"test/significance": comparisons, "test/significance_table": table})
        if trainer.is_global_zero:
            print(f"model against the baselines, user by user (95 % bootstrap interval, sign-flip p):\n{table}")

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        history, k = batch["history"], self.eval_k
        users = self(history, batch.get("user_features"), batch.get("dense"))
        ids, _ = self.model.top_k(users, k, history)
        if self._recommended is None:
            self._recommended = torch.zeros(self.model.num_items, dtype=torch.bool, device=ids.device)
        self._recommended[ids[ids >= 0]] = True
        metrics = evaluate_rankings(ids, batch["targets"], self.model.num_items, ks=[k])
        if stage == "test" and getattr(self, "_per_user", None) is not None:
            users = batch.get("users")
            self._per_user.add(ids, batch["targets"], None if users is None else users.cpu().numpy())
        evaluated = metrics["num_users"]
        if evaluated == 0:
            return
        # Weighting each batch's mean by its number of users makes Lightning's epoch mean the mean over users.
        for name in ("hr", "recall", "ndcg"):  # coverage is of the whole epoch: _log_coverage
            value = torch.tensor(metrics[f"{name}@{k}"], device=self.device)
            self.log(f"{stage}/{name}@{k}", value, batch_size=evaluated, prog_bar=name != "recall", sync_dist=True)

    def _log_coverage(self, stage: str) -> None:
        if self._recommended is None:
            return
        recommended = self._recommended
        if self.trainer.world_size > 1:
            # uint8, not bool: NCCL's all_gather does not take bool tensors.
            recommended = self.all_gather(recommended.to(torch.uint8)).reshape(-1, recommended.numel()).any(0)
        self.log(f"{stage}/coverage@{self.eval_k}", recommended.float().mean())
        self._recommended = None

    def export_pretrained(
        self,
        folder: str | os.PathLike,
        metrics: Mapping[str, Any] | None = None,
        catalogue: ItemCatalogue | None = None,
    ) -> Path:
        """Write the model as a pretrained folder with its item keys, titles and ``recent_items`` and a model card.

        ``jointembed fit`` calls this after testing, with the test ``metrics``, writing ``<log_dir>/pretrained``;
        load it with :class:`~jointembed.models.pretrained_recommender.PretrainedRecommender`.

        Args:
            folder: Destination (replaced atomically).
            metrics: Test metrics for the model card.
            catalogue: Where the item keys, titles and ``recent_items`` (and the item metadata, when it is also an
                :class:`ItemMetadata`) come from; by default the trainer's data module. Without one the items are
                keyed by their IDs (with a warning).

        Returns:
            The folder.
        """
        if catalogue is None and self._trainer is not None and isinstance(self.trainer.datamodule, ItemCatalogue):
            catalogue = self.trainer.datamodule
        if catalogue is None:
            warnings.warn(
                "no item catalogue (a data module with item_keys, item_titles and recent_items): the pretrained "
                "folder keys items by their IDs 0..N-1, without titles or a recent-watches bag",
                stacklevel=2,
            )
        keys = None if catalogue is None else catalogue.item_keys
        titles = None if catalogue is None else catalogue.item_titles
        recent = 0 if catalogue is None else catalogue.recent_items
        metadata = catalogue.item_metadata if isinstance(catalogue, ItemMetadata) else None
        example = [0, 1, 2] if keys is None else keys[:3]
        usage = (
            "from jointembed.models.pretrained_recommender import PretrainedRecommender\n\n"
            'recommender = PretrainedRecommender.from_pretrained("path/to/this/folder")\n'
            f"for item in recommender.recommend({example!r}, k=10):  # watched item keys (or titles), oldest first\n"
            "    print(item.key, item.title, round(item.score, 2))"
        )
        config = self.model.config
        readers = {"bag": "the bag of items a user watched", "sasrec": "the latest watches in order (SASRec)",
                   "gru": "the latest watches in order (a GRU)"}  # fmt: skip
        reads = readers.get(config.get("user_encoder", "bag"), "the history")
        card = model_card(
            "jointembed recommender",
            f"A retrieval recommender over {config['num_items']} items: {reads} in, a score for every item out (the "
            "YouTube candidate-generation architecture), trained with jointembed.",
            usage,
            metrics,
            {
                "items": config["num_items"],
                "embedding dimension": config["embedding_dim"],
                "user encoder": config.get("user_encoder", "bag"),
                "tower": config["hidden_sizes"],
                "recent watches as their own bag": recent,
                "loss": self.loss_name,
                "item keys": "raw keys of the data" if keys is not None else "item IDs",
            },
        )
        return self.model.save_pretrained(folder, keys, titles, card, recent_items=recent, item_metadata=metadata)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        tables = self.model.embedding_parameters()
        table_ids = {id(p) for p in tables}
        tower = [p for p in self.model.parameters() if id(p) not in table_ids]
        groups = [
            {"params": tables, "lr": self.lr, "weight_decay": 0.0},
            {"params": tower, "lr": self.dense_lr, "weight_decay": self.weight_decay},
        ]
        return OPTIMIZERS[self.optimizer_name]([g for g in groups if g["params"]])
