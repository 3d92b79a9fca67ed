"""Datasets laid out as one folder per class, each file's fold in its name (ESC-10/ESC-50 style), split by fold.

The layout::

    root/
      001 - Dog bark/1-100032-A.ogg     # class folder "<number> - <name>", file "<fold>-<source id>-<take>.<ext>"
      001 - Dog bark/2-114280-A.ogg
      002 - Rain/1-17367-A.ogg
      ...

A class is a sub-folder of ``root`` (hidden ones and files beside them, such as a README, are ignored); its name
is the folder's without a leading number (``"001 - Dog bark"`` → ``"dog bark"``). A file's fold is what
``fold_pattern`` matches at the start of its name. Each file becomes one example with two fields: the file
(``"audio"`` by default) and the class name as text (``"text"``), labelled by its class, so a contrastive model
learns sounds and names together and classifies by name (zero-shot). The protocol of the ESC paper is one
``test_fold`` held out and the other folds trained on; ``jointembed crossval`` runs every rotation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jointembed.config import check_at_least
from jointembed.data.manifest import Manifest, ManifestRow
from jointembed.data.multimodal import MultimodalDataModule, OnBadFile
from jointembed.errors import DataFormatError

__all__ = ["ClassFolderDataModule", "FolderFile", "FoldNotFoundError", "scan_class_folders"]

EXTENSIONS = {
    "audio": (".wav", ".ogg", ".flac", ".aiff", ".aif", ".mp3"),
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
}
_NUMBERED = re.compile(r"^\s*\d+\s*[-_.]\s*(.+)$")


class FoldNotFoundError(ValueError):
    """A fold asked for (to test or validate on) that no file of the dataset is in; the message lists the folds
    there are."""


@dataclass(frozen=True)
class FolderFile:
    """One file of a class-folder dataset."""

    path: Path
    label: str
    fold: int


def class_name(folder: str, lowercase: bool = True) -> str:
    """``"001 - Dog bark"`` → ``"dog bark"`` (a leading number and separator dropped, optionally lower-cased)."""
    match = _NUMBERED.match(folder)
    name = (match.group(1) if match else folder).strip()
    return name.lower() if lowercase else name


def scan_class_folders(
    root: str | os.PathLike, extensions: Sequence[str], fold_pattern: str = r"(\d+)-", lowercase: bool = True
) -> list[FolderFile]:
    """Every file of a class-folder dataset, classes in folder order, files in name order.

    Args:
        root: The dataset's folder.
        extensions: File endings that count (compared lower-case, with the dot).
        fold_pattern: Regular expression matched at the start of each file name; its first group is the fold.
        lowercase: Lower-case the class names.

    Raises:
        DataFormatError: ``root`` is not a folder, has no class folder, a class folder holds no file of
            ``extensions``, two folders give the same class name, or a file name has no fold (each named).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: not a folder (expected one sub-folder per class)")
    pattern = re.compile(fold_pattern)
    if pattern.groups < 1:
        raise ValueError(f"fold_pattern {fold_pattern!r} needs a group that captures the fold number")
    endings = tuple(e.lower() for e in extensions)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataFormatError(f"{root}: no class folders in it (expected one sub-folder per class)")
    files, seen = [], {}
    for folder in folders:
        label = class_name(folder.name, lowercase)
        if label in seen:
            raise DataFormatError(f"{folder} and {seen[label]} both give the class name {label!r}")
        seen[label] = folder
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in endings)
        if not found:
            raise DataFormatError(
                f"{folder}: no file ending in {', '.join(endings)} (a class folder needs at least one; remove the "
                "folder or give other extensions)"
            )
        for path in found:
            match = pattern.match(path.name)
            if match is None or not match.group(1).isdigit():
                raise DataFormatError(
                    f"{path}: the file name does not start with its fold (fold_pattern {fold_pattern!r}, e.g. "
                    "'1-100032-A.ogg' is in fold 1)"
                )
            files.append(FolderFile(path, label, int(match.group(1))))
    return files


@dataclass(frozen=True)
class _Listing(Manifest):
    """A split of a class-folder dataset, shaped as a manifest (``path`` is the dataset's folder); a row is named
    by its file."""

    files: tuple[Path, ...] = ()

    def where(self, row: int) -> str:
        return str(self.files[row - 1])


class ClassFolderDataModule(MultimodalDataModule):
    """Train/val/test splits of a class-folder dataset by fold (see the module docstring for the layout).

    The test split is the files of ``test_fold``, validation those of ``val_fold`` (if given) and training all
    the others. Labels are the class names, indexed in folder order (:attr:`label_names`, which the contrastive
    task fills into its prompts). Everything else (binding to a model's input units, loaders, ``on_bad_file``)
    is :class:`~jointembed.data.multimodal.MultimodalDataModule`'s.

    Args:
        path: The dataset's folder, one sub-folder per class.
        test_fold: Fold to test on; ``None`` for no test split.
        val_fold: Fold to validate on (taken out of training); ``None`` for no validation split.
        file_field: Name of the files' field (the model's encoder of that name reads them).
        file_type: Modality of the files: ``"audio"`` or ``"image"`` (without a model, and for ``extensions``).
        text_field: Name of the field holding each example's class name as text; ``None`` for none.
        extensions: File endings to read; ``None`` for the usual ones of ``file_type``.
        fold_pattern: Regular expression matched at the start of a file name; its first group is the fold.
        lowercase_labels: Lower-case the class names (``"Dog bark"`` → ``"dog bark"``).
        augment: Augment training examples (the unit's training transform: random crop and gain for audio).
        batch_size: Examples per batch.
        num_workers: DataLoader worker processes.
        on_bad_file: ``"error"`` or ``"skip"`` for a file that cannot be decoded.
        seed: Seed of the training shuffle.
    """

    def __init__(
        self,
        path: str,
        test_fold: int | None = None,
        val_fold: int | None = None,
        file_field: str = "audio",
        file_type: str = "audio",
        text_field: str | None = "text",
        extensions: list[str] | None = None,
        fold_pattern: str = r"(\d+)-",
        lowercase_labels: bool = True,
        augment: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        on_bad_file: OnBadFile = "error",
        seed: int = 0,
    ) -> None:
        # Not MultimodalDataModule.__init__: its checks are about manifest files, which this module has none of.
        super(MultimodalDataModule, self).__init__()
        if not path:
            raise ValueError("path is not set: give the dataset's folder (e.g. --data.init_args.path /path/to/ESC-10)")
        if file_type not in EXTENSIONS:
            raise ValueError(f"file_type must be one of {sorted(EXTENSIONS)}, got {file_type!r}")
        if text_field == file_field:
            raise ValueError(f"file_field and text_field are both {file_field!r}")
        if test_fold is not None and test_fold == val_fold:
            raise ValueError(f"test_fold and val_fold are both {test_fold}: validate on another fold, or on none")
        if on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
        check_at_least("batch_size", batch_size, 1)
        check_at_least("num_workers", num_workers, 0)
        self.save_hyperparameters()
        fields = {file_field: file_type} | ({text_field: "text"} if text_field else {})
        self.hparams.update(fields=fields, label_names=None)  # what the base class's methods read
        self._files: list[FolderFile] | None = None
        self._manifests = None
        self.fields = {}
        self.datasets = {}

    @property
    def files(self) -> list[FolderFile]:
        """Every file of the dataset (scanned once)."""
        if self._files is None:
            hp = self.hparams
            extensions = hp.extensions or EXTENSIONS[hp.file_type]
            self._files = scan_class_folders(hp.path, extensions, hp.fold_pattern, hp.lowercase_labels)
        return self._files

    @property
    def folds(self) -> list[int]:
        """The folds the dataset's files are in, ascending."""
        return sorted({f.fold for f in self.files})

    def _read_splits(self) -> dict[str, tuple[Manifest, list[ManifestRow]]]:
        """The files by split, as manifests of rows ``{file_field: path, text_field: class name}``.

        Raises:
            FoldNotFoundError: ``test_fold`` or ``val_fold`` holds no file (the message lists the folds there are).
        """
        hp = self.hparams
        for name, fold in (("test_fold", hp.test_fold), ("val_fold", hp.val_fold)):
            if fold is not None and fold not in self.folds:
                raise FoldNotFoundError(
                    f"{hp.path}: {name}={fold}, but no file is in fold {fold}; the folds there are {self.folds}"
                )
        held_out = {hp.test_fold: "test", hp.val_fold: "val"}
        by_split: dict[str, list[FolderFile]] = {"train": [], "val": [], "test": []}
        for file in self.files:
            by_split[held_out.get(file.fold, "train")].append(file)
        return {name: self._listing(files) for name, files in by_split.items() if files or name == "train"}

    def _listing(self, files: list[FolderFile]) -> tuple[Manifest, list[ManifestRow]]:
        hp = self.hparams
        rows = []
        for number, file in enumerate(files, start=1):
            cells = {hp.file_field: str(file.path)} | ({hp.text_field: file.label} if hp.text_field else {})
            rows.append(ManifestRow(number, cells, label=file.label))
        listing = _Listing(Path(hp.path), tuple(rows), tuple(f.path for f in files))
        return listing, rows

    @property
    def label_names(self) -> list[str]:
        """Class names by label index, in folder order."""
        return list(dict.fromkeys(f.label for f in self.files))

    def _prepare(self) -> dict[str, tuple[Manifest, list[ManifestRow]]]:
        # label_names fixes the label indices to folder order (the base class would sort the names)
        self.hparams.label_names = self.label_names
        return super()._prepare()
