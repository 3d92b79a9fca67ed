"""The joint embedding model: named fields, each an input unit and an encoder, all mapping into one shared,
L2-normalised space.

A plain ``nn.Module`` (usable without Lightning). A *field* is a data column of the model (``audio``, ``image``,
``title``, ``poster``...): its :class:`~jointembed.modalities.base.Modality` turns raw values into a batch, its
:class:`~jointembed.encoders.base.Encoder` turns the batch into ``(n, D)`` unit vectors. ``embed`` takes raw
values (files, arrays, strings, keys) and ``forward`` / ``encode`` take batches as the data module makes them,
through the same units, so inference and training preprocess alike.

``save_pretrained`` writes one self-describing folder (see :mod:`jointembed.pretrained`) that
``from_pretrained`` rebuilds on any machine:

- ``config.json``: ``{"format": "jointembed.joint", "version": 2, "output_dim": D, "fields": {name: {"encoder":
  {"type", "config"} or {"shared_with": field}, "input": {"type", "config"}}}, "zero_shot": {"label_names",
  "prompts", "field"}}``;
- ``model.safetensors``: every parameter and buffer (``encoders.<name>.…``);
- ``fields/<name>/encoder/`` and ``fields/<name>/input/``: files the parts need (a tokenizer, a vocabulary);
- ``README.md``: the model card.

Version 1 folders (encoders only) still load, with default input units.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jointembed.data.media import BadMediaError
from jointembed.encoders.base import Encoder, longest_first
from jointembed.errors import CheckpointError
from jointembed.modalities.base import Modality, one_thread
from jointembed.pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_weights,
    open_checkpoint,
    open_folder,
    resolve_folder,
    state_for_saving,
    write_folder,
)
from jointembed.registry import create_modality, get_encoder_class, get_modality_class, list_modalities

__all__ = [
    "JointEmbeddingModel",
    "ZeroShot",
    "Classification",
    "Readable",
    "FORMAT",
    "FORMAT_VERSION",
    "CHECKPOINT_KEY",
]

FORMAT = "jointembed.joint"
FORMAT_VERSION = 2
CHECKPOINT_KEY = "jointembed_model"  # where ContrastiveTask keeps the model's config inside a Lightning checkpoint
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_RESERVED = {"present", "label", "group", "row", "skipped", "batch_size", "device", "output", "progress", "labels"}


@dataclass
class ZeroShot:
    """What zero-shot classification needs, saved with the model: class names and each class's prompts.

    Attributes:
        label_names: Class names by index.
        prompts: Per class, the texts whose mean embedding stands for it.
        field: The field (a text field) that embeds the prompts.
    """

    label_names: list[str]
    prompts: list[list[str]]
    field: str


class Classification(NamedTuple):
    """Zero-shot predictions: ``labels`` (names), ``indices`` ``(n,)`` and cosine ``scores`` ``(n, C)``."""

    labels: list[str]
    indices: torch.Tensor
    scores: torch.Tensor


class Readable(NamedTuple):
    """What :meth:`JointEmbeddingModel.embed_readable` returns: ``vectors (m, D)`` of the values that could be
    read, ``indices`` ``(m,)`` of those values in the input, and ``skipped``: ``(index, message)`` of the rest."""

    vectors: torch.Tensor | np.ndarray
    indices: list[int]
    skipped: list[tuple[int, str]]


class _Bad(NamedTuple):
    index: int
    message: str


class _Raw(Dataset):
    """Raw values → ``(index, loaded value)`` by a unit (so decoding can run in DataLoader workers), visited in
    ``order`` (positions into ``values``) when given; with ``skip_bad`` a file that cannot be read becomes a
    :class:`_Bad` instead of an error."""

    def __init__(
        self, values: Sequence[Any], unit: Modality, field: str, skip_bad: bool = False, order: list[int] | None = None
    ) -> None:
        self.values, self.unit, self.field, self.skip_bad, self.order = values, unit, field, skip_bad, order

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, position: int) -> tuple[int, Any]:
        index = position if self.order is None else self.order[position]
        try:
            with one_thread():
                return index, self.unit.load(self.values[index])
        except BadMediaError as error:
            if self.skip_bad:
                return index, _Bad(index, str(error))
            raise
        except (TypeError, ValueError) as error:
            raise type(error)(f"{self.field}[{index}]: {error}") from error


class _Collate:
    """Collates the loaded values with the unit, keeping their indices and setting the unreadable ones aside."""

    def __init__(self, unit: Modality) -> None:
        self.unit = unit

    def __call__(self, items: Sequence[tuple[int, Any]]) -> tuple[list[int], Any, list[_Bad]]:
        good = [(i, value) for i, value in items if not isinstance(value, _Bad)]
        bad = [value for _, value in items if isinstance(value, _Bad)]
        batch = self.unit.collate([value for _, value in good]) if good else None
        return [i for i, _ in good], batch, bad


def _eval_replica(module: nn.Module, memo: dict[int, nn.Module] | None = None) -> nn.Module:
    """An eval-mode view of ``module`` for inference while the module itself stays in training mode: a shallow
    copy of each module of the tree (a module used twice is copied once) with ``training`` off, sharing the
    parameters, buffers and hooks, so nothing is copied but the modules' attribute dicts (microseconds a
    module)."""
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    replica = object.__new__(type(module))
    replica.__dict__.update(module.__dict__)
    memo[id(module)] = replica
    replica.__dict__["training"] = False
    children = {name: None if child is None else _eval_replica(child, memo) for name, child in module._modules.items()}
    replica.__dict__["_modules"] = children
    return replica


class JointEmbeddingModel(nn.Module):
    """Fields (name → input unit + encoder), all encoders sharing the output dimension D.

    Args:
        encoders: Encoders by field name, e.g. ``{"image": ..., "text": ...}``; the name is the manifest column
            (and batch key) each one encodes. With ``share``, at least two fields in all.
        inputs: Input units by field name; a field without one gets the default unit of its encoder's type
            (``ids``, ``text``, ``image``, ``audio``), e.g. ``{"image": ImageModality(image_size=16)}``.
        share: Fields that use another field's encoder (the same weights): ``{"plot": "title"}`` encodes the
            ``plot`` column with the ``title`` encoder.

    Raises:
        ValueError: Fewer than two encoders, encoders with different ``output_dim``, an input for a field that
            has no encoder, a field name that is reserved or not a plain name, or a unit that disagrees with
            its encoder (e.g. sample rates).
    """

    def __init__(
        self,
        encoders: dict[str, Encoder],
        inputs: dict[str, Modality] | None = None,
        share: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        share = dict(share or {})
        for field, owner in share.items():
            if owner not in encoders or owner in share:
                raise ValueError(f"share: field {field!r} uses {owner!r}, which is not a field with its own encoder")
            if field in encoders:
                raise ValueError(f"share: field {field!r} has its own encoder; give it one or share one, not both")
        self.share = share
        encoders = {**encoders, **{field: encoders[owner] for field, owner in share.items()}}
        if len(encoders) < 2:
            raise ValueError(f"a joint model needs at least two encoders, got {sorted(encoders)}")
        dims = {name: int(encoder.output_dim) for name, encoder in encoders.items()}
        if len(set(dims.values())) > 1:
            listed = ", ".join(f"{name}={dim}" for name, dim in dims.items())
            raise ValueError(f"all encoders must share output_dim, got {listed}")
        for name in encoders:
            if not _FIELD.match(name) or name in _RESERVED:
                raise ValueError(f"field name {name!r} is reserved or not a plain name (letters, digits, _ . -)")
        inputs = dict(inputs or {})
        if extra := sorted(set(inputs) - set(encoders)):
            raise ValueError(f"inputs {extra} have no encoder; the encoders are {sorted(encoders)}")
        self.encoders = nn.ModuleDict(encoders)
        self.output_dim = next(iter(dims.values()))
        known = set(list_modalities())
        self.inputs: dict[str, Modality] = {}
        for name, encoder in encoders.items():
            unit = inputs.get(name)
            if unit is None and encoder.modality in known:
                unit = create_modality(encoder.modality)
            if unit is not None:
                self.inputs[name] = unit
        self.zero_shot: ZeroShot | None = None
        self.bind_inputs()

    @property
    def modalities(self) -> list[str]:
        """The field names, in order (kept under this name for the training code)."""
        return list(self.encoders.keys())

    fields = modalities

    def bind_inputs(self) -> None:
        """Let each unit check (or size) its encoder: after a unit is fitted, an ids encoder built with
        ``num_embeddings: null`` gets its table here."""
        for name, unit in self.inputs.items():
            unit.bind(self.encoders[name], name)

    def set_zero_shot(self, label_names: Sequence[str], prompts: Sequence[Sequence[str]], field: str) -> None:
        """Keep class names and prompts with the model (saved in its folder) for :meth:`classify`.

        Raises:
            ValueError: ``field`` is not a field, or the prompts do not give every class at least one text.
        """
        if field not in self.encoders:
            raise ValueError(f"prompt field {field!r} is not a field of the model ({', '.join(self.modalities)})")
        if len(prompts) != len(label_names) or any(not p for p in prompts):
            raise ValueError(f"need at least one prompt for each of the {len(label_names)} classes")
        self.zero_shot = ZeroShot(list(label_names), [list(p) for p in prompts], field)

    # ----- batches -------------------------------------------------------------------------------------------

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Embed every field of the model that the batch holds.

        Args:
            batch: The data module's batch dict: field → that field's batch (present examples only), and
                ``"present"``: field → ``(B,)`` bool mask. A field with no present example (or absent from the
                batch) is skipped.

        Returns:
            Field → ``(n_present, D)`` L2-normalised embeddings, rows in example order.
        """
        present = batch.get("present", {})
        out = {}
        for name, encoder in self.encoders.items():
            if name not in batch or (name in present and not bool(present[name].any())):
                continue
            out[name] = encoder(batch[name])
        return out

    def encode(self, field: str, batch: Any) -> torch.Tensor:
        """``(n, D)`` embeddings of one field's batch (as its unit collates it); gradients as the caller's mode.

        Raises:
            KeyError: The model has no such field; the message lists the ones it has.
        """
        return self._encoder(field)(batch)

    def _encoder(self, field: str) -> Encoder:
        if field not in self.encoders:
            raise KeyError(f"the model has no field {field!r}; it has: {', '.join(self.modalities)}")
        return self.encoders[field]

    # ----- raw inputs --------------------------------------------------------------------------------------

    def embed(
        self,
        *,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        output: Literal["torch", "numpy"] = "torch",
        progress: bool | None = None,
        num_workers: int = 0,
        **field_values: Sequence[Any],
    ) -> torch.Tensor | np.ndarray:
        """Embed raw values of one field: ``model.embed(audio=["a.wav", (wave, 16000)])``.

        Each value goes through the field's unit exactly as in training (decode, preprocess, collate), in eval
        mode without gradients. The model is never changed: a model in training mode is run through an eval-mode
        replica that shares its weights and buffers, so threads may embed with one model at once, and BatchNorm
        statistics never move (only ``device`` moves the model: do that once, before sharing it). Texts are
        batched longest first by the encoder's own length (tokens), so a short text pads to texts of its length
        rather than to the longest of its neighbours in the list; the rows still come back in the caller's order.

        Args:
            batch_size: Values per forward pass.
            device: Move the model there first (``None`` keeps its device).
            output: ``torch`` (a CPU tensor) or ``numpy``.
            progress: Show a progress bar; ``None`` shows one above 20 batches.
            num_workers: DataLoader workers that decode and preprocess (for many or large files).
            **field_values: Exactly one ``field=[values]``: e.g. ``audio`` (paths, bytes, ``(samples, rate)``),
                ``image`` (paths, bytes, PIL images, arrays), ``text`` (strings), ``ids`` (lists of raw keys).

        Returns:
            ``(n, D)`` unit vectors, row ``i`` for value ``i``.

        Raises:
            TypeError: Not exactly one field, values not in a list, or a value of a kind the unit does not read.
            KeyError: No such field (the message lists the model's fields).
            ValueError / BadMediaError: A value that cannot be read; the message names the field and index or
                the file.
        """
        return self._embed(field_values, batch_size, device, output, progress, num_workers, skip_bad=False).vectors

    def embed_readable(
        self,
        *,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        output: Literal["torch", "numpy"] = "torch",
        progress: bool | None = None,
        num_workers: int = 0,
        **field_values: Sequence[Any],
    ) -> Readable:
        """:meth:`embed` for collections with unreadable files in them: a file that is missing, truncated or not
        an image/audio file is set aside with its message instead of stopping the run (other bad values, such
        as a wrong type, still raise).

        Returns:
            :class:`Readable`: the vectors of the values that were read, their indices, and the skipped ones.
        """
        return self._embed(field_values, batch_size, device, output, progress, num_workers, skip_bad=True)

    def _embed(
        self,
        field_values: Mapping[str, Sequence[Any]],
        batch_size: int,
        device: str | torch.device | None,
        output: str,
        progress: bool | None,
        num_workers: int,
        skip_bad: bool,
    ) -> Readable:
        if len(field_values) != 1:
            raise TypeError(f"embed takes exactly one field, e.g. embed(audio=[...]); fields: {self.modalities}")
        ((field, values),) = field_values.items()
        encoder = self._encoder(field)
        unit = self.inputs.get(field)
        if unit is None:
            raise ValueError(f"field {field!r} has no input unit to read raw values; use encode() with a batch")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"{field} must be a list of values, e.g. {field}=[...]; got {type(values).__name__}")
        if device is not None:
            self.to(device)
        lengths = unit.lengths(values, encoder)
        order = None if lengths is None else longest_first(lengths)
        loader = DataLoader(
            _Raw(values, unit, field, skip_bad, order),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_Collate(unit),
        )
        show = progress if progress is not None else len(loader) > 20
        # never self.eval(): that would flip the mode under any other thread using the model
        runner = _eval_replica(encoder) if any(m.training for m in encoder.modules()) else encoder
        parts, indices, skipped = [], [], []
        with torch.no_grad():
            for kept, batch, bad in _maybe_progress(loader, show, field):
                skipped.extend((b.index, b.message) for b in bad)
                if kept:
                    parts.append(runner(batch).float().cpu())
                    indices.extend(kept)
        result = torch.cat(parts) if parts else torch.zeros(0, self.output_dim)
        if order is not None:  # back to the caller's order
            result = result[torch.as_tensor(indices, dtype=torch.long).argsort()]
            indices, skipped = sorted(indices), sorted(skipped)
        return Readable(result.numpy() if output == "numpy" else result, indices, skipped)

    @staticmethod
    def similarity(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Cosine similarity ``(n, m)`` between the rows of ``a`` ``(n, D)`` and ``b`` ``(m, D)`` (any fields)."""
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T

    def class_vectors(self, labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None) -> torch.Tensor:
        """``(C, D)`` unit class vectors: the mean embedding of each class's prompts.

        Args:
            labels: ``None`` uses the prompts saved with the model; a list of names uses each name as a text
                (with the saved templates' classes' prompts replaced); a dict maps each name to its prompts.

        Raises:
            ValueError: No labels given and none saved with the model.
        """
        names, prompts, field = self._prompts(labels)
        flat = [p for group in prompts for p in group]
        emb = self.embed(**{field: flat})
        owner = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor([len(p) for p in prompts]))
        sums = torch.zeros(len(prompts), emb.shape[1]).index_add_(0, owner, emb)
        return F.normalize(sums, dim=-1)

    def _prompts(self, labels: Sequence[str] | Mapping[str, Sequence[str]] | None) -> tuple[list, list, str]:
        saved = self.zero_shot
        text_fields = [name for name, unit in self.inputs.items() if unit.registry_name == "text"]
        field = saved.field if saved is not None else (text_fields[0] if text_fields else None)
        if field is None:
            raise ValueError("the model has no text field to embed class prompts")
        if labels is None:
            if saved is None:
                raise ValueError("no labels given and none saved with the model: pass labels=[...]")
            return saved.label_names, saved.prompts, field
        if isinstance(labels, Mapping):
            return list(labels), [list(v) for v in labels.values()], field
        return list(labels), [[str(name)] for name in labels], field

    def classify(
        self,
        *,
        labels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        batch_size: int = 64,
        **field_values: Sequence[Any],
    ) -> Classification:
        """Zero-shot classification: each value's class is the one whose prompts' mean embedding is nearest.

        ``model.classify(audio=["seven.wav"])`` uses the label names and prompts saved with the model.

        Args:
            labels: As in :meth:`class_vectors`.
            batch_size: Values per forward pass.
            **field_values: Exactly one ``field=[values]``, as in :meth:`embed`.
        """
        names = self._prompts(labels)[0]
        classes = self.class_vectors(labels)
        scores = self.similarity(self.embed(batch_size=batch_size, **field_values), classes)
        indices = scores.argmax(dim=1) if len(scores) else torch.zeros(0, dtype=torch.long)
        return Classification([names[i] for i in indices.tolist()], indices, scores)

    # ----- saving and loading -------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The model's whole configuration as JSON types (kept in Lightning checkpoints); the folder's
        ``config.json`` is the same with files in place of large values."""
        return self._config(lambda part, name, kind: part.get_config())

    def _config(self, config_of: Any) -> dict[str, Any]:
        fields = {}
        for name, encoder in self.encoders.items():
            if not encoder.registry_name:
                raise ValueError(
                    f"encoder {name!r} ({type(encoder).__name__}) is not registered: decorate its class with "
                    "@jointembed.registry.register_encoder(name) so a checkpoint can name it"
                )
            unit = self.inputs.get(name)
            if name in self.share:
                spec: dict[str, Any] = {"encoder": {"shared_with": self.share[name]}}
            else:
                spec = {"encoder": {"type": encoder.registry_name, "config": config_of(encoder, name, "encoder")}}
            spec["input"] = (
                None if unit is None else {"type": unit.registry_name, "config": config_of(unit, name, "input")}
            )
            fields[name] = spec
        zero_shot = None if self.zero_shot is None else asdict(self.zero_shot)
        return {"format": FORMAT, "version": FORMAT_VERSION, "output_dim": self.output_dim, "fields": fields,
                "zero_shot": zero_shot}  # fmt: skip

    def save_pretrained(self, folder: str | os.PathLike, card: str | None = None) -> Path:
        """Write the self-contained pretrained folder (see the module docstring) atomically: a save that is
        interrupted leaves any previous folder at ``folder`` whole.

        Args:
            folder: Destination.
            card: ``README.md`` text (``jointembed fit`` writes one with the run's test metrics).

        Returns:
            The folder.
        """

        def config_in(tmp: Path) -> dict[str, Any]:
            def config_of(part: Any, name: str, kind: str) -> dict[str, Any]:
                return part.save_to(tmp / "fields" / name / kind)

            return self._config(config_of)

        return write_folder(folder, config_in, state_for_saving(self), card=card)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        strict: bool = True,
        map_location: str | torch.device = "cpu",
        cache_dir: str | os.PathLike | None = None,
    ) -> JointEmbeddingModel:
        """Load a model, in eval mode, from a pretrained folder, a Lightning ``.ckpt`` written by ``jointembed
        fit``, or a Hugging Face hub repo id (offline from the cache when ``HF_HUB_OFFLINE=1``).

        Args:
            name_or_path: The folder, the ``.ckpt`` file, or ``owner/name`` on the hub.
            strict: Require the weights' keys to match the model's exactly (else load the common ones, warn and
                skip the rest).
            map_location: Device the weights are loaded onto.
            cache_dir: Hugging Face cache folder for a hub repo id (``None``: the default cache).

        Raises:
            CheckpointError: A file is missing, truncated or tampered with; the format or version is not one this
                version reads; a field's encoder or input type is unknown or its config does not fit; or
                (strict) keys are missing or unexpected. The message names the file and the field or key.
        """
        path = resolve_folder(name_or_path, None if cache_dir is None else str(cache_dir))
        if path.is_file():
            with open_checkpoint(path) as checkpoint:
                config = checkpoint.get(CHECKPOINT_KEY)
                if not isinstance(config, dict):
                    raise CheckpointError(
                        f"{path}: no '{CHECKPOINT_KEY}' entry: not written by jointembed's ContrastiveTask"
                    )
                model = cls._build(config, path, None)
                prefix = "model."
                state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
                load_weights(model, path, strict=strict, map_location=map_location, state=state)
        else:
            with open_folder(path, FORMAT, (1, FORMAT_VERSION), fetched=path != Path(name_or_path)) as (folder, config):
                model = cls._build(config, folder / CONFIG_NAME, folder)
                load_weights(model, folder / WEIGHTS_NAME, strict=strict, map_location=map_location)
        return model.to(map_location).eval()

    @classmethod
    def _build(cls, config: Mapping[str, Any], source: Path, folder: Path | None) -> JointEmbeddingModel:
        """A model (random weights) from a config: version 2 ``fields``, or version 1 ``encoders``."""
        if config.get("version") == 1:
            fields = {name: {"encoder": spec, "input": None} for name, spec in dict(config.get("encoders", {})).items()}
        else:
            fields = config.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise CheckpointError(f"{source}: field 'fields' must map field names to {{'encoder', 'input'}}")
        encoders, inputs, share = {}, {}, {}
        for name, spec in fields.items():
            where = None if folder is None else folder / "fields" / name
            try:
                if "shared_with" in spec["encoder"]:
                    share[name] = spec["encoder"]["shared_with"]
                else:
                    encoders[name] = _part(get_encoder_class, spec["encoder"], where, "encoder")
                if spec.get("input") is not None:
                    inputs[name] = _part(get_modality_class, spec["input"], where, "input")
            except CheckpointError:
                raise
            except (KeyError, TypeError, ValueError, OSError, RuntimeError) as error:
                raise CheckpointError(f"{source}: cannot build field {name!r}: {error}") from error
        try:
            model = cls(encoders, inputs, share)
        except ValueError as error:
            raise CheckpointError(f"{source}: {error}") from error
        zero_shot = config.get("zero_shot")
        if zero_shot:
            try:
                model.set_zero_shot(zero_shot["label_names"], zero_shot["prompts"], zero_shot["field"])
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{source}: field 'zero_shot' is invalid: {error}") from error
        return model

    def load_weights(
        self, path: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> None:
        """Load a ``model.safetensors`` file into this model (see :func:`jointembed.pretrained.load_weights`)."""
        load_weights(self, path, strict=strict, map_location=map_location)


def _part(class_of: Any, spec: Mapping[str, Any], field_folder: Path | None, kind: str) -> Any:
    """Build an encoder or input unit from ``{"type", "config"}`` (with its files, when loading a folder)."""
    part_class = class_of(spec["type"])
    config = dict(spec.get("config", {}))
    return part_class(**config) if field_folder is None else part_class.load_from(config, field_folder / kind)


def _maybe_progress(loader: DataLoader, show: bool, field: str) -> Any:
    if not show:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=f"embedding {field}", unit="batch")
