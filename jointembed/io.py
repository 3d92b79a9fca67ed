"""Small file helpers shared by every saver: writes that never leave a half-written file behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "give_ordinary_permissions",
    "remove_leftovers",
    "atomic_write_folder",
]


def remove_leftovers(path: Path) -> None:
    """Remove the temporary siblings (``.<name>.*.tmp`` / ``.old``) that a killed save of ``path`` left behind."""
    for leftover in path.parent.glob(f".{path.name}.*"):
        if leftover.name.endswith((".tmp", ".old")):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def give_ordinary_permissions(path: Path) -> None:
    """Set the permissions a plain ``open``/``mkdir`` would give under the process umask (``mkstemp`` and
    ``mkdtemp`` make files 0600 and folders 0700, which other users of a shared model folder cannot read);
    a folder's contents are set too."""
    umask = os.umask(0)
    os.umask(umask)
    for item in (path, *path.rglob("*")) if path.is_dir() else (path,):
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file through a temporary file in the same folder, then rename it over ``path``.

    An interrupted save (exception, Ctrl-C, full disk) leaves whatever was at ``path`` untouched.

    Args:
        path: Destination file.
        write: Called with the temporary file's path; it must write the whole content there.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        give_ordinary_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Atomically write ``obj`` as JSON to ``path`` (serialised before the file is touched)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_folder(folder: str | os.PathLike, write: Callable[[Path], None], marker: str) -> Path:
    """Write a whole folder atomically: built in a temporary sibling folder, then renamed into place.

    An existing ``folder`` is moved aside, the new one renamed in, and the old one removed only afterwards, so
    an interrupted save (exception, Ctrl-C, kill) leaves the previous folder whole; a later save removes what a
    killed one left behind.

    Args:
        folder: Destination (created with its parents).
        write: Called with the temporary folder; it must write every file there, ``marker`` last.
        marker: The file that makes a folder complete (``config.json``, ``index.json``). An existing folder
            without it that holds other files is not replaced: it is not ours to delete.

    Returns:
        The destination folder.

    Raises:
        NotADirectoryError / FileExistsError: ``folder`` is a file, or a folder of other files.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder; cannot save there")
    if folder.is_dir() and not (folder / marker).is_file() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is a folder with other files and no {marker}: not replacing it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        write(tmp)
        if not (tmp / marker).is_file():
            raise RuntimeError(f"the folder writer did not write {marker}")
        give_ordinary_permissions(tmp)
        _swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _swap_into_place(new: Path, folder: Path) -> None:
    """Rename ``new`` to ``folder``; an existing ``folder`` is moved aside first and removed only afterwards."""
    if not folder.exists():
        os.replace(new, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    os.replace(folder, old / "previous")
    try:
        os.replace(new, folder)
    except BaseException:
        os.replace(old / "previous", folder)  # put the previous folder back
        raise
    shutil.rmtree(old, ignore_errors=True)
