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
