"""Multimodal examples from manifests: each field's modality unit decodes and batches it; a LightningDataModule.

The data is *bound* to the model's fields (:meth:`MultimodalDataModule.bind`): field name = manifest column,
field unit = the :class:`~jointembed.modalities.base.Modality` that parses, decodes, preprocesses and batches
that column. The training task binds the model's own units, so training and inference share one code path.

A batch of B examples (from :func:`collate_multimodal`) is a dict:

* ``"present"``: ``{field: BoolTensor (B,)}`` for every bound field, whether each example has it;
* one entry per field: the unit's batch of the examples that have it, in example order (a
  :class:`~jointembed.sparse.SparseBatch` for ids, ``list[str]`` for text, ``(n, 3, S, S)`` for images,
  ``{"waveform": (n, T), "lengths": (n,)}`` for audio);
* ``"label"``, ``"group"``: ``LongTensor (B,)``, ``-1`` where unknown; ``"row"``: ``LongTensor (B,)`` manifest rows.

Every bound field has its key even when no example of the batch has it (then ``n = 0``).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from jointembed.config import check_at_least
from jointembed.data.manifest import DEFAULT_FIELDS, ClassIndex, Manifest, ManifestRow, read_manifest, split_rows
from jointembed.data.media import BadMediaError
from jointembed.data.sampling import EpochShuffler
from jointembed.errors import DataFormatError
from jointembed.modalities.base import Modality, one_thread
from jointembed.registry import create_modality

__all__ = [
    "BadFile",
    "Example",
    "LabelledData",
    "MultimodalDataset",
    "MultimodalLoader",
    "MultimodalDataModule",
    "collate_multimodal",
]

OnBadFile = Literal["error", "skip"]


@runtime_checkable
class LabelledData(Protocol):
    """A data module whose labels have names (class index → name), e.g. for zero-shot prompts."""

    @property
    def label_names(self) -> list[str]: ...


class BadFile(NamedTuple):
    """A media file that could not be decoded, and the manifest row that references it."""

    path: str
    row: int
    manifest: str | None
    reason: str


@dataclass(frozen=True)
class Example:
    """A manifest row with its cells parsed by the bound units: ``values`` maps field → raw value."""

    row: int
    values: dict[str, Any]
    label: int = -1
    group: int = -1


class MultimodalDataset(Dataset):
    """Parsed examples → loaded (decoded, preprocessed) examples, each field by its unit.

    Each item is a dict with ``"row"``, ``"label"`` and ``"group"`` ints and one key per bound field (``None``
    where the example lacks it). With ``on_bad_file="skip"``, an example whose file cannot be decoded comes
    back with a ``"bad"`` key (a :class:`BadFile`) instead; :func:`collate_multimodal` drops it and reports it.

    Args:
        examples: The examples.
        fields: Field → unit.
        train: Preprocess for training (augmentation, random crops).
        on_bad_file: ``"error"`` raises naming the file and row; ``"skip"`` drops the example, counts it and warns
            at the end of each pass over the data.
        manifest: The manifest the rows come from, for messages.
        name: Name of the split, for messages.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        fields: Mapping[str, Modality],
        *,
        train: bool = False,
        on_bad_file: OnBadFile = "error",
        manifest: str | os.PathLike | None = None,
        name: str = "data",
    ) -> None:
        if on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        self.examples = list(examples)
        self.fields = dict(fields)
        self.manifest = None if manifest is None else Path(manifest)
        self.train, self.name, self.on_bad_file = train, name, on_bad_file
        self._bad: dict[tuple[str, int], BadFile] = {}
        self.num_skipped = 0
        self.passes = 0

    def __len__(self) -> int:
        return len(self.examples)

    def _where(self, row: int) -> str:
        return f"row {row}" if self.manifest is None else f"{self.manifest}, row {row}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.examples[index]
        item: dict[str, Any] = dict.fromkeys(self.fields)
        item.update(row=example.row, label=example.label, group=example.group)
        with one_thread():
            for name, value in example.values.items():
                try:
                    item[name] = self.fields[name].load(value, self.train)
                except BadMediaError as err:
                    located = err.at_row(self.manifest, example.row)
                    if self.on_bad_file == "error":
                        raise located from err
                    bad = BadFile(located.path or "?", example.row, located.manifest, located.reason)
                    return dict.fromkeys(self.fields) | {"row": example.row, "label": -1, "group": -1, "bad": bad}
                except (TypeError, ValueError) as err:
                    raise DataFormatError(f"{self._where(example.row)}, column {name!r}: {err}") from err
        return item

    @property
    def bad_files(self) -> list[BadFile]:
        """Every distinct bad file met so far (with ``on_bad_file="skip"``), by manifest row."""
        return sorted(self._bad.values(), key=lambda bad: (bad.row, bad.path))

    def report_skipped(self, skipped: Sequence[BadFile]) -> None:
        """Record the examples skipped during one pass over the data and warn about them (if any)."""
        self.passes += 1
        self.num_skipped += len(skipped)
        for bad in skipped:
            self._bad[(bad.path, bad.row)] = bad
        if not skipped:
            return
        rank = (
            torch.distributed.get_rank()
            if torch.distributed.is_available() and torch.distributed.is_initialized()
            else 0
        )
        prefix = f"[rank {rank}] " if rank else ""
        shown = sorted(set(skipped), key=lambda bad: bad.row)
        details = "; ".join(f"{bad.path} (row {bad.row}): {bad.reason}" for bad in shown[:20])
        more = f"; and {len(shown) - 20} more" if len(shown) > 20 else ""
        source = f" of {self.manifest}" if self.manifest is not None else ""
        warnings.warn(
            f"{prefix}{self.name}{source}, pass {self.passes}: skipped {len(skipped)} example(s) whose media "
            f"file could not be read (on_bad_file='skip'): {details}{more}",
            stacklevel=2,
        )


def collate_multimodal(examples: Sequence[dict[str, Any]], fields: Mapping[str, Modality]) -> dict[str, Any]:
    """Batch items of :class:`MultimodalDataset`; see the module docstring for the batch layout.

    Args:
        examples: Item dicts; those with a ``"bad"`` key are dropped and listed under ``"skipped"`` (a key
            present only when something was skipped; :class:`MultimodalLoader` removes it).
        fields: Field → unit; each field's present values are batched by its unit's ``collate``.

    Returns:
        The batch dict.
    """
    good = [ex for ex in examples if "bad" not in ex]
    present = {f: torch.tensor([ex.get(f) is not None for ex in good], dtype=torch.bool) for f in fields}
    batch: dict[str, Any] = {"present": present}
    for name, unit in fields.items():
        batch[name] = unit.collate([ex[name] for ex in good if ex.get(name) is not None])
    for key in ("label", "group", "row"):
        batch[key] = torch.tensor([int(ex.get(key, -1)) for ex in good], dtype=torch.long)
    skipped = [ex["bad"] for ex in examples if "bad" in ex]
    if skipped:
        batch["skipped"] = skipped
    return batch


class MultimodalLoader(DataLoader):
    """A DataLoader that takes the ``"skipped"`` reports out of each batch, drops batches left empty, and at the
    end of each pass calls the dataset's ``report_skipped`` (in the main process, whatever ``num_workers``)."""

    def __iter__(self) -> Iterator[Any]:
        skipped: list[BadFile] = []
        try:
            for batch in super().__iter__():
                if isinstance(batch, dict):
                    skipped.extend(batch.pop("skipped", ()))
                    if len(batch["row"]) == 0:
                        continue
                yield batch
        finally:
            report = getattr(self.dataset, "report_skipped", None)
            if report is not None:
                report(skipped)


_SPLITS = ("train", "val", "test")
PREDICT = "predict"


class MultimodalDataModule(LightningDataModule):
    """Train/val/test/predict multimodal data from manifests (see :mod:`jointembed.data.manifest` for the format).

    Give either ``train`` (and optionally ``val``, ``test``) manifests, or one ``manifest`` and a seeded
    ``split``; a ``predict`` manifest may come with either, or alone (to embed it with a trained model). Labels
    map to indices over the train/val/test splits (integers as they are, strings by sorted order);
    :attr:`label_names` names them, e.g. for zero-shot prompts. The predict split needs no labels (any it has
    are ignored) and never shapes the units: an ids vocabulary is fitted on the training split only.

    The columns are fields of a model: :meth:`bind` gives the units that parse and load them. The contrastive
    task binds its model's units before training; a data module used on its own binds default units (the types
    named by ``fields``) when its first loader is made.

    Args:
        train: Training manifest (``.jsonl``/``.json``/``.csv``).
        val: Validation manifest.
        test: Test manifest.
        predict: Manifest to embed (``jointembed predict``): served in manifest order, each batch's ``"row"``
            holding the examples' manifest rows and ``"present"`` the fields each has.
        manifest: One manifest to split, instead of ``train``/``val``/``test``.
        split: ``(train, val, test)`` fractions of ``manifest``, summing to 1.
        split_by: ``"group"`` (e.g. a speaker) or ``"label"`` keeps each value's rows in one split; ``None``
            splits by row.
        fields: For use without a model: column → modality type (``{"title": "text", "poster": "image"}``);
            ``None`` reads the columns ``ids``, ``text``, ``image``, ``audio`` as those types.
        label_names: Names of integer labels ``0..K-1`` (e.g. ``["zero", "one", ...]``); default ``"0".."K-1"``.
        augment: Augment training examples (each unit's training transform: random image affine, random audio
            crop and gain).
        batch_size: Examples per batch.
        num_workers: DataLoader worker processes (decoding runs in them).
        on_bad_file: ``"error"`` or ``"skip"`` (skipped files are counted, warned about at the end of each
            epoch and listed in :attr:`bad_files`).
        seed: Seed of the split and of the training shuffle.
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        predict: str | None = None,
        manifest: str | None = None,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_by: str | None = "group",
        fields: dict[str, str] | None = None,
        label_names: list[str] | None = None,
        augment: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        on_bad_file: OnBadFile = "error",
        seed: int = 0,
    ) -> None:
        super().__init__()
        named = train is not None or val is not None or test is not None
        if manifest is not None and named:
            raise ValueError("give either train/val/test manifests or one manifest to split, not both")
        if manifest is None and not named and predict is None:
            raise ValueError("give either train/val/test manifests or one manifest to split (or a predict manifest)")
        if split_by not in (None, "group", "label"):
            raise ValueError(f"split_by must be None, 'group' or 'label', got {split_by!r}")
        if on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        check_at_least("batch_size", batch_size, 1)
        check_at_least("num_workers", num_workers, 0)
        self.save_hyperparameters()
        self._manifests: dict[str, tuple[Manifest, list[ManifestRow]]] | None = None
        self.fields: dict[str, Modality] = {}
        self.datasets: dict[str, MultimodalDataset] = {}

    def _read_splits(self) -> dict[str, tuple[Manifest, list[ManifestRow]]]:
        hp = self.hparams
        out = {}
        if hp.manifest is not None:
            whole = read_manifest(hp.manifest)
            parts = split_rows(whole.rows, hp.split, hp.seed, hp.split_by)
            out = {name: (whole, list(part)) for name, part in zip(_SPLITS, parts, strict=True)}
        for name in (*_SPLITS, PREDICT):
            if hp.get(name) is not None:
                read = read_manifest(hp[name])
                out[name] = (read, list(read.rows))
        return out

    def _prepare(self) -> dict[str, tuple[Manifest, list[ManifestRow]]]:
        """Read (once) the manifests, and build the label and group mappings (of every split but predict)."""
        if self._manifests is None:
            manifests = self._read_splits()
            every = [row for name, (_, rows) in manifests.items() if name != PREDICT for row in rows]
            self.labels = ClassIndex((row.label for row in every), self.hparams.label_names)
            self.groups = ClassIndex(row.group for row in every)
            self._manifests = manifests
        return self._manifests

    @property
    def columns(self) -> list[str]:
        """Every column with a cell in some row of some split (``label`` and ``group`` aside)."""
        return list(dict.fromkeys(c for m, _ in self._prepare().values() for c in m.columns))

    @property
    def label_names(self) -> list[str]:
        """Class names by label index (for zero-shot prompts)."""
        self._prepare()
        return list(self.labels.names)

    @property
    def group_names(self) -> list[str]:
        """Group names by group index."""
        self._prepare()
        return list(self.groups.names)

    @property
    def bad_files(self) -> dict[str, list[BadFile]]:
        """Per split, the distinct files skipped so far with ``on_bad_file="skip"``."""
        return {name: ds.bad_files for name, ds in self.datasets.items()}

    def default_fields(self) -> dict[str, Modality]:
        """Units of the types named by ``fields`` (default: ``ids``/``text``/``image``/``audio`` columns)."""
        mapping = self.hparams.fields
        if mapping is None:
            mapping = {c: DEFAULT_FIELDS[c] for c in self.columns if c in DEFAULT_FIELDS}
        return {column: create_modality(kind) for column, kind in mapping.items()}

    def setup(self, stage: str | None = None) -> None:
        """Read the manifests (the datasets are built by :meth:`bind`)."""
        self._prepare()

    def bind(self, fields: Mapping[str, Modality]) -> None:
        """Serve ``fields`` (field = manifest column → its unit): parse every split's cells with the units, fit
        the units that are not fitted yet (an ids vocabulary) on the training split, and build the datasets.

        Rows with none of the fields are dropped with a warning; columns that are not fields are ignored with
        a warning.

        Raises:
            DataFormatError: A cell the unit cannot parse (file, row and column named).
            ValueError: The training or predict split has no row with any of the fields (the message lists the
                fields and the manifest's columns), or the predict split has values of a field whose unit is
                not fitted and no other split fits it.
        """
        fields = dict(fields)
        manifests = self._prepare()
        parsed = {name: self._parse(manifest, rows, fields, name) for name, (manifest, rows) in manifests.items()}
        for name, said, what in (("train", "training", "nothing to train on"), (PREDICT, PREDICT, "nothing to embed")):
            if name in parsed and not parsed[name]:
                manifest = manifests[name][0]
                if not manifests[name][1]:
                    raise ValueError(f"{manifest.path}: the {said} split has no rows; {what}")
                raise ValueError(
                    f"{manifest.path}: no {said} row has any of the model's fields {sorted(fields)}; the manifest "
                    f"has the columns {list(manifest.columns)}"
                )
        # What is embedded must not change how it is looked up: the predict split never fits a unit.
        every = [ex for name, part in parsed.items() if name != PREDICT for ex in part]
        for field_name, unit in fields.items():
            if not unit.fitted:
                values = [ex.values[field_name] for ex in parsed.get("train", every) if field_name in ex.values]
                unit.fit(values, [ex.values[field_name] for ex in every if field_name in ex.values])
            if not unit.fitted and any(field_name in ex.values for ex in parsed.get(PREDICT, ())):
                raise ValueError(
                    f"{manifests[PREDICT][0].path}: field {field_name!r} needs its {unit.registry_name} input fitted "
                    "(e.g. an ID vocabulary) and the predict split does not fit it: use a trained model's units "
                    "(jointembed predict --ckpt_path restores them) or give the training manifest"
                )
        self._check(manifests, parsed, fields)
        self.fields = fields
        self.datasets = {
            name: MultimodalDataset(
                part,
                fields,
                train=name == "train" and self.hparams.augment,
                on_bad_file=self.hparams.on_bad_file,
                manifest=manifests[name][0].path,
                name=name,
            )
            for name, part in parsed.items()
            if part
        }

    @staticmethod
    def _check(
        manifests: Mapping[str, tuple[Manifest, Any]],
        parsed: Mapping[str, list[Example]],
        fields: Mapping[str, Modality],
    ) -> None:
        """Every parsed value against its fitted unit, so a value the model cannot take fails now, by row."""
        for split, examples in parsed.items():
            manifest = manifests[split][0]
            for example in examples:
                for name, value in example.values.items():
                    try:
                        fields[name].check(value)
                    except ValueError as err:
                        raise DataFormatError(f"{manifest.where(example.row)}, column {name!r}: {err}") from err

    def _parse(
        self, manifest: Manifest, rows: Sequence[ManifestRow], fields: Mapping[str, Modality], split: str
    ) -> list[Example]:
        ignored = sorted({c for row in rows for c in row.columns} - set(fields))
        if ignored:
            warnings.warn(
                f"{manifest.path} ({split}): columns {ignored} are not fields of the model {sorted(fields)}; "
                "they are ignored",
                stacklevel=3,
            )
        examples, dropped = [], 0
        for row in rows:
            values = {}
            for name, unit in fields.items():
                if name in row.cells:
                    try:
                        values[name] = unit.parse_cell(row.cells[name], manifest.base, manifest.from_csv)
                    except (TypeError, ValueError) as err:
                        raise DataFormatError(f"{manifest.where(row.row)}, column {name!r}: {err}") from err
            if not values:
                dropped += 1
                continue
            if split == PREDICT:  # labels of rows to embed are not looked up: they may be unknown, or absent
                examples.append(Example(row.row, values))
            else:
                examples.append(Example(row.row, values, self.labels.index(row.label), self.groups.index(row.group)))
        if dropped:
            warnings.warn(
                f"{manifest.path} ({split}): dropped {dropped} row(s) with none of the fields {sorted(fields)}",
                stacklevel=3,
            )
        return examples

    def _loader(self, name: str) -> MultimodalLoader | list:
        if not self.fields:
            self.bind(self.default_fields())
        dataset = self.datasets.get(name)
        if dataset is None:
            return []  # Lightning skips a stage whose loaders are an empty list
        hp = self.hparams
        train = name == "train"
        return MultimodalLoader(
            dataset,
            batch_size=hp.batch_size,
            sampler=EpochShuffler(len(dataset), hp.seed) if train else None,
            drop_last=train and len(dataset) > hp.batch_size,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            collate_fn=functools.partial(collate_multimodal, fields=self.fields),
            # Its own generator: otherwise each new iterator draws its worker seed from the global RNG, and a
            # resumed run (which makes a different number of iterators) would augment with other random numbers.
            generator=torch.Generator().manual_seed(hp.seed),
        )

    def train_dataloader(self) -> MultimodalLoader | list:
        """Shuffled training batches, the order a function of the seed and the epoch (so a resumed run sees
        the batches an uninterrupted one would); the last incomplete batch is dropped."""
        return self._loader("train")

    def val_dataloader(self) -> MultimodalLoader | list:
        """Validation batches in manifest order (an empty list when there is no validation split)."""
        return self._loader("val")

    def test_dataloader(self) -> MultimodalLoader | list:
        """Test batches in manifest order (an empty list when there is no test split)."""
        return self._loader("test")

    def predict_dataloader(self) -> MultimodalLoader | list:
        """Batches of the predict manifest in manifest order, never shuffled (an empty list when it was not given);
        ``batch["row"]`` ``(B,)`` holds each example's manifest row, ``batch["present"]`` its fields."""
        return self._loader(PREDICT)
