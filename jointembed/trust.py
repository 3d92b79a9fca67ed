"""What a saved folder or checkpoint may name: the one place that decides.

A pretrained folder, an index folder or a Lightning ``.ckpt`` may come from a stranger, so reading one is reading
data, never running code: it imports no module, opens no file outside itself and reaches no network. Recipes are
the user's own and may name packages (``"package:<module>"``), Hugging Face hub ids and local paths; a saved folder
has already copied what it needs, so while one is being read (:func:`loading`) every such name a part's config
gives goes through :func:`reference`, which lets through only a path that resolves (symlinks and ``..`` followed)
inside the folder, and raises :class:`~jointembed.errors.CheckpointError` naming the file and the field for
anything else. A checkpoint is one file: it may name no file at all. Downloads are off while loading
(:func:`downloads_allowed`), whatever the config says.

Checkpoints add two rules: they are read with ``torch.load(weights_only=True)`` only (see
:func:`jointembed.pretrained.read_lightning_checkpoint`), and a class path in their hyper-parameters must name a
class of this package (:func:`check_hyperparameters`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jointembed.errors import CheckpointError

__all__ = [
    "PACKAGE_PREFIX",
    "loading",
    "reference",
    "downloads_allowed",
    "check_links",
    "check_hyperparameters",
    "is_package_class",
]

PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class _Source:
    """What is being read: the file named in errors, and the folder its references must stay in (``None`` for a
    checkpoint file, which may name no file at all)."""

    file: Path
    root: Path | None
    within: Path | None = None  # where links under root may lead (root itself when None)


_LOADING: ContextVar[_Source | None] = ContextVar("jointembed_loading", default=None)


@contextlib.contextmanager
def loading(
    file: str | os.PathLike, root: str | os.PathLike | None, links_within: str | os.PathLike | None = None
) -> Iterator[None]:
    """Mark the parts being built as coming from a saved folder (``root``) or a checkpoint file (``root=None``).

    Entering checks that no file or folder under ``root`` is a link leading outside ``links_within`` (by default
    ``root`` itself; a Hugging Face cache snapshot links its files to the repo's ``blobs`` beside it).
    Contexts nest; the innermost one decides.

    Args:
        file: The config or checkpoint file, named in errors.
        root: The folder every reference must stay inside, or ``None`` when no file may be named.
        links_within: The folder links under ``root`` may lead into.

    Raises:
        CheckpointError: A link under ``root`` leads outside ``links_within``.
    """
    root_path = None if root is None else Path(root).resolve()
    if root_path is not None:
        check_links(root_path, links_within)
    within = None if links_within is None else Path(links_within).resolve()
    token = _LOADING.set(_Source(Path(file), root_path, within))
    try:
        yield
    finally:
        _LOADING.reset(token)


def downloads_allowed() -> bool:
    """``False`` while a saved folder or checkpoint is being read: nothing may be fetched then, whatever its
    config says (``local_files_only`` is forced on)."""
    return _LOADING.get() is None


def reference(value: str | os.PathLike | None, field: str, base: str | os.PathLike | None = None) -> str | None:
    """Check a name of something outside the running code that a part's config gives (a model or tokenizer
    folder, a hub id, ``"package:<module>"``, a weights file), and return it as the path to use.

    Outside :func:`loading` (a recipe, the Python API) the value is returned unchanged (a relative one joined to
    ``base`` when given). While a folder is read it
    must be a path that exists and resolves inside that folder (a relative one is taken relative to ``base``, by
    default the folder); while a checkpoint is read no file may be named.

    Args:
        value: The name as the config gives it, or ``None``.
        field: The config field, named in errors (``"tokenizer_name_or_path"``).
        base: The folder a relative value is relative to (a part's own sub-folder), inside the loaded folder.

    Raises:
        CheckpointError: While loading: the value names a package, a hub id, a missing path, a path outside the
            folder, or (for a checkpoint) any file; the message names the file, the field and the value.
    """
    source = _LOADING.get()
    if value is None:
        return None
    text = str(value)
    if source is None:
        return text if base is None or Path(text).is_absolute() else str(Path(base) / text)
    where = f"{source.file}: field {field!r} is {text!r}"
    if text.startswith(PACKAGE_PREFIX):
        raise CheckpointError(f"{where}: a saved model may not import a package; only a recipe may name one")
    if source.root is None:
        raise CheckpointError(
            f"{where}: a checkpoint may not name a file, package or hub repo (load the run's pretrained folder, "
            "which holds its own copy, or pass model= built from the recipe)"
        )
    path = Path(text) if Path(text).is_absolute() else Path(base or source.root) / text
    resolved = path.resolve()
    if not resolved.is_relative_to(source.within or source.root):
        raise CheckpointError(f"{where}: it leads outside the folder {source.root}; a saved model reads only itself")
    if not resolved.exists():
        raise CheckpointError(
            f"{where}: no such file or folder inside {source.root} (a saved model names only its own files; it is "
            "never fetched from a hub)"
        )
    return str(resolved)


def check_links(root: str | os.PathLike, within: str | os.PathLike | None = None) -> None:
    """Refuse a folder holding a link (at any depth) whose target lies outside it (or outside ``within``).

    Raises:
        CheckpointError: Such a link; the message names it and where it leads.
    """
    root = Path(root).resolve()
    allowed = root if within is None else Path(within).resolve()
    for folder, dirs, files in os.walk(root):  # os.walk does not descend into linked folders
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(allowed):
                raise CheckpointError(
                    f"{path}: a link to {os.readlink(path)}, outside the folder {allowed}; a saved model reads only "
                    "itself"
                )


def is_package_class(class_path: Any) -> bool:
    """Whether ``class_path`` (``"jointembed.tasks.contrastive.ContrastiveTask"``) names a class defined in this
    installed package, found without running anything outside it."""
    import importlib
    import importlib.util

    if not isinstance(class_path, str) or not class_path.startswith("jointembed."):
        return False
    module_name, _, name = class_path.rpartition(".")
    package_dir = Path(__file__).resolve().parent
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.origin is None or not Path(spec.origin).resolve().is_relative_to(package_dir):
        return False
    value = getattr(importlib.import_module(module_name), name, None)
    return isinstance(value, type) and value.__module__.startswith("jointembed.")


def check_hyperparameters(hparams: Any, file: str | os.PathLike, field: str = "hyper_parameters") -> None:
    """Check a checkpoint's hyper-parameters before anything reads them as configuration: every class path in
    them (``_class_path``, ``class_path``, at any depth) names a class of this package, and no value names a
    package to import.

    Raises:
        CheckpointError: A class path outside this package, or a ``"package:"`` value; the message names the file
            and the field's path (``hyper_parameters.model.class_path``).
    """
    if isinstance(hparams, Mapping):
        for key, value in hparams.items():
            where = f"{field}.{key}"
            if key in ("_class_path", "class_path") and not is_package_class(value):
                raise CheckpointError(
                    f"{file}: field {where!r} is {value!r}: a checkpoint may name only classes of jointembed"
                )
            check_hyperparameters(value, file, where)
    elif isinstance(hparams, (list, tuple)):
        for i, value in enumerate(hparams):
            check_hyperparameters(value, file, f"{field}[{i}]")
    elif isinstance(hparams, str) and hparams.startswith(PACKAGE_PREFIX):
        raise CheckpointError(f"{file}: field {field!r} is {hparams!r}: a checkpoint may not import a package")
