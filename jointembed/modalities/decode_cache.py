"""A cache of decoded media files, so a file is decoded (and resampled) once rather than every epoch.

An entry is keyed by the file's real path, its size and modification time, and a ``tag`` naming how it was
decoded (e.g. ``"audio-v1-16000"``: the decoder and the sample rate), so a rewritten file or another setting
is never served stale. Two levels:

* **memory**: least-recently-used tensors up to ``max_bytes`` (per process: each DataLoader worker has its own);
* **disk** (optional ``folder``): one ``.npz`` per file and tag, written through a temporary file and renamed into
  place (a reader never sees half a file, and concurrent writers of one entry are harmless), holding the size and
  modification time it was decoded from (a rewritten file replaces its entry); when the folder outgrows
  ``max_folder_bytes`` the oldest-written entries are deleted. It outlives the process: DataLoader workers,
  cross-validation folds and later runs share it.

A cache pickles (and deep-copies) as an empty cache with the same settings, so a DataLoader worker or a copy of
the model (weight averaging makes one) does not drag the decoded data along.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DecodeCache"]

_STALE_TMP_SECONDS = 3600.0  # a temporary file this old was left by a killed writer


class DecodeCache:
    """Decoded tensors of files, by ``(real path, size, mtime, tag)``; see the module docstring.

    Args:
        max_bytes: Memory budget in bytes (0 disables the memory level). A tensor larger than it is not kept.
        folder: Folder of the disk level (created when first written); ``None`` disables it.
        max_folder_bytes: Disk budget in bytes; beyond it the oldest-written entries are deleted.
    """

    def __init__(self, max_bytes: int = 1 << 30, folder: str | os.PathLike | None = None,
                 max_folder_bytes: int = 4 << 30) -> None:  # fmt: skip
        if max_bytes < 0 or max_folder_bytes < 0:
            raise ValueError(f"cache budgets must be >= 0, got {max_bytes} and {max_folder_bytes} bytes")
        self.max_bytes = int(max_bytes)
        self.folder = None if folder is None else Path(folder)
        self.max_folder_bytes = int(max_folder_bytes)
        self._reset()

    def _reset(self) -> None:
        # (real path, tag) -> ((size, mtime_ns) it was decoded from, tensor), least recently used first
        self._memory: OrderedDict[tuple[str, str], tuple[tuple[int, int], torch.Tensor]] = OrderedDict()
        self._memory_bytes = 0
        self._folder_bytes: int | None = None  # estimated on the first write
        self._lock = threading.Lock()
        self.hits = self.disk_hits = self.misses = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes, "folder": self.folder, "max_folder_bytes": self.max_folder_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def enabled(self) -> bool:
        """Whether any level is on."""
        return self.max_bytes > 0 or self.folder is not None

    @property
    def memory_bytes(self) -> int:
        """Bytes of the tensors held in memory."""
        return self._memory_bytes

    def clear(self) -> None:
        """Forget the memory level (the disk level is left as it is)."""
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0

    def get(self, path: str | os.PathLike, tag: str, decode: Callable[[Path], torch.Tensor]) -> torch.Tensor:
        """The decoded tensor of ``path``: from memory, else from disk, else ``decode(path)`` (then kept).

        Returns a copy, so a caller that changes it in place cannot change the cache. A file that cannot be
        looked at (missing, unreadable) goes straight to ``decode``, whose error names it.

        Args:
            path: The file.
            tag: How it is decoded (decoder version and settings): entries of other tags are other entries.
            decode: ``path`` → tensor; its errors propagate and nothing is kept.
        """
        key = self._key(path, tag)
        if key is None:
            return decode(Path(path))
        found = self._find(*key)
        if found is not None:
            return found
        self.misses += 1
        tensor = decode(Path(path)).contiguous()
        self._write_disk(*key, tensor)
        self._keep(*key, tensor)
        return tensor.clone()

    def lookup(self, path: str | os.PathLike, tag: str) -> torch.Tensor | None:
        """The cached tensor of ``path`` (a copy), from memory or disk, or ``None`` when it is not cached (or the
        file cannot be looked at); nothing is decoded and a miss is not counted."""
        key = self._key(path, tag)
        return None if key is None else self._find(*key)

    @staticmethod
    def _key(path: str | os.PathLike, tag: str) -> tuple[tuple[str, str], tuple[int, int]] | None:
        """``((real path, tag), (size, mtime))`` of ``path``, or ``None`` when it cannot be looked at."""
        try:
            real = os.path.realpath(path)
            stat = os.stat(real)
        except OSError:
            return None
        return (real, tag), (stat.st_size, stat.st_mtime_ns)

    def _find(self, name: tuple[str, str], version: tuple[int, int]) -> torch.Tensor | None:
        """A copy of the entry from memory, else from disk (then also kept in memory), else ``None``."""
        with self._lock:
            found = self._memory.get(name)
            if found is not None and found[0] == version:
                self._memory.move_to_end(name)
                self.hits += 1
                return found[1].clone()
        tensor = self._read_disk(name, version)
        if tensor is None:
            return None
        self.disk_hits += 1
        self._keep(name, version, tensor)
        return tensor.clone()

    def _keep(self, name: tuple[str, str], version: tuple[int, int], tensor: torch.Tensor) -> None:
        """Hold ``tensor`` in memory (replacing an older version of the file), dropping the least recently used
        tensors beyond the budget."""
        size = tensor.numel() * tensor.element_size()
        with self._lock:
            old = self._memory.pop(name, None)
            if old is not None:
                self._memory_bytes -= old[1].numel() * old[1].element_size()
            if size > self.max_bytes:
                return
            self._memory[name] = (version, tensor)
            self._memory_bytes += size
            while self._memory_bytes > self.max_bytes:
                _, (_, dropped) = self._memory.popitem(last=False)
                self._memory_bytes -= dropped.numel() * dropped.element_size()

    # ----- disk -------------------------------------------------------------------------------------------------

    def _entry(self, name: tuple[str, str]) -> Path:
        assert self.folder is not None
        digest = hashlib.sha256(f"{name[0]}\0{name[1]}".encode()).hexdigest()[:40]
        return self.folder / f"{digest}.npz"

    def _read_disk(self, name: tuple[str, str], version: tuple[int, int]) -> torch.Tensor | None:
        """The entry of ``name`` on disk, or ``None`` when there is none, it was decoded from another version of
        the file, or it is unreadable (it is then rewritten)."""
        if self.folder is None:
            return None
        try:
            with np.load(self._entry(name), allow_pickle=False) as entry:
                if entry["stat"].tolist() != list(version) or str(entry["path"]) != name[0]:
                    return None
                return torch.from_numpy(np.array(entry["data"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def _write_disk(self, name: tuple[str, str], version: tuple[int, int], tensor: torch.Tensor) -> None:
        if self.folder is None:
            return
        target = self._entry(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, data=tensor.numpy(), stat=np.array(version, np.int64), path=name[0])
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        if self._folder_bytes is None:
            self._folder_bytes = self._scan()[0]
        else:
            self._folder_bytes += target.stat().st_size
        if self._folder_bytes > self.max_folder_bytes:
            self._evict()

    def _scan(self) -> tuple[int, list[tuple[float, int, Path]]]:
        """Total bytes of the entries and ``(mtime, size, path)`` of each; removes stale temporary files."""
        assert self.folder is not None
        entries, total, now = [], 0, time.time()
        for item in self.folder.iterdir():
            try:
                stat = item.stat()
            except FileNotFoundError:  # removed meanwhile by another process
                continue
            if item.suffix == ".tmp" and now - stat.st_mtime > _STALE_TMP_SECONDS:
                item.unlink(missing_ok=True)
            elif item.suffix == ".npz":
                entries.append((stat.st_mtime, stat.st_size, item))
                total += stat.st_size
        return total, entries

    def _evict(self) -> None:
        """Delete the oldest-written entries until the folder holds at most 90 % of its budget."""
        total, entries = self._scan()
        for _, size, item in sorted(entries):
            if total <= 0.9 * self.max_folder_bytes:
                break
            item.unlink(missing_ok=True)
            total -= size
        self._folder_bytes = total
