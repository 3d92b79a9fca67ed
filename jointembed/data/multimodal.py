"""Multimodal examples from manifests: decoding, transforms, per-modality collate and a LightningDataModule.

A batch of B examples (from :func:`collate_multimodal`) is a dict:

* ``"present"``: ``{modality: BoolTensor (B,)}`` for every modality served, whether each example has it;
* ``"ids"``: :class:`~jointembed.sparse.SparseBatch`, one bag per example that has IDs, in example order;
* ``"text"``: ``list[str]`` of the examples that have text, in example order;
* ``"image"``: ``FloatTensor (n, 3, H, W)`` in [0, 1] of the examples that have an image;
* ``"audio"``: ``{"waveform": FloatTensor (n, T), "lengths": LongTensor (n,)}``, mono, zero-padded to the
  longest clip in the batch (each clip already cropped to ``max_audio_seconds``);
* ``"label"``, ``"group"``: ``LongTensor (B,)``, ``-1`` where unknown; ``"row"``: ``LongTensor (B,)`` manifest rows.

Every served modality has its key even when no example of the batch has it (then ``n = 0``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from jointembed.data.manifest import MODALITIES, ClassIndex, IdMapper, ManifestRow, read_manifest, split_rows
from jointembed.data.media import BadMediaError, load_audio, load_image
from jointembed.sparse import SparseBatch
from jointembed.vocab import Vocabulary

__all__ = [
    "BadFile",
    "MultimodalDataset",
    "MultimodalLoader",
    "MultimodalDataModule",
    "collate_multimodal",
    "image_transform",
]

OnBadFile = Literal["error", "skip"]


class BadFile(NamedTuple):
    """A media file that could not be decoded, and the manifest row that references it."""

    path: str
    row: int
    manifest: str | None
    reason: str


def image_transform(image_size: int, augment: bool = False, strength: float = 1.0) -> v2.Compose:
    """The image pipeline: uint8 ``(3, h, w)`` → float ``(3, image_size, image_size)`` in [0, 1].

    Resizes the shorter side to ``image_size`` and centre-crops the square (so square images are just resized);
    with ``augment``, a small random affine transform follows: rotation up to ``10 * strength`` degrees,
    translation up to ``10 * strength`` % and scaling by ``1 ± 0.1 * strength``.
    """
    steps: list[Any] = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    if augment and strength > 0:
        shift = min(0.1 * strength, 1.0)
        steps.append(
            v2.RandomAffine(
                degrees=10.0 * strength,
                translate=(shift, shift),
                scale=(1 - shift, 1 + shift),
                interpolation=v2.InterpolationMode.BILINEAR,
            )
        )
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run per-example transforms single-threaded: on tensors this small, intra-op threads only add
    synchronisation, which costs 10-20x when the cores are busy (DataLoader workers already use one thread)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MultimodalDataset(Dataset):
    """Manifest rows → decoded, transformed examples.

    Each example is a dict with ``"row"``, ``"label"`` and ``"group"`` ints and one key per served modality:
    ``"ids"`` (``list[int]`` table indices), ``"text"`` (str), ``"image"`` (``(3, S, S)`` float in [0, 1]),
    ``"audio"`` (``(T,)`` float, ``T <= max_audio_seconds * sample_rate``), ``None`` where the row lacks it.
    With ``on_bad_file="skip"``, an example whose file cannot be decoded comes back with a ``"bad"`` key
    (a :class:`BadFile`) instead; :func:`collate_multimodal` drops it and reports it in the batch.

    Args:
        rows: The examples.
        modalities: Modalities to serve (others are ignored); ``None`` serves those the rows have.
        train: Training split: enables augmentation (when ``augment``) and random audio crops.
        augment: Augment training examples (image affine transform, audio gain).
        augment_strength: Scale of the image affine transform (see :func:`image_transform`).
        audio_gain_db: Training audio is scaled by a random gain uniform in ``±audio_gain_db`` dB (0: off).
        image_size: Side of the square images.
        sample_rate: Audio rate in Hz; files at other rates are resampled.
        max_audio_seconds: Longer clips are cropped (randomly when training, centred otherwise); ``None`` keeps all.
        on_bad_file: ``"error"`` raises :class:`~jointembed.data.media.BadMediaError` naming the file and row;
            ``"skip"`` drops the example, counts it and warns at the end of each pass over the data.
        id_mapper: Maps raw IDs to table indices; ``None`` builds one from ``rows``.
        labels: Maps labels to indices; ``None`` builds one from ``rows``.
        groups: Maps groups to indices; ``None`` builds one from ``rows``.
        manifest: The manifest the rows come from, for messages.
        name: Name of the split, for messages.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        *,
        modalities: Sequence[str] | None = None,
        train: bool = False,
        augment: bool = True,
        augment_strength: float = 1.0,
        audio_gain_db: float = 6.0,
        image_size: int = 32,
        sample_rate: int = 8000,
        max_audio_seconds: float | None = 1.0,
        on_bad_file: OnBadFile = "error",
        id_mapper: IdMapper | None = None,
        labels: ClassIndex | None = None,
        groups: ClassIndex | None = None,
        manifest: str | os.PathLike | None = None,
        name: str = "data",
    ) -> None:
        if on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        self.rows = list(rows)
        seen = {m for row in self.rows for m in row.modalities}
        self.modalities = tuple(m for m in MODALITIES if m in seen) if modalities is None else tuple(modalities)
        self.manifest = None if manifest is None else Path(manifest)
        self.train, self.name, self.on_bad_file = train, name, on_bad_file
        self.augment = augment and train
        self.audio_gain_db = audio_gain_db
        self.sample_rate = sample_rate
        self.max_samples = None if max_audio_seconds is None else max(1, round(max_audio_seconds * sample_rate))
        self.transform = image_transform(image_size, self.augment, augment_strength)
        mapper = id_mapper if id_mapper is not None else IdMapper(self.rows, self.rows)
        self._ids = [mapper.encode(row, self.manifest) for row in self.rows]
        labels = labels if labels is not None else ClassIndex(row.label for row in self.rows)
        groups = groups if groups is not None else ClassIndex(row.group for row in self.rows)
        self._labels = [labels.index(row.label) for row in self.rows]
        self._groups = [groups.index(row.group) for row in self.rows]
        self._bad: dict[tuple[str, int], BadFile] = {}
        self.num_skipped = 0
        self.passes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def _crop(self, wave: torch.Tensor) -> torch.Tensor:
        if self.max_samples is None or wave.numel() <= self.max_samples:
            return wave
        spare = wave.numel() - self.max_samples
        start = int(torch.randint(0, spare + 1, ())) if self.augment else spare // 2
        return wave[start : start + self.max_samples]

    def _decode(self, row: ManifestRow, example: dict[str, Any]) -> None:
        with _one_thread():
            self._decode_media(row, example)

    def _decode_media(self, row: ManifestRow, example: dict[str, Any]) -> None:
        if "image" in self.modalities and row.image is not None:
            example["image"] = self.transform(load_image(row.image))
        if "audio" in self.modalities and row.audio is not None:
            wave = self._crop(load_audio(row.audio, self.sample_rate))
            if self.augment and self.audio_gain_db > 0:
                decibels = (torch.rand(()) * 2 - 1) * self.audio_gain_db
                wave = wave * torch.pow(10.0, decibels / 20)
            example["audio"] = wave

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        example: dict[str, Any] = {m: None for m in self.modalities}
        example.update(row=row.row, label=self._labels[index], group=self._groups[index])
        if "ids" in self.modalities and row.ids is not None:
            example["ids"] = self._ids[index]
        if "text" in self.modalities:
            example["text"] = row.text
        try:
            self._decode(row, example)
        except BadMediaError as err:
            located = err.at_row(self.manifest, row.row)
            if self.on_bad_file == "error":
                raise located from err
            bad = BadFile(located.path or "?", row.row, located.manifest, located.reason)
            return {m: None for m in self.modalities} | {"row": row.row, "label": -1, "group": -1, "bad": bad}
        return example

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


def _pack_audio(waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    waveform = torch.zeros(len(waves), int(lengths.max()) if waves else 0)
    for i, wave in enumerate(waves):
        waveform[i, : wave.numel()] = wave
    return {"waveform": waveform, "lengths": lengths}


def collate_multimodal(
    examples: Sequence[dict[str, Any]], modalities: Sequence[str] | None = None, image_size: int | None = None
) -> dict[str, Any]:
    """Batch examples of :class:`MultimodalDataset`; see the module docstring for the batch layout.

    Args:
        examples: Example dicts; those with a ``"bad"`` key are dropped and listed under ``"skipped"``
            (a key present only when something was skipped; :class:`MultimodalLoader` removes it).
        modalities: Modalities to batch; ``None`` takes every modality key found in the examples.
        image_size: Side of an empty image batch's ``(0, 3, S, S)`` tensor; ``None`` gives ``(0, 3, 0, 0)``.

    Returns:
        The batch dict.
    """
    good = [ex for ex in examples if "bad" not in ex]
    if modalities is None:
        modalities = [m for m in MODALITIES if any(m in ex for ex in examples)]
    present = {m: torch.tensor([ex.get(m) is not None for ex in good], dtype=torch.bool) for m in modalities}
    batch: dict[str, Any] = {"present": present}
    for m in modalities:
        items = [ex[m] for ex in good if ex.get(m) is not None]
        if m == "ids":
            batch[m] = SparseBatch.from_lists(items)
        elif m == "text":
            batch[m] = items
        elif m == "image":
            side = image_size or 0
            batch[m] = torch.stack(items) if items else torch.zeros(0, 3, side, side)
        elif m == "audio":
            batch[m] = _pack_audio(items)
        else:
            raise ValueError(f"unknown modality {m!r}; known: {', '.join(MODALITIES)}")
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


class MultimodalDataModule(LightningDataModule):
    """Train/val/test multimodal data from manifests (see :mod:`jointembed.data.manifest` for the format).

    Give either ``train`` (and optionally ``val``, ``test``) manifests, or one ``manifest`` and a seeded
    ``split``. Labels map to indices over every split (integers as they are, strings by sorted order);
    :attr:`label_names` names them, e.g. for zero-shot prompts. :attr:`num_ids` is the size of the table the
    IDs index (see :class:`~jointembed.data.manifest.IdMapper`). Both are available right after construction.

    Args:
        train: Training manifest (``.jsonl``/``.json``/``.csv``).
        val: Validation manifest.
        test: Test manifest.
        manifest: One manifest to split, instead of ``train``/``val``/``test``.
        split: ``(train, val, test)`` fractions of ``manifest``, summing to 1.
        split_by: ``"group"`` (e.g. a speaker) or ``"label"`` keeps each value's rows in one split; ``None``
            splits by row.
        modalities: Serve only these modalities (rows left with none are dropped, with a warning); ``None``
            serves every modality found in the manifests.
        label_names: Names of integer labels ``0..K-1`` (e.g. ``["zero", "one", ...]``); default ``"0".."K-1"``.
        image_size: Side of the square images in a batch.
        augment: Augment training examples (random affine images, random audio crops and gain).
        augment_strength: Scale of the image affine augmentation (rotation ``10 * s`` degrees, shift and zoom
            ``10 * s`` %).
        audio_gain_db: Range of the random training gain in dB (0 disables it).
        sample_rate: Audio sample rate in Hz; files at other rates are resampled.
        max_audio_seconds: Longer clips are cropped to this; ``None`` keeps whole clips.
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
        manifest: str | None = None,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_by: str | None = "group",
        modalities: list[str] | None = None,
        label_names: list[str] | None = None,
        image_size: int = 32,
        augment: bool = True,
        augment_strength: float = 1.0,
        audio_gain_db: float = 6.0,
        sample_rate: int = 8000,
        max_audio_seconds: float | None = 1.0,
        batch_size: int = 64,
        num_workers: int = 0,
        on_bad_file: OnBadFile = "error",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if (manifest is None) == (train is None and val is None and test is None):
            raise ValueError("give either train/val/test manifests or one manifest to split, not both or neither")
        if split_by not in (None, "group", "label"):
            raise ValueError(f"split_by must be None, 'group' or 'label', got {split_by!r}")
        if modalities is not None and (unknown := [m for m in modalities if m not in MODALITIES]):
            raise ValueError(f"unknown modality {unknown[0]!r}; known: {', '.join(MODALITIES)}")
        if on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        if image_size < 1 or batch_size < 1 or num_workers < 0 or sample_rate < 1:
            raise ValueError("image_size, batch_size and sample_rate must be >= 1 and num_workers >= 0")
        self.save_hyperparameters()
        self._rows: dict[str, list[ManifestRow]] | None = None
        self._sources: dict[str, Path] = {}
        self.datasets: dict[str, MultimodalDataset] = {}

    def _read_splits(self) -> dict[str, list[ManifestRow]]:
        hp = self.hparams
        if hp.manifest is not None:
            whole = read_manifest(hp.manifest)
            parts = split_rows(whole.rows, hp.split, hp.seed, hp.split_by)
            self._sources = dict.fromkeys(_SPLITS, whole.path)
            return dict(zip(_SPLITS, map(list, parts), strict=True))
        rows = {}
        for name in _SPLITS:
            if hp[name] is not None:
                read = read_manifest(hp[name])
                self._sources[name], rows[name] = read.path, list(read.rows)
        return rows

    def _prepare(self) -> dict[str, list[ManifestRow]]:
        """Read (once) the manifests, and build the ID, label and group mappings."""
        if self._rows is not None:
            return self._rows
        rows = self._read_splits()
        every = [row for part in rows.values() for row in part]
        found = {m for row in every for m in row.modalities}
        wanted = self.hparams.modalities
        if wanted is None:
            self.modalities = [m for m in MODALITIES if m in found]
        else:
            if missing := [m for m in wanted if m not in found]:
                raise ValueError(f"modality {missing[0]!r} requested, but no manifest row has it")
            self.modalities = list(wanted)
            for name, part in rows.items():
                kept = [row for row in part if set(row.modalities) & set(wanted)]
                if len(kept) < len(part):
                    warnings.warn(f"{name}: dropped {len(part) - len(kept)} row(s) with none of {wanted}", stacklevel=2)
                rows[name] = kept
        self.id_mapper = IdMapper(rows.get("train", every), every)
        self.labels = ClassIndex((row.label for row in every), self.hparams.label_names)
        self.groups = ClassIndex(row.group for row in every)
        self._rows = rows
        return rows

    @property
    def label_names(self) -> list[str]:
        """Class names by label index (for zero-shot prompts)."""
        self._prepare()
        return list(self.labels.names)

    @property
    def num_ids(self) -> int:
        """Rows of the ID embedding table that the ``ids`` bags index (0 when no manifest has IDs)."""
        self._prepare()
        return self.id_mapper.num_ids

    @property
    def id_vocabulary(self) -> Vocabulary | None:
        """The vocabulary of string IDs, built on the training manifest; ``None`` when IDs are integers."""
        self._prepare()
        return self.id_mapper.vocabulary

    @property
    def group_names(self) -> list[str]:
        """Group names by group index."""
        self._prepare()
        return list(self.groups.names)

    @property
    def bad_files(self) -> dict[str, list[BadFile]]:
        """Per split, the distinct files skipped so far with ``on_bad_file="skip"``."""
        return {name: ds.bad_files for name, ds in self.datasets.items()}

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of the splits that have rows."""
        hp = self.hparams
        for name, rows in self._prepare().items():
            if name in self.datasets or not rows:
                continue
            self.datasets[name] = MultimodalDataset(
                rows,
                modalities=self.modalities,
                train=name == "train",
                augment=hp.augment,
                augment_strength=hp.augment_strength,
                audio_gain_db=hp.audio_gain_db,
                image_size=hp.image_size,
                sample_rate=hp.sample_rate,
                max_audio_seconds=hp.max_audio_seconds,
                on_bad_file=hp.on_bad_file,
                id_mapper=self.id_mapper,
                labels=self.labels,
                groups=self.groups,
                manifest=self._sources.get(name),
                name=name,
            )

    def _loader(self, name: str) -> MultimodalLoader | list:
        if name not in self.datasets:
            self.setup()
        dataset = self.datasets.get(name)
        if dataset is None:
            return []  # Lightning skips a stage whose loaders are an empty list
        hp = self.hparams
        train = name == "train"
        return MultimodalLoader(
            dataset,
            batch_size=hp.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > hp.batch_size,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            collate_fn=functools.partial(collate_multimodal, modalities=self.modalities, image_size=hp.image_size),
            generator=torch.Generator().manual_seed(hp.seed) if train else None,
        )

    def train_dataloader(self) -> MultimodalLoader | list:
        """Shuffled (seeded) training batches; the last incomplete batch is dropped."""
        return self._loader("train")

    def val_dataloader(self) -> MultimodalLoader | list:
        """Validation batches in manifest order (an empty list when there is no validation split)."""
        return self._loader("val")

    def test_dataloader(self) -> MultimodalLoader | list:
        """Test batches in manifest order (an empty list when there is no test split)."""
        return self._loader("test")
