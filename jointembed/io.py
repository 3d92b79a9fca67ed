"""Small file helpers shared by every saver: writes that never leave a half-written file behind, and a lock that
lets one process at a time write a folder.

- :func:`atomic_write` writes a file through a temporary sibling, synced to disk, then renamed over the target.
- :func:`atomic_write_folder` builds a folder beside its destination and swaps it in, holding the folder's lock
  (:func:`folder_lock`) for the whole save, so two processes saving one folder take turns.
- Temporaries and backups are named ``.<name>.jointembed-<pid>@<host>.<random>.tmp`` / ``.old``; a folder one
  also holds a ``.jointembed-save`` marker. Only such leftovers of ours are ever removed: a folder one while the
  lock is held (so no save of that folder is running), a file one once the process that wrote it has ended. A
  folder left half-swapped by a kill (destination gone, our backup present) is restored from the backup by the
  next save or :func:`recover_folder`, never deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jointembed.errors import ConcurrentWriteError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_folder",
    "folder_lock",
    "lock_path",
    "recover_folder",
    "remove_leftovers",
    "give_ordinary_permissions",
    "current_umask",
    "LOCK_TIMEOUT",
    "SAVE_MARKER",
]

LOCK_TIMEOUT = 600.0
"""Seconds a save waits for another process's save or update of the same folder before giving up."""
SAVE_MARKER = ".jointembed-save"
"""The file inside each temporary or backup folder of ours that says whose it is and what it is for."""
_CONTENT = "folder"  # inside a temporary (or backup) folder of ours: the folder being built (or the old one)
_TAG = "jointembed-"
_HOST = socket.gethostname().replace(os.sep, "_") or "localhost"


# ----- permissions and syncing ---------------------------------------------------------------------------------


def _umask_from_proc() -> int | None:
    """The process umask from ``/proc/self/status`` (Linux 4.7+), or ``None`` where that is not available."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _umask_by_setting_it() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# Where /proc cannot tell, read once here, at import, before any thread of the caller's can be saving.
_IMPORT_UMASK = 0o022 if _umask_from_proc() is not None else _umask_by_setting_it()


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it, which races
    with other threads creating files); where ``/proc`` cannot tell, the umask the process had at import."""
    umask = _umask_from_proc()
    return _IMPORT_UMASK if umask is None else umask


def give_ordinary_permissions(path: Path) -> None:
    """Set the permissions a plain ``open``/``mkdir`` would give under the process umask (``mkstemp`` and
    ``mkdtemp`` make files 0600 and folders 0700, which other users of a shared model folder cannot read);
    a folder's contents are set too."""
    umask = current_umask()
    for item in (path, *path.rglob("*")) if path.is_dir() else (path,):
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's content to disk (folders: their entries; a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
        fd = os.open(path, flags)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():  # some file systems cannot sync folders; a file that cannot be synced is an error
            raise
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """:func:`_fsync` every file and folder under ``root`` (folders after their contents), ``root`` last."""
    for here, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync(Path(here) / name)
        _fsync(Path(here))


# ----- the lock ------------------------------------------------------------------------------------------------


@dataclass
class _Held:
    """This process's hold on one lock file: a thread lock (threads of this process take turns), the open file
    that holds the OS lock, and how many nested :func:`folder_lock` calls of the owning thread use it."""

    thread_lock: threading.RLock = field(default_factory=threading.RLock)
    fd: int | None = None
    depth: int = 0


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of ``folder``: ``.<name>.lock`` beside it (never inside: the folder itself gets swapped)."""
    folder = Path(os.path.abspath(folder))
    return folder.parent / f".{folder.name}.lock"


def _try_os_lock(fd: int) -> bool:
    """Take the OS's exclusive lock on an open file without waiting; ``False`` if another process holds it. The
    OS releases it when the holder's file is closed or the holder dies, so a lock is never left stale."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    """Who holds a lock, as its holder wrote it (``pid 123 on host``), for messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "another process"
    return text[:200] or "another process"


def _lock_file_at(path: Path) -> int | None:
    """Open ``path`` (creating it) and take its OS lock without waiting: the open file, or ``None`` when another
    process holds it or the file we locked is no longer the one at ``path`` (its holder removed it on release)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if _try_os_lock(fd):
            mine, there = os.fstat(fd), os.stat(path) if os.path.exists(path) else None
            if there is not None and (mine.st_ino, mine.st_dev) == (there.st_ino, there.st_dev):
                return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _acquire_os_lock(
    path: Path, folder: Path, timeout: float | None, deadline: float | None, on_wait: Callable[[str], None] | None
) -> int:
    """Wait for the OS lock of ``path`` until ``deadline`` (``time.monotonic``; ``None``: for ever); then record
    this process as the holder in the file (``timeout`` is for the message).

    Raises:
        ConcurrentWriteError: The lock was still held at the deadline.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    delay, told = 0.01, False
    while (fd := _lock_file_at(path)) is None:
        if on_wait is not None and not told:
            on_wait(_holder(path))
            told = True
        if deadline is not None and time.monotonic() >= deadline:
            raise ConcurrentWriteError(
                f"{folder} is being written by {_holder(path)} (lock file {path}), still after waiting "
                f"{timeout:g} s; try again when it has finished"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {_HOST}\n".encode())
    except BaseException:
        _release_os_lock(fd, path)
        raise
    return fd


def _release_os_lock(fd: int, path: Path) -> None:
    """Remove the lock file while still holding it (a process that locked the removed file sees that it is no
    longer the one at ``path`` and tries again), then release it by closing it."""
    with contextlib.suppress(OSError):  # Windows cannot remove an open file: it stays, which is harmless
        os.unlink(path)
    os.close(fd)


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike,
    timeout: float | None = LOCK_TIMEOUT,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold ``folder``'s lock: one process (and one thread) at a time saves or updates the folder.

    The lock is an OS file lock on ``.<name>.lock`` beside the folder (``flock``; released by the OS when the
    holder exits or is killed, so it is never stale). The holder removes the file when it is done; one left by
    a killed holder is harmless and reused. It is re-entrant within a thread:
    :func:`atomic_write_folder` inside an update that holds it does not wait for itself.

    Args:
        folder: The folder (it need not exist yet).
        timeout: Seconds to wait for another holder; ``None`` waits for ever.
        on_wait: Called once with the holder (``"pid 123 on host"``) when the lock is busy, e.g. to tell the
            user why nothing happens.

    Yields:
        The lock file's path.

    Raises:
        ConcurrentWriteError: The lock was not free within ``timeout``; the message names the folder, the lock
            file and its holder.
    """
    path = lock_path(folder)
    deadline = None if timeout is None else time.monotonic() + timeout
    with _HELD_GUARD:
        held = _HELD.setdefault(str(path), _Held())
    if not held.thread_lock.acquire(timeout=-1 if timeout is None else timeout):
        raise ConcurrentWriteError(f"{folder} is being written by another thread of this process (lock {path})")
    try:
        if held.depth == 0:
            held.fd = _acquire_os_lock(path, Path(folder), timeout, deadline, on_wait)
        held.depth += 1
        try:
            yield path
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                _release_os_lock(held.fd, path)
                held.fd = None
    finally:
        held.thread_lock.release()


# ----- our temporaries and backups ------------------------------------------------------------------------------


def _unique_sibling(path: Path, suffix: str, directory: bool) -> Path:
    """A new ``.<name>.jointembed-<pid>@<host>.<random><suffix>`` beside ``path`` (a folder or an empty file)."""
    prefix = f".{path.name}.{_TAG}{os.getpid()}@{_HOST}."
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def _new_box(folder: Path, purpose: str) -> Path:
    """A temporary (``purpose="new"``) or backup (``"backup"``) folder of ours beside ``folder``, marked."""
    box = _unique_sibling(folder, ".tmp" if purpose == "new" else ".old", directory=True)
    note = {"by": "jointembed", "folder": folder.name, "purpose": purpose, "pid": os.getpid(), "host": _HOST}
    (box / SAVE_MARKER).write_text(json.dumps({**note, "created": time.time()}) + "\n", encoding="utf-8")
    _fsync_tree(box)
    return box


def _our_box(path: Path, folder: Path) -> dict[str, Any] | None:
    """The marker of a temporary or backup folder of ours for ``folder``, or ``None`` when ``path`` is anything
    else (a user's ``.models.bak.old``, a file, a link, an unmarked folder)."""
    if path.is_symlink() or not path.is_dir() or not (path / SAVE_MARKER).is_file():
        return None
    try:
        note = json.loads((path / SAVE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(note, dict) or note.get("by") != "jointembed" or note.get("folder") != folder.name:
        return None
    return note if note.get("purpose") in ("new", "backup") else None


def _siblings_of_ours(path: Path) -> list[Path]:
    """Siblings named like our temporaries or backups of ``path`` (the name only: check the marker too)."""
    prefix = f".{path.name}.{_TAG}"
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return [path.parent / n for n in sorted(names) if n.startswith(prefix) and n.endswith((".tmp", ".old"))]


def _created(note: dict[str, Any]) -> float:
    """When a temporary or backup folder of ours was made, from its marker (0 if the marker does not say)."""
    created = note.get("created")
    return float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else 0.0


def _clean_up_after_killed_saves(folder: Path) -> None:
    """With ``folder``'s lock held (so no save of it is running): put back a folder that a killed save left
    half-swapped (destination gone, our backup present), then remove our abandoned temporaries and backups."""
    boxes = [(box, note) for box in _siblings_of_ours(folder) if (note := _our_box(box, folder)) is not None]
    backups = [
        (_created(note), box) for box, note in boxes if note["purpose"] == "backup" and (box / _CONTENT).is_dir()
    ]
    if not os.path.lexists(folder) and backups:
        newest = max(backups)[1]
        os.replace(newest / _CONTENT, folder)
        _fsync(folder.parent)
    for box, _ in boxes:
        shutil.rmtree(box, ignore_errors=True)


def recover_folder(folder: str | os.PathLike, timeout: float | None = LOCK_TIMEOUT) -> bool:
    """Before reading ``folder``: if a save was killed between its two renames (the folder is gone, our backup
    of it is there), put the backup back. Cheap when the folder exists (nothing is locked or listed then).

    Returns:
        Whether ``folder`` exists now.
    """
    folder = Path(folder)
    if os.path.lexists(folder):
        return True
    if not any(name.endswith(".old") for name in map(str, _siblings_of_ours(folder))):
        return False
    with folder_lock(folder, timeout):
        _clean_up_after_killed_saves(folder)
    return os.path.lexists(folder)


def _process_has_ended(pid: int) -> bool:
    """Whether process ``pid`` of this host has ended (``False`` when unsure: then nothing is removed)."""
    if sys.platform == "win32":
        return False  # os.kill(pid, 0) would terminate it there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files that killed :func:`atomic_write` calls for ``path`` left behind: only ours
    (``.<name>.jointembed-<pid>@<host>.*.tmp``) whose writer, a process of this host, has ended. Anything else
    beside ``path`` (another process's write in progress, the user's own files) is left alone."""
    prefix = f".{path.name}.{_TAG}"
    for leftover in _siblings_of_ours(path):
        if not leftover.name.endswith(".tmp") or leftover.is_symlink() or not leftover.is_file():
            continue
        owner, _, rest = leftover.name[len(prefix) :].partition("@")
        host = rest.rpartition(".")[0].rpartition(".")[0]  # <host>.<random>.tmp
        if owner.isdigit() and host == _HOST and _process_has_ended(int(owner)):
            leftover.unlink(missing_ok=True)


# ----- atomic writes --------------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file through a temporary file in the same folder, synced to disk, then renamed over ``path``.

    An interrupted save (exception, Ctrl-C, full disk, power loss) leaves whatever was at ``path`` untouched.
    Two processes writing one file at once each write a whole file; the last rename wins.

    Args:
        path: Destination file.
        write: Called with the temporary file's path; it must write the whole content there.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = _unique_sibling(path, ".tmp", directory=False)
    try:
        write(tmp)
        give_ordinary_permissions(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Atomically write ``obj`` as JSON to ``path`` (serialised before the file is touched)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_folder(
    folder: str | os.PathLike, write: Callable[[Path], None], marker: str, timeout: float | None = LOCK_TIMEOUT
) -> Path:
    """Write a whole folder atomically: built in a temporary sibling folder, synced, then renamed into place.

    The save holds the folder's lock (:func:`folder_lock`): a second process saving the same folder waits for
    the first. An existing ``folder`` is moved aside into a backup of ours, the new one renamed in, and the old
    one removed only afterwards, so an interrupted save (exception, Ctrl-C, kill) leaves the previous folder
    whole, or (killed between the two renames) in the backup that the next save or :func:`recover_folder`
    puts back.

    Args:
        folder: Destination (created with its parents).
        write: Called with the folder to fill; it must write every file there, ``marker`` last.
        marker: The file that makes a folder complete (``config.json``, ``index.json``). An existing folder
            without it that holds other files is not replaced: it is not ours to delete.
        timeout: Seconds to wait for another process's save of the same folder (``None``: for ever).

    Returns:
        The destination folder.

    Raises:
        NotADirectoryError / FileExistsError: ``folder`` is a file, or a folder of other files.
        ConcurrentWriteError: Another process held the folder's lock for longer than ``timeout``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder, timeout):
        _clean_up_after_killed_saves(folder)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} exists and is not a folder; cannot save there")
        if folder.is_dir() and not (folder / marker).is_file() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} is a folder with other files and no {marker}: not replacing it")
        box = _new_box(folder, "new")
        try:
            tmp = box / _CONTENT
            tmp.mkdir()
            write(tmp)
            if not (tmp / marker).is_file():
                raise RuntimeError(f"the folder writer did not write {marker}")
            give_ordinary_permissions(tmp)
            _fsync_tree(tmp)
            _swap_into_place(tmp, folder)
        finally:
            shutil.rmtree(box, ignore_errors=True)
    return folder


def _swap_into_place(new: Path, folder: Path) -> None:
    """Rename ``new`` to ``folder``; an existing ``folder`` is moved into a backup of ours first and removed
    only once the new one is in place (a failed rename puts it back; a kill leaves it for the next save)."""
    if not os.path.lexists(folder):
        os.replace(new, folder)
        _fsync(folder.parent)
        return
    backup = _new_box(folder, "backup")
    _fsync(folder.parent)  # the backup's marker is on disk before the only copy moves into it
    os.replace(folder, backup / _CONTENT)
    try:
        os.replace(new, folder)
    except BaseException:
        os.replace(backup / _CONTENT, folder)  # put the previous folder back
        shutil.rmtree(backup, ignore_errors=True)
        raise
    _fsync(folder.parent)
    shutil.rmtree(backup, ignore_errors=True)
