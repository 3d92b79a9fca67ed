"""Decoding media files: images with Pillow, audio with soundfile (resampled with torchaudio when needed).

A file that is missing, unreadable or corrupt raises :class:`BadMediaError`, whose message names the file; the
multimodal dataset adds the manifest and row (:meth:`BadMediaError.at_row`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional
from PIL import Image, UnidentifiedImageError

from jointembed.errors import DataFormatError

__all__ = ["BadMediaError", "load_image", "load_audio"]


class BadMediaError(DataFormatError):
    """An image or audio file is missing, unreadable or corrupt.

    Args:
        message: The full message (it names the file, and the manifest row where known).
        path: The file.
        reason: What was wrong, without the file name.
        row: The manifest row, where known.
        manifest: The manifest file, where known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        reason: str | None = None,
        row: int | None = None,
        manifest: str | os.PathLike | None = None,
    ) -> None:
        # Only ``message`` is positional so that DataLoader workers can re-raise it as ``BadMediaError(text)``.
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = reason if reason is not None else message
        self.row = row
        self.manifest = None if manifest is None else str(manifest)

    @classmethod
    def for_file(cls, kind: str, path: str | os.PathLike, reason: str) -> BadMediaError:
        """An error for ``path``, message ``"cannot read {kind} file {path}: {reason}"``."""
        return cls(f"cannot read {kind} file {path}: {reason}", path=path, reason=reason)

    def at_row(self, manifest: str | os.PathLike | None, row: int) -> BadMediaError:
        """A copy whose message also names the manifest and the row that references the file."""
        where = f"row {row}" if manifest is None else f"{manifest}, row {row}"
        return BadMediaError(f"{where}: {self}", path=self.path, reason=self.reason, row=row, manifest=manifest)


def _check_exists(kind: str, path: Path) -> None:
    if not path.exists():
        raise BadMediaError.for_file(kind, path, "no such file")
    if not path.is_file():
        raise BadMediaError.for_file(kind, path, "not a regular file")


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file (any format Pillow reads) as RGB; grayscale and palette images become 3 channels.

    Args:
        path: The image file.

    Returns:
        ``(3, H, W)`` uint8 tensor.

    Raises:
        BadMediaError: The file is missing, unreadable, not an image, or truncated.
    """
    path = Path(path)
    _check_exists("image", path)
    try:
        with Image.open(path) as image:
            rgb = np.array(image.convert("RGB"))  # convert() decodes the whole file, so corruption surfaces here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadMediaError.for_file("image", path, f"{type(err).__name__}: {err}") from err
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def load_audio(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """Decode an audio file (WAV, FLAC, OGG and the other formats libsndfile reads) as mono at ``sample_rate``.

    Channels are averaged; a file at another rate is resampled with ``torchaudio.functional.resample``.

    Args:
        path: The audio file.
        sample_rate: Wanted rate in Hz.

    Returns:
        ``(T,)`` float32 waveform, samples in [-1, 1] for integer formats.

    Raises:
        BadMediaError: The file is missing, unreadable, corrupt, empty, or holds non-finite samples.
    """
    path = Path(path)
    _check_exists("audio", path)
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise BadMediaError.for_file("audio", path, f"{type(err).__name__}: {err}") from err
    if data.shape[0] == 0:
        raise BadMediaError.for_file("audio", path, "it holds no samples")
    if not np.isfinite(data).all():
        raise BadMediaError.for_file("audio", path, "it holds NaN or infinite samples")
    wave = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0].copy())
    if rate != sample_rate:
        wave = torchaudio.functional.resample(wave, orig_freq=int(rate), new_freq=int(sample_rate))
    return wave.contiguous()
