"""Lightning checkpoint files as jointembed writes and reads them: atomic writes, weights-only local reads.

Lightning's own :class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` writes a checkpoint straight
under its name (a full disk leaves a truncated ``last.ckpt``) and reads any fsspec path or URL, unpickling a
URL's content with ``weights_only=False``. :class:`SafeCheckpointIO` replaces it in every ``jointembed`` run
(:func:`use_safe_checkpoint_io`): a save goes to a temporary file that is renamed over the old one only once it
is complete and on disk, and a load reads a local file with ``torch.load(weights_only=True)`` or fails with a
:class:`~jointembed.errors.CheckpointError` naming it. :func:`newest_loadable` is what ``--ckpt_path last``
resumes from.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_utilities.core.apply_func import apply_to_collection

from jointembed.errors import CheckpointError
from jointembed.io import atomic_write
from jointembed.pretrained import read_lightning_checkpoint

__all__ = ["SafeCheckpointIO", "use_safe_checkpoint_io", "check_checkpoint_path", "newest_loadable"]


def check_checkpoint_path(path: Any, option: str = "--ckpt_path") -> Path:
    """The local file a checkpoint path names.

    Raises:
        CheckpointError: A URL or other fsspec path (``https://``, ``s3://``: download it yourself, then pass
            the file), or no file at the path; the message names the option and the value.
    """
    text = os.fspath(path)
    if "://" in str(text):
        raise CheckpointError(
            f"{option} {text}: only a local checkpoint file (or 'last') is read; download it first and pass "
            "the file, which is then read weights-only"
        )
    if not Path(text).is_file():
        raise CheckpointError(f"{option} {text}: no such checkpoint file (pass a local .ckpt file, or 'last')")
    return Path(text)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic saves and weights-only, local-file loads (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` through a temporary file in the same folder, synced, then renamed."""
        if storage_options is not None:
            raise TypeError(f"SafeCheckpointIO takes no storage_options, got {storage_options!r}")
        atomic_write(check_local(path), lambda tmp: _save(checkpoint, tmp))

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        """Read a local checkpoint weights-only, whatever ``weights_only`` asks (nothing is unpickled).

        Raises:
            CheckpointError: Not a local file, or not readable weights-only (the message names the file).
        """
        checkpoint = read_lightning_checkpoint(check_checkpoint_path(path, "checkpoint"))
        if isinstance(map_location, (str, torch.device)):  # Lightning passes none: it moves the states itself
            checkpoint = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.to(map_location))
        return checkpoint


def check_local(path: Any) -> Path:
    """``path`` as a local path; a URL is refused (this IO writes local files only)."""
    text = os.fspath(path)
    if "://" in str(text):
        raise CheckpointError(f"{text}: jointembed writes checkpoints to local paths only")
    return Path(text)


def _save(checkpoint: dict[str, Any], tmp: Path) -> None:
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())


def use_safe_checkpoint_io(trainer: Any) -> None:
    """Give ``trainer``'s strategy a :class:`SafeCheckpointIO` unless the recipe chose a checkpoint IO plugin of
    its own (anything but Lightning's default)."""
    strategy = trainer.strategy
    current = getattr(strategy, "_checkpoint_io", None)
    if current is None or type(current) is TorchCheckpointIO:
        strategy.checkpoint_io = SafeCheckpointIO()


def newest_loadable(candidates: Iterable[Path], what: str) -> Path:
    """The newest of ``candidates`` (by modification time) that reads as a checkpoint; each newer one that does
    not is named on stderr with the reason.

    Raises:
        FileNotFoundError: No candidates (``what`` says where they were looked for).
        CheckpointError: None of them reads; every one is named with its reason.
    """
    ordered = sorted(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)
    if not ordered:
        raise FileNotFoundError(f"--ckpt_path last: no checkpoint under {what}; nothing to resume")
    skipped = []
    for path in ordered:
        try:
            read_lightning_checkpoint(path)
        except CheckpointError as error:
            skipped.append(str(error))
            print(f"--ckpt_path last: skipped {error}", file=sys.stderr)
            continue
        if skipped:
            print(f"--ckpt_path last: using {path}", file=sys.stderr)
        return path
    raise CheckpointError("--ckpt_path last: no checkpoint under " + what + " reads: " + "; ".join(skipped))
