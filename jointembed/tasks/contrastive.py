"""Contrastive training of a joint embedding model: every modality pulled into one space, pair by pair.

Training: each batch is encoded once; for every pair of modalities (all pairs, or each modality with an anchor)
the examples that have *both* sides are selected with the batch's ``present`` masks and scored by the loss
(InfoNCE or SigLIP, from the registry). Examples sharing a label (optionally a group) are positives, never
negatives. The loss is ``Σ_pairs weight_pair · loss_pair`` over the pairs with at least two examples. Under DDP
the pair's embeddings and labels are gathered from every process first (gradients kept), so every process
computes the loss of the global batch; DDP's gradient averaging then gives the single-process gradient.

Evaluation (val/test): embeddings of every modality are kept over the epoch with their labels and example ids;
at the end come cross-modal retrieval metrics for every ordered pair of modalities (``val/R@1_audio->image``,
``R@5``, ``R@10``, ``MRR``; a hit is the same example, or any item with the same label when labels exist) and
zero-shot accuracy per modality (``val/zeroshot_audio``: nearest class prompt, prompts embedded by the
``prompt_modality`` encoder). ``val/R@1`` and ``val/zeroshot`` are the means over pairs / modalities.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from jointembed.config import check_at_least, check_non_negative, check_positive
from jointembed.data.multimodal import LabelledData, MultimodalDataModule
from jointembed.distributed import gather_no_grad, gather_with_grad, is_distributed, rank, world_size
from jointembed.errors import CheckpointError
from jointembed.metrics.retrieval import retrieval_metrics, zero_shot_accuracy
from jointembed.models.joint import CHECKPOINT_KEY, JointEmbeddingModel
from jointembed.pretrained import model_card, open_checkpoint, read_lightning_checkpoint
from jointembed.registry import create_loss, get_modality_class

__all__ = ["ContrastiveTask", "pair_name", "select_pair", "positives_from_labels", "format_results_table"]

Pair = tuple[str, str]


def pair_name(pair: Pair) -> str:
    """``("audio", "image")`` → ``"audio-image"`` (the key of ``pair_weights`` and of logged losses)."""
    return f"{pair[0]}-{pair[1]}"


def select_pair(
    embeddings: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], pair: Pair, dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows of both modalities' embeddings for the examples that have both.

    Args:
        embeddings: Modality → ``(n_present, D)`` embeddings of the present examples, in example order (a
            modality with no present example may be missing).
        masks: Modality → ``(B,)`` bool presence masks.
        pair: The two modalities.
        dim: D, for the empty ``(0, D)`` rows of a modality with no embeddings.

    Returns:
        ``(k, D)`` and ``(k, D)`` embeddings, row ``i`` of both from the same example, and the ``(k,)`` batch
        indices of those examples.
    """
    both = masks[pair[0]] & masks[pair[1]]
    rows = []
    for name in pair:
        if name not in embeddings:
            rows.append(torch.zeros(0, dim, device=both.device))
            continue
        # position of each example among the present rows of this modality
        position = masks[name].long().cumsum(0) - 1
        rows.append(embeddings[name][position[both]])
    return rows[0], rows[1], both.nonzero().flatten()


def _gather_pair(
    a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather one pair's rows from every process: both sides in one collective (with gradient), then the keys."""
    # float32 on every process: a process without embeddings must send the same dtype as one under autocast
    both = torch.cat([a.float(), b.float()], dim=1)
    if torch.is_grad_enabled() and not both.requires_grad:
        # A process without this pair's examples must still take part in the gather's backward collective.
        both = both.detach().requires_grad_()
    both = gather_with_grad(both)
    keys = gather_no_grad(torch.stack([labels, groups], dim=1))
    dim = a.shape[1]
    return both[:, :dim], both[:, dim:], keys[:, 0], keys[:, 1]


def positives_from_labels(*keys: torch.Tensor) -> torch.Tensor:
    """``(k, k)`` bool: ``[i, j]`` when ``i == j`` or examples i and j share a value of any key (``(k,)`` int,
    ``-1`` = unknown, never matches)."""
    k = keys[0].shape[0]
    positives = torch.eye(k, dtype=torch.bool, device=keys[0].device)
    for key in keys:
        positives |= (key[:, None] == key[None, :]) & (key[:, None] >= 0)
    return positives


class ContrastiveTask(LightningModule):
    """Trains a :class:`~jointembed.models.joint.JointEmbeddingModel` with a contrastive loss over modality pairs.

    Batches follow the multimodal contract: ``present`` masks, one entry per modality (present examples only),
    and optional ``label``/``group`` ``(B,)`` (``-1`` unknown). Before training, ``setup`` binds a
    :class:`~jointembed.data.multimodal.MultimodalDataModule` to the model's own input units (so the data is
    preprocessed by the code that inference uses), sizes ID tables from the data, and saves the label names and
    prompts with the model. The model's configuration is saved in every checkpoint: restore with
    ``ContrastiveTask.load_from_checkpoint(path)`` or ``JointEmbeddingModel.from_pretrained(path)``;
    ``jointembed fit`` ends by writing the pretrained folder (:meth:`export_pretrained`). Under DDP, when some
    processes can lack a modality in a batch, use ``strategy: ddp_find_unused_parameters_true``.

    Args:
        model: The joint model (at least two encoders).
        loss: Registered pair loss (:func:`jointembed.registry.list_losses`): ``info_nce`` (symmetric CLIP) or
            ``siglip``.
        loss_config: Constructor arguments of the loss (e.g. ``{"init_scale": 10.0}``).
        anchor: ``None`` trains every pair of modalities; a modality name trains each other modality against it.
        pair_weights: Weight per pair, keys like ``"audio-image"`` (either order); unlisted pairs weigh 1.
        use_labels_as_positives: Examples with the same label are positives of each other, not negatives.
        use_groups_as_positives: Likewise for the same group (off by default: a group may be e.g. a speaker).
        class_prompts: Zero-shot prompts: label name → prompts, or templates like ``["{}", "the number {}"]``
            filled with the data module's ``label_names``. ``None`` disables zero-shot accuracy.
        prompt_modality: The encoder that embeds prompts (a text encoder).
        lr: AdamW learning rate of the heads (and of backbones not in ``backbone_lr``) and loss parameters.
        backbone_lr: Learning rate per encoder backbone (by modality name); 0 freezes that backbone.
        weight_decay: AdamW weight decay (never applied to the loss's temperature/bias).
        gather_distributed: Under DDP, gather every process's embeddings before the loss (global negatives).
        retrieval_ks: Cut-offs of the logged Recall@k.
    """

    def __init__(
        self,
        model: JointEmbeddingModel,
        loss: str = "info_nce",
        loss_config: dict[str, Any] | None = None,
        anchor: str | None = None,
        pair_weights: dict[str, float] | None = None,
        use_labels_as_positives: bool = True,
        use_groups_as_positives: bool = False,
        class_prompts: dict[str, list[str]] | list[str] | None = None,
        prompt_modality: str = "text",
        lr: float = 1e-3,
        backbone_lr: dict[str, float] | None = None,
        weight_decay: float = 0.0,
        gather_distributed: bool = True,
        retrieval_ks: tuple[int, ...] = (1, 5, 10),
    ) -> None:
        super().__init__()
        check_positive("lr", lr)
        check_non_negative("weight_decay", weight_decay)
        for k in retrieval_ks:
            check_at_least("retrieval_ks", k, 1)
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.loss_fn: nn.Module = create_loss(loss, **(loss_config or {}))
        names = model.modalities
        if anchor is not None and anchor not in names:
            raise ValueError(f"anchor {anchor!r} is not a modality of the model; it has: {', '.join(names)}")
        self.pairs: list[Pair] = [p for p in itertools.combinations(names, 2) if anchor is None or anchor in p]
        self.pair_weights = self._pair_weights(pair_weights or {})
        for name, value in (backbone_lr or {}).items():
            if name not in names:
                raise ValueError(f"backbone_lr names {name!r}, not a modality of the model ({', '.join(names)})")
            check_non_negative(f"backbone_lr[{name!r}]", value)
            if value == 0:
                model.encoders[name].freeze(True)
        # The data module bound to the model's inputs, weakly: a copy of the task (weight averaging makes one)
        # must not drag the whole dataset along.
        self._bound: weakref.ref | None = None
        self._eval: dict[str, dict[str, list[torch.Tensor]]] = {}
        self._eval_seen = 0
        self.results_table: dict[str, dict[str, float]] | None = None

    def _pair_weights(self, weights: Mapping[str, float]) -> dict[Pair, float]:
        by_name = {}
        for pair in self.pairs:
            by_name[pair_name(pair)] = by_name[pair_name(pair[::-1])] = pair
        out = dict.fromkeys(self.pairs, 1.0)
        for key, value in weights.items():
            if key not in by_name:
                valid = ", ".join(pair_name(p) for p in self.pairs)
                raise ValueError(f"pair_weights key {key!r} is not a trained pair; trained pairs: {valid}")
            check_non_negative(f"pair_weights[{key!r}]", value)
            out[by_name[key]] = float(value)
        return out

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Modality → ``(n_present, D)`` embeddings of the batch."""
        return self.model(batch)

    # ----- binding the data --------------------------------------------------------------------------------

    def bind_data(self, datamodule: Any) -> None:
        """Bind a multimodal data module to the model's input units (fitting the ones that learn from the
        training split, e.g. an ids vocabulary), size the encoders from them, and keep the zero-shot label
        names and prompts with the model. ``jointembed`` calls it before a run; ``setup`` calls it otherwise."""
        if isinstance(datamodule, MultimodalDataModule):
            datamodule.setup()
            datamodule.bind(self.model.inputs)
            self.model.bind_inputs()
            self._bound = weakref.ref(datamodule)
        if self.hparams.class_prompts and self.hparams.prompt_modality in self.model.encoders:
            prompts = self.prompts_by_class()
            names = self.label_names() or list(self.hparams.class_prompts)
            self.model.set_zero_shot(names, prompts, self.hparams.prompt_modality)

    def _bound_datamodule(self) -> Any:
        return None if self._bound is None else self._bound()

    def setup(self, stage: str) -> None:
        """Bind the trainer's data module, unless that was done before the run (see :meth:`bind_data`)."""
        trainer = self._trainer
        datamodule = trainer.datamodule if trainer is not None else None
        if datamodule is not None and datamodule is not self._bound_datamodule():
            self.bind_data(datamodule)

    def restore_inputs(self, checkpoint_path: str | os.PathLike) -> None:
        """Take the fitted input units saved in a checkpoint of this task (e.g. an ID vocabulary), so data read to
        predict with it is looked up as in training, whatever splits the data module has. ``jointembed predict
        --ckpt_path`` calls it before binding the data.

        Raises:
            CheckpointError: The checkpoint has no model configuration, its fields are not the model's, or a unit
                cannot be rebuilt (the field is named).
        """
        with open_checkpoint(checkpoint_path) as checkpoint:
            self._restore_inputs(checkpoint.get(CHECKPOINT_KEY), checkpoint_path)
        self.model.bind_inputs()

    def _restore_inputs(self, config: Any, checkpoint_path: str | os.PathLike) -> None:
        fields = config.get("fields") if isinstance(config, Mapping) else None
        if not isinstance(fields, Mapping) or sorted(fields) != sorted(self.model.modalities):
            saved = sorted(fields) if isinstance(fields, Mapping) else "none (not written by ContrastiveTask)"
            raise CheckpointError(f"{checkpoint_path}: saved fields {saved}, the model's {self.model.modalities}")
        for name, spec in fields.items():
            saved = spec.get("input") if isinstance(spec, Mapping) else None
            try:
                if saved is not None:
                    self.model.inputs[name] = get_modality_class(saved["type"])(**saved.get("config", {}))
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{checkpoint_path}: cannot rebuild field {name!r}'s input: {error}") from error

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the model's configuration (JSON) in the checkpoint, so it loads without the recipe."""
        checkpoint[CHECKPOINT_KEY] = self.model.get_config()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike, **kwargs: Any) -> ContrastiveTask:  # type: ignore[override]
        """Restore a task from a checkpoint written by ``jointembed fit``; the model is rebuilt from the
        configuration the checkpoint carries unless ``model=`` is given. Read with ``weights_only=True``."""
        if "model" not in kwargs:
            with open_checkpoint(checkpoint_path) as checkpoint:
                config = checkpoint.get(CHECKPOINT_KEY)
                if config is None:
                    raise ValueError(
                        f"{checkpoint_path}: no model configuration inside; pass model=JointEmbeddingModel(...)"
                    )
                kwargs["model"] = JointEmbeddingModel._build(config, Path(checkpoint_path), None)
        else:
            read_lightning_checkpoint(checkpoint_path)  # refuse a file that is not weights-only before Lightning
        kwargs["weights_only"] = True
        return super().load_from_checkpoint(checkpoint_path, **kwargs)

    def export_pretrained(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the trained model as a pretrained folder with a model card holding ``metrics``."""
        fields = {name: unit.registry_name for name, unit in self.model.inputs.items()}
        first = next(iter(fields), "text")
        usage = (
            "from jointembed import JointEmbeddingModel\n\n"
            f'model = JointEmbeddingModel.from_pretrained("{Path(folder).name}")\n'
            f"vectors = model.embed({first}=[...])  # (n, {self.model.output_dim}) unit vectors\n"
        )
        if self.model.zero_shot is not None:
            usage += f"print(model.classify({first}=[...]).labels)  # zero-shot, with the saved prompts\n"
        details = {
            "fields": ", ".join(f"{k} ({v}, {self.model.encoders[k].registry_name})" for k, v in fields.items()),
            "shared dimension": self.model.output_dim,
            "loss": self.hparams.loss,
        }
        if self.model.zero_shot is not None:
            details["classes"] = ", ".join(self.model.zero_shot.label_names)
        card = model_card(
            "jointembed joint embedding model",
            "Encoders that map each field's raw inputs into one shared space, trained contrastively: a cosine "
            "similarity compares any two inputs, whatever their data types.",
            usage,
            metrics,
            details,
        )
        return self.model.save_pretrained(folder, card=card)

    def _masks(self, batch: Mapping[str, Any], embeddings: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``(B,)`` presence mask of every model modality the batch serves (all present when it has no mask)."""
        present = batch.get("present", {})
        masks = {m: present[m].to(self.device).bool() for m in self.model.modalities if m in present}
        for m in self.model.modalities:
            if m not in masks and m in embeddings:
                masks[m] = torch.ones(embeddings[m].shape[0], dtype=torch.bool, device=self.device)
        sizes = {m: mask.shape[0] for m, mask in masks.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"presence masks disagree on the batch size: {sizes}")
        return masks

    def _keys(self, batch: Mapping[str, Any], size: int) -> dict[str, torch.Tensor]:
        keys = {}
        for key in ("label", "group"):
            value = batch.get(key)
            keys[key] = value.to(self.device) if value is not None else torch.full((size,), -1, device=self.device)
        return keys

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor | None:
        embeddings = self.model(batch)
        masks = self._masks(batch, embeddings)
        size = next(iter(masks.values())).shape[0] if masks else 0
        keys = self._keys(batch, size)
        gather = self.hparams.gather_distributed and is_distributed()
        total = None
        # Under DDP every process walks the same pairs (the batch's modalities) so that the gathers line up.
        for pair in self.pairs:
            if pair[0] not in masks or pair[1] not in masks:
                continue
            a, b, index = select_pair(embeddings, masks, pair, self.model.output_dim)
            labels, groups = keys["label"][index], keys["group"][index]
            if gather:
                a, b, labels, groups = _gather_pair(a, b, labels, groups)
            if a.shape[0] < 2:
                continue
            pair_loss = self.loss_fn(a, b, self._positives(labels, groups))
            self.log(f"train/loss_{pair_name(pair)}", pair_loss, batch_size=a.shape[0])
            weighted = self.pair_weights[pair] * pair_loss
            total = weighted if total is None else total + weighted
        if total is None:
            # No pair has two examples. One process skips the step (None); Lightning forbids skipping under DDP,
            # so there a zero that touches every trainable parameter keeps the gradient sync in step.
            if not is_distributed():
                return None
            total = sum((p * 0.0).sum() for p in self.parameters() if p.requires_grad)
        self.log("train/loss", total, batch_size=max(size, 1), prog_bar=True)
        return total

    def _positives(self, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor | None:
        keys = []
        if self.hparams.use_labels_as_positives:
            keys.append(labels)
        if self.hparams.use_groups_as_positives:
            keys.append(groups)
        return positives_from_labels(*keys) if keys else None

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """Embed a batch, keeping each vector's row (what :class:`~jointembed.embedding_writer.EmbeddingWriter`
        writes).

        Returns:
            ``{"rows": (B,) int64, "fields": {field: {"rows": (n,) int64, "vectors": (n, D) float32}}}``: the
            batch's rows (manifest rows, from ``batch["row"]``), and per field at least one example has, the
            unit vectors of the examples that have it with their rows, in batch order.

        Raises:
            ValueError: The batch has no ``"row"`` ``(B,)`` matching its presence masks.
        """
        rows = batch.get("row")
        embeddings = self.model(batch)
        masks = self._masks(batch, embeddings)
        if not isinstance(rows, torch.Tensor) or any(mask.shape != rows.shape for mask in masks.values()):
            raise ValueError("predict batches need 'row': (B,) the examples' row numbers, one per presence mask entry")
        rows = rows.to(self.device, torch.long)
        fields = {m: {"rows": rows[masks[m]], "vectors": vectors.float()} for m, vectors in embeddings.items()}
        return {"rows": rows, "fields": fields}

    # ----- evaluation -------------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._reset_eval()

    def on_test_epoch_start(self) -> None:
        self._reset_eval()

    def _reset_eval(self) -> None:
        self._eval = {m: {"emb": [], "label": [], "id": []} for m in self.model.modalities}
        self._eval_seen = 0

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._collect(batch)

    def _collect(self, batch: Mapping[str, Any]) -> None:
        """Keep each modality's embeddings with the labels and (globally unique) ids of their examples."""
        embeddings = self.model(batch)
        masks = self._masks(batch, embeddings)
        if not masks:
            return
        size = next(iter(masks.values())).shape[0]
        labels = self._keys(batch, size)["label"]
        ids = (self._eval_seen + torch.arange(size, device=self.device)) * world_size() + rank()
        self._eval_seen += size
        for m, emb in embeddings.items():
            store = self._eval.setdefault(m, {"emb": [], "label": [], "id": []})
            store["emb"].append(emb.detach().float())
            store["label"].append(labels[masks[m]])
            store["id"].append(ids[masks[m]])

    def _gathered_eval(self) -> dict[str, dict[str, torch.Tensor]]:
        out = {}
        dim = self.model.output_dim
        for m in self.model.modalities:  # same order on every process: the gathers must line up
            store = self._eval.get(m, {"emb": [], "label": [], "id": []})
            empty_ids = torch.zeros(0, dtype=torch.long, device=self.device)
            emb = gather_no_grad(_cat(store["emb"], torch.zeros(0, dim, device=self.device)))
            label, ids = gather_no_grad(_cat(store["label"], empty_ids)), gather_no_grad(_cat(store["id"], empty_ids))
            if emb.shape[0] > 0:
                out[m] = {"emb": emb, "label": label, "id": ids}
        return out

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        table = self._evaluate("test")
        self.results_table = table
        _print_table(table)

    def _evaluate(self, stage: str) -> dict[str, dict[str, float]]:
        """Log retrieval metrics for every ordered pair and zero-shot accuracy; return ``{query: {gallery or
        "zero-shot": value}}`` (R@1 and zero-shot accuracy) for the printed table."""
        data = self._gathered_eval()
        self._eval = {}
        table: dict[str, dict[str, float]] = {m: {} for m in data}
        recalls = []
        for query, gallery in itertools.permutations(data, 2):
            q, g = data[query], data[gallery]
            use_labels = bool((q["label"] >= 0).any()) and bool((g["label"] >= 0).any())
            try:
                metrics = retrieval_metrics(
                    q["emb"], g["emb"], q["label"] if use_labels else None, g["label"] if use_labels else None,
                    q["id"], g["id"], ks=self.hparams.retrieval_ks,
                )  # fmt: skip
            except ValueError:  # no query has a relevant item (e.g. disjoint examples, no labels)
                continue
            for name, value in metrics.items():
                if name != "num_queries":
                    self._log_epoch(f"{stage}/{name}_{query}->{gallery}", value)
            recalls.append(metrics["R@1"])
            table[query][gallery] = metrics["R@1"]
        if recalls:
            self._log_epoch(f"{stage}/R@1", sum(recalls) / len(recalls), prog_bar=True)
        accuracies = self._zero_shot(stage, data, table)
        if accuracies:
            self._log_epoch(f"{stage}/zeroshot", sum(accuracies) / len(accuracies), prog_bar=True)
        return table

    def _log_epoch(self, name: str, value: float, prog_bar: bool = False) -> None:
        # Every process computed the same value from the gathered epoch; syncing it (a mean of equal numbers)
        # keeps Lightning's distributed logging consistent.
        self.log(name, value, prog_bar=prog_bar, sync_dist=True)

    def _zero_shot(self, stage: str, data: Mapping[str, Any], table: dict[str, dict[str, float]]) -> list[float]:
        saved = self.model.zero_shot
        if saved is None:
            return []
        modality = saved.field
        classes = self.model.class_vectors().to(self.device)
        accuracies = []
        for m, d in data.items():
            known = d["label"] >= 0
            if m == modality or not bool(known.any()):
                continue
            accuracy = zero_shot_accuracy(d["emb"], d["label"], classes)
            self._log_epoch(f"{stage}/zeroshot_{m}", accuracy)
            table[m]["zero-shot"] = accuracy
            accuracies.append(accuracy)
        return accuracies

    def label_names(self) -> list[str] | None:
        """The label names of the trainer's multimodal data module, else those saved with the model, else None."""
        trainer = self._trainer
        datamodule = self._bound_datamodule() or (trainer.datamodule if trainer is not None else None)
        if isinstance(datamodule, LabelledData):
            return list(datamodule.label_names)
        return None if self.model.zero_shot is None else list(self.model.zero_shot.label_names)

    def prompts_by_class(self) -> list[list[str]] | None:
        """Prompts of each class by label index, from ``class_prompts`` (and ``label_names``); None if unset.

        Raises:
            ValueError: Templates without label names, or a prompt dict that does not cover every label name.
        """
        spec = self.hparams.class_prompts
        if not spec:
            return None
        names = self.label_names()
        if isinstance(spec, Mapping):
            if names is None:
                return [list(v) for v in spec.values()]  # dict order = label index
            if missing := [n for n in names if n not in spec]:
                raise ValueError(f"class_prompts has no prompts for label(s) {missing}; label_names: {names}")
            return [list(spec[n]) for n in names]
        if names is None:
            raise ValueError("class_prompts templates need the data module's label_names; none were found")
        return [[template.format(name) for template in spec] for name in names]

    def extra_test_metrics(self) -> dict[str, Any]:
        """``{"test/R@1_table": {query: {gallery: R@1, "zero-shot": accuracy}}}`` from the last test epoch."""
        return {"test/R@1_table": self.results_table} if self.results_table else {}

    # ----- optimiser --------------------------------------------------------------------------------------

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW: each encoder's head at ``lr``, its backbone at ``backbone_lr[name]`` (default ``lr``), the
        loss's parameters at ``lr`` without weight decay; frozen parameters are left out."""
        hp = self.hparams
        backbone_lr = hp.backbone_lr or {}
        groups, seen = [], set()

        def add(name: str, params: Any, lr: float, weight_decay: float) -> None:
            params = [p for p in params if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in params)
            if params and lr > 0:
                groups.append({"name": name, "params": params, "lr": lr, "weight_decay": weight_decay})

        for name, encoder in self.model.encoders.items():
            add(f"{name}.head", encoder.head_parameters(), hp.lr, hp.weight_decay)
            add(f"{name}.backbone", encoder.backbone_parameters(), backbone_lr.get(name, hp.lr), hp.weight_decay)
        add("loss", self.loss_fn.parameters(), hp.lr, 0.0)
        add("other", self.parameters(), hp.lr, hp.weight_decay)
        return torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)


def _cat(parts: list[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else empty


def format_results_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """Rows: query modality; columns: R@1 against each gallery modality, then zero-shot accuracy."""
    columns = [c for c in table if any(c in row for row in table.values())]
    if any("zero-shot" in row for row in table.values()):
        columns.append("zero-shot")
    corner = "query\\gallery"
    width = max([len(c) for c in columns] + [5])
    first = max([len(r) for r in table] + [len(corner)])
    lines = [f"{corner:<{first}} " + " ".join(f"{c:>{width}}" for c in columns)]
    for query, row in table.items():
        cells = [f"{row[c]:>{width}.3f}" if c in row else f"{'-':>{width}}" for c in columns]
        lines.append(f"{query:<{first}} " + " ".join(cells))
    return "\n".join(lines)


@rank_zero_only
def _print_table(table: Mapping[str, Mapping[str, float]]) -> None:
    if table:
        print(f"cross-modal retrieval R@1 (rows: query, columns: gallery) and zero-shot accuracy:\n"
              f"{format_results_table(table)}")  # fmt: skip
