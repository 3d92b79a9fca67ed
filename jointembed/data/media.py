"""Decoding media files: images with Pillow, audio with soundfile (resampled with torchaudio when needed).

A file that is missing, unreadable or corrupt raises :class:`BadMediaError`, whose message names the file; the
multimodal dataset adds the manifest and row (:meth:`BadMediaError.at_row`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio.functional
from PIL import Image, UnidentifiedImageError

from jointembed.errors import DataFormatError

__all__ = ["BadMediaError", "load_image", "load_audio", "decode_image", "decode_audio", "to_mono_at"]


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


def _pil_to_uint8(image: Image.Image) -> np.ndarray:
    """A decoded PIL image as ``(H, W, 3)`` uint8; 16-bit and float images are scaled into 0..255, not clipped.

    Raises:
        ValueError: A float image whose values are neither in [0, 1] nor in [0, 255].
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image).astype(np.float64)
        wide = image.mode != "I" or array.max(initial=0) > 255
        array = array / 257.0 if wide else array
        if array.max(initial=0) > 255.0 or array.min(initial=0) < 0:
            raise ValueError(f"integer image values span {array.min()}..{array.max()}, beyond 16 bits")
        gray = np.clip(np.rint(array), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        return _float_to_uint8(np.asarray(image, dtype=np.float64), "float image")
    return np.array(image.convert("RGB"))  # convert() decodes the whole file, so corruption surfaces here


def _float_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """Float pixels in [0, 1] (or [0, 255]) → uint8, 3 channels."""
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    low, high = float(array.min(initial=0)), float(array.max(initial=0))
    if low < 0 or high > 255:
        raise ValueError(f"{what} values span {low:g}..{high:g}; expected [0, 1] (or [0, 255])")
    scaled = array * 255.0 if high <= 1.0 else array
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file (any format Pillow reads) as RGB; grayscale and palette images become 3 channels,
    16-bit and float images are scaled into 0..255.

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
            rgb = _pil_to_uint8(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadMediaError.for_file("image", path, f"{type(err).__name__}: {err}") from err
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def decode_image(value: Any) -> torch.Tensor:
    """Any image value → ``(3, H, W)`` uint8 RGB.

    Reads a path (``str`` / ``PathLike``), encoded file bytes, a PIL image, or an array / tensor: ``(H, W)``
    grayscale, ``(H, W, C)`` numpy-style or ``(C, H, W)`` torch-style with C in 1, 3, 4 (alpha dropped);
    uint8 as is, uint16 scaled by 1/257, floats in [0, 1] (or [0, 255]) scaled to 0..255.

    Raises:
        BadMediaError: A file or bytes that cannot be decoded (the file is named).
        TypeError: A value of another kind.
        ValueError: An array of an unusable shape or range (the message gives it).
    """
    if isinstance(value, (str, os.PathLike)):
        return load_image(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            with Image.open(io.BytesIO(value)) as image:
                rgb = _pil_to_uint8(image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise BadMediaError(f"cannot decode image bytes: {type(err).__name__}: {err}") from err
        return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
    if isinstance(value, Image.Image):
        return torch.from_numpy(np.ascontiguousarray(_pil_to_uint8(value))).permute(2, 0, 1).contiguous()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _array_to_chw(value)
    raise TypeError(
        f"an image must be a file path, encoded bytes, a PIL image or an array/tensor, got {type(value).__name__}"
    )


def _array_to_chw(value: np.ndarray | torch.Tensor) -> torch.Tensor:
    channels_first = isinstance(value, torch.Tensor)
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim == 3 and channels_first and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, C) or, as a tensor, (C, H, W); got {array.shape}")
    if array.ndim == 3:
        array = array[..., :3]
    if array.dtype == np.uint8:
        rgb = array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=2)
    elif array.dtype == np.uint16:
        rgb = _float_to_uint8(array.astype(np.float64) / 257.0, "uint16 image")
    elif np.issubdtype(array.dtype, np.floating):
        rgb = _float_to_uint8(array.astype(np.float64), "float image")
    else:
        raise ValueError(f"image arrays must be uint8, uint16 or float, got {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def to_mono_at(samples: np.ndarray | torch.Tensor, rate: int, sample_rate: int, what: str = "audio") -> torch.Tensor:
    """Samples ``(T,)`` or ``(T, channels)`` at ``rate`` → mono float32 ``(T',)`` at ``sample_rate``.

    Channels are averaged (a ``(channels, T)`` tensor with fewer rows than columns is read channels-first);
    another rate is resampled with ``torchaudio.functional.resample``.

    Raises:
        ValueError: No samples, NaN or infinite samples, a bad rate, or more than two dimensions.
    """
    wave = torch.as_tensor(np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples)
    wave = wave.detach().cpu().to(torch.float32)
    if wave.dim() == 2:
        channels_first = isinstance(samples, torch.Tensor) and wave.shape[0] < wave.shape[1]
        wave = wave.mean(dim=0 if channels_first else 1)
    if wave.dim() != 1:
        raise ValueError(f"{what}: samples must be (T,) or (T, channels), got shape {tuple(wave.shape)}")
    if wave.numel() == 0:
        raise ValueError(f"{what}: it holds no samples")
    if not bool(torch.isfinite(wave).all()):
        raise ValueError(f"{what}: it holds NaN or infinite samples")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate < 1:
        raise ValueError(f"{what}: sample rate must be a positive integer, got {rate!r}")
    if int(rate) != int(sample_rate):
        wave = torchaudio.functional.resample(wave, orig_freq=int(rate), new_freq=int(sample_rate))
    return wave.contiguous()


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
    return _read_audio(path, sample_rate, str(path))


def _wav_shortfall(source: Path | io.BytesIO) -> tuple[int, int] | None:
    """For a RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds (a truncated file, which
    libsndfile reads as a shorter clip without a word): ``(declared, present)`` bytes; else ``None``."""
    handle = source.open("rb") if isinstance(source, Path) else source
    try:
        start = handle.tell()
        size = handle.seek(0, io.SEEK_END) - start
        handle.seek(start)
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        position = 12
        while position + 8 <= size:
            handle.seek(start + position)
            chunk = handle.read(8)
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                present = size - position - 8
                # 0 and 0xFFFFFFFF mark a stream whose length was unknown when the header was written.
                return (declared, present) if present < declared < 0xFFFFFFFF else None
            position += 8 + declared + (declared & 1)
        return None
    finally:
        if isinstance(source, Path):
            handle.close()
        else:
            handle.seek(start)


def _read_audio(source: Path | io.BytesIO, sample_rate: int, name: str) -> torch.Tensor:
    shortfall = _wav_shortfall(source)
    if shortfall is not None:
        declared, present = shortfall
        reason = f"truncated: its header promises {declared} bytes of audio but the file holds {present}"
        raise BadMediaError.for_file("audio", name, reason)
    try:
        data, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as err:
        raise BadMediaError.for_file("audio", name, f"{type(err).__name__}: {err}") from err
    try:
        return to_mono_at(data, int(rate), sample_rate, what=name)
    except ValueError as err:
        raise BadMediaError.for_file("audio", name, str(err).removeprefix(f"{name}: ")) from err


def decode_audio(value: Any, sample_rate: int) -> torch.Tensor:
    """Any audio value → mono float32 ``(T,)`` at ``sample_rate``.

    Reads a path (``str`` / ``PathLike``), encoded file bytes (WAV, FLAC, OGG), or a ``(samples, rate)`` pair
    whose samples are ``(T,)`` or ``(T, channels)`` (numpy or torch). A bare array is refused: without its rate
    the audio could be silently played at the wrong speed.

    Raises:
        BadMediaError: A file or bytes that cannot be decoded, or holds no or non-finite samples.
        TypeError: A value of another kind (the message says how to pass an array).
        ValueError: Bad samples or rate in a ``(samples, rate)`` pair.
    """
    if isinstance(value, (str, os.PathLike)):
        return load_audio(value, sample_rate)
    if isinstance(value, (bytes, bytearray)):
        return _read_audio(io.BytesIO(bytes(value)), sample_rate, "<audio bytes>")
    if isinstance(value, tuple) and len(value) == 2:
        samples, rate = value
        return to_mono_at(samples, rate, sample_rate)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        raise TypeError(f"pass an audio array with its sample rate, as (samples, rate), e.g. (wave, {sample_rate})")
    raise TypeError(f"audio must be a file path, encoded bytes or a (samples, rate) pair, got {type(value).__name__}")
