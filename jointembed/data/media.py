"""Decoding media files: images with Pillow, audio with soundfile (resampled with torchaudio when needed).

Values are decoded as a person would see or hear them: a photo is turned upright by its EXIF orientation and a
transparent image is composited over a background colour; an image's size is checked from its header before its
pixels are decoded (a small file can declare billions of pixels), and an audio window is read from the file
without decoding the rest of it.

A file that is missing, unreadable, corrupt, too large or holds unusable samples raises :class:`BadMediaError`,
whose message names the file; the multimodal dataset adds the manifest and row (:meth:`BadMediaError.at_row`).
An input with nothing to embed (an empty text or ID bag) raises its subclass :class:`EmptyInputError`, so the
same skipping and reporting apply to it.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio.functional
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

from jointembed.errors import DataFormatError

__all__ = [
    "BadMediaError",
    "EmptyInputError",
    "load_image",
    "load_audio",
    "decode_image",
    "decode_audio",
    "audio_length",
    "to_mono_at",
    "rgb_colour",
    "MAX_SAMPLE",
]

#: Largest sample magnitude accepted (2^32, beyond any PCM scale: 32-bit PCM peaks at 2^31). Larger finite
#: samples are no recording, and their power spectra overflow float32 in the audio encoders (a NaN embedding).
MAX_SAMPLE = 2.0**32

Colour = tuple[int, int, int]
#: The default background of transparent pixels: black, which most images store under their transparent pixels
#: anyway (so they decode as before alpha was composited), and the paper of light-on-dark digit images.
DEFAULT_BACKGROUND: Colour = (0, 0, 0)


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
        return type(self)(f"{where}: {self}", path=self.path, reason=self.reason, row=row, manifest=manifest)


class EmptyInputError(BadMediaError):
    """A value with nothing to embed: an empty or whitespace-only text, a text with no word the text encoder
    reads, or an empty ID bag. Every such value would embed to one shared vector, the same for all of them, and
    a classifier would answer it confidently; the ``text`` and ``ids`` inputs refuse it unless their
    ``empty="allow"``. A :class:`BadMediaError`, so ``on_bad_file="skip"`` and ``embed_readable`` skip it and
    report its row like an unreadable file.
    """


def rgb_colour(colour: str | Sequence[int]) -> tuple[int, int, int]:
    """A background colour → ``(r, g, b)`` in 0..255: a Pillow colour name or ``#rrggbb`` string, or 3 integers.

    Raises:
        ValueError: Anything else (the message gives the value).
    """
    if isinstance(colour, str):
        try:
            rgb = ImageColor.getrgb(colour)
        except ValueError:
            raise ValueError(
                f"unknown colour {colour!r}: use a name such as 'black' or 'white', or '#rrggbb'"
            ) from None
        return rgb[0], rgb[1], rgb[2]
    values = list(colour) if isinstance(colour, (list, tuple)) else []
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
        raise ValueError(f"a colour must be a name, '#rrggbb' or 3 integers in 0..255, got {colour!r}")
    return values[0], values[1], values[2]


def _check_exists(kind: str, path: Path) -> None:
    if not path.exists():
        raise BadMediaError.for_file(kind, path, "no such file")
    if not path.is_file():
        raise BadMediaError.for_file(kind, path, "not a regular file")


def _check_pixels(width: int, height: int, max_pixels: int | None, kind: str, name: str) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (from its header: before any pixel is decoded)."""
    if max_pixels is not None and width * height > max_pixels:
        reason = (
            f"too large: {width}x{height} = {width * height:,} pixels, over max_pixels = {max_pixels:,} "
            "(raise the image input's max_pixels to read it)"
        )
        raise BadMediaError.for_file(kind, name, reason)


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation tag says (a phone stores a photo sideways plus the tag)."""
    if image.getexif().get(0x0112, 1) in (None, 1):  # 0x0112: Orientation; 1 is upright
        return image
    return ImageOps.exif_transpose(image)


def _composite(rgba: np.ndarray, background: Colour) -> np.ndarray:
    """``(H, W, 4)`` uint8 over an opaque ``background`` → ``(H, W, 3)`` uint8, rounded to the nearest value.

    Integer arithmetic: exact (an opaque pixel keeps its colour, a transparent one takes the background's), and
    2 bytes a value rather than a float copy of the image.
    """
    alpha = rgba[..., 3:].astype(np.uint16)
    colour = rgba[..., :3].astype(np.uint16) * alpha
    colour += np.asarray(background, dtype=np.uint16) * (255 - alpha)
    colour += 127
    colour //= 255
    return colour.astype(np.uint8)


def _pil_to_uint8(image: Image.Image, background: Colour = DEFAULT_BACKGROUND) -> np.ndarray:
    """A PIL image as ``(H, W, 3)`` uint8: upright by its EXIF orientation, transparency composited over
    ``background``; 16-bit and float images are scaled into 0..255, not clipped.

    Raises:
        ValueError: A float image whose values are neither in [0, 1] nor in [0, 255].
    """
    image = _upright(image)
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
    if image.has_transparency_data:  # RGBA, LA, PA, or a palette / RGB / L image with a transparent colour
        return _composite(np.asarray(image.convert("RGBA")), background)
    return np.array(image.convert("RGB"))  # convert() decodes the whole file, so corruption surfaces here


def _float_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """Float pixels in [0, 1] (or [0, 255]) → uint8, channels kept (3 for a 2-D array)."""
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    low, high = float(array.min(initial=0)), float(array.max(initial=0))
    if low < 0 or high > 255:
        raise ValueError(f"{what} values span {low:g}..{high:g}; expected [0, 1] (or [0, 255])")
    scaled = array * 255.0 if high <= 1.0 else array
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def _decode_pil(
    source: str | os.PathLike | io.BytesIO, name: str, background: Colour, max_pixels: int | None
) -> torch.Tensor:
    """Open an image file (lazily: the header only), check its size, then decode it.

    Raises:
        BadMediaError: Not an image, truncated, corrupt, or over ``max_pixels`` (or Pillow's own bomb limit).
    """
    try:
        with Image.open(source) as image:
            _check_pixels(image.width, image.height, max_pixels, "image", name)
            rgb = _pil_to_uint8(image, background)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, BadMediaError):
            raise
        raise BadMediaError.for_file("image", name, f"{type(err).__name__}: {err}") from err
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def load_image(
    path: str | os.PathLike, background: str | Sequence[int] = DEFAULT_BACKGROUND, max_pixels: int | None = None
) -> torch.Tensor:
    """Decode an image file (any format Pillow reads) as RGB, as a person sees it: turned upright by its EXIF
    orientation, transparent pixels composited over ``background``; grayscale and palette images become 3
    channels, 16-bit and float images are scaled into 0..255.

    Args:
        path: The image file.
        background: Colour under transparent pixels (see :func:`rgb_colour`).
        max_pixels: Refuse an image of more pixels than this, from its header (before decoding); ``None``
            leaves only Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, doubled).

    Returns:
        ``(3, H, W)`` uint8 tensor.

    Raises:
        BadMediaError: The file is missing, unreadable, not an image, truncated, or too large.
    """
    path = Path(path)
    _check_exists("image", path)
    return _decode_pil(path, str(path), rgb_colour(background), max_pixels)


def decode_image(
    value: Any, background: str | Sequence[int] = DEFAULT_BACKGROUND, max_pixels: int | None = None
) -> torch.Tensor:
    """Any image value → ``(3, H, W)`` uint8 RGB, as a person sees it (see :func:`load_image`).

    Reads a path (``str`` / ``PathLike``), encoded file bytes, a PIL image, or an array / tensor: ``(H, W)``
    grayscale, ``(H, W, C)`` numpy-style or ``(C, H, W)`` torch-style with C in 1, 3, 4 (alpha composited over
    ``background``); uint8 as is, uint16 scaled by 1/257, floats in [0, 1] (or [0, 255]) scaled to 0..255.
    ``max_pixels`` applies to every kind (files and bytes are checked before their pixels are decoded).

    Raises:
        BadMediaError: A file or bytes that cannot be decoded (the file is named), or an image over
            ``max_pixels``.
        TypeError: A value of another kind.
        ValueError: An array of an unusable shape or range (the message gives it), or a bad ``background``.
    """
    colour = rgb_colour(background)
    if isinstance(value, (str, os.PathLike)):
        return load_image(value, colour, max_pixels)
    if isinstance(value, (bytes, bytearray)):
        try:
            return _decode_pil(io.BytesIO(value), "<image bytes>", colour, max_pixels)
        except BadMediaError as err:
            raise BadMediaError(f"cannot decode image bytes: {err.reason}", reason=err.reason) from err
    if isinstance(value, Image.Image):
        _check_pixels(value.width, value.height, max_pixels, "image", "<PIL image>")
        return torch.from_numpy(np.ascontiguousarray(_pil_to_uint8(value, colour))).permute(2, 0, 1).contiguous()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _array_to_chw(value, colour, max_pixels)
    raise TypeError(
        f"an image must be a file path, encoded bytes, a PIL image or an array/tensor, got {type(value).__name__}"
    )


def _array_to_chw(value: np.ndarray | torch.Tensor, background: Colour, max_pixels: int | None) -> torch.Tensor:
    channels_first = isinstance(value, torch.Tensor)
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim == 3 and channels_first and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, C) or, as a tensor, (C, H, W); got {array.shape}")
    _check_pixels(array.shape[1], array.shape[0], max_pixels, "image", "<image array>")
    if array.dtype == np.uint8:
        pixels = array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=2)
    elif array.dtype == np.uint16:
        pixels = _float_to_uint8(array.astype(np.float64) / 257.0, "uint16 image")
    elif np.issubdtype(array.dtype, np.floating):
        pixels = _float_to_uint8(array.astype(np.float64), "float image")
    else:
        raise ValueError(f"image arrays must be uint8, uint16 or float, got {array.dtype}")
    rgb = _composite(pixels, background) if pixels.shape[-1] == 4 else pixels
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def to_mono_at(samples: np.ndarray | torch.Tensor, rate: int, sample_rate: int, what: str = "audio") -> torch.Tensor:
    """Samples ``(T,)`` or ``(T, channels)`` at ``rate`` → mono float32 ``(T',)`` at ``sample_rate``.

    Channels are averaged (a ``(channels, T)`` tensor with fewer rows than columns is read channels-first);
    another rate is resampled with ``torchaudio.functional.resample``.

    Raises:
        BadMediaError: NaN or infinite samples, before or after averaging and resampling, or samples beyond
            ``±MAX_SAMPLE`` (no recording; the encoders would embed them as NaN).
        ValueError: No samples, a bad rate, or more than two dimensions.
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
    _check_samples(wave, what)
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate < 1:
        raise ValueError(f"{what}: sample rate must be a positive integer, got {rate!r}")
    if int(rate) != int(sample_rate):
        wave = torchaudio.functional.resample(wave, orig_freq=int(rate), new_freq=int(sample_rate))
        _check_samples(wave, what)
    return wave.contiguous()


def _check_samples(wave: torch.Tensor, what: str) -> None:
    """Refuse NaN, infinite or impossibly large samples (``BadMediaError``; a file's reader adds its name)."""
    if not bool(torch.isfinite(wave).all()):
        reason = "it holds NaN or infinite samples"
    elif (peak := float(wave.abs().max())) > MAX_SAMPLE:
        reason = f"it holds samples as large as {peak:.3g}, beyond ±{MAX_SAMPLE:.3g}: not a recording"
    else:
        return
    raise BadMediaError(f"{what}: {reason}", reason=reason)


def load_audio(path: str | os.PathLike, sample_rate: int, window: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode an audio file (WAV, FLAC, OGG and the other formats libsndfile reads) as mono at ``sample_rate``.

    Channels are averaged; a file at another rate is resampled with ``torchaudio.functional.resample``.

    Args:
        path: The audio file.
        sample_rate: Wanted rate in Hz.
        window: ``(start, length)``: only ``decoded[start : start + length]`` of the whole decoded clip, reading
            just the frames it needs from the file (plus the resampling filter's reach), so a long file costs
            no more than its window. ``None``: the whole clip.

    Returns:
        ``(T,)`` float32 waveform, samples in [-1, 1] for integer formats.

    Raises:
        BadMediaError: The file is missing, unreadable, corrupt, truncated, empty, or holds non-finite or
            impossibly large samples.
    """
    path = Path(path)
    _check_exists("audio", path)
    return _read_audio(path, sample_rate, str(path), window)


def _refuse_truncated(source: Path | io.BytesIO, name: str) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds (a truncated file,
    which libsndfile reads as a shorter clip without a word)."""
    shortfall = _wav_shortfall(source)
    if shortfall is not None:
        declared, present = shortfall
        reason = f"truncated: its header promises {declared} bytes of audio but the file holds {present}"
        raise BadMediaError.for_file("audio", name, reason)


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


_READ_ERRORS = (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError)


def _decoded_length(frames: int, rate: int, sample_rate: int) -> int:
    """Samples of ``frames`` frames at ``rate`` resampled to ``sample_rate`` (as torchaudio's resample gives)."""
    if rate == sample_rate:
        return frames
    common = math.gcd(rate, sample_rate)
    # torchaudio's own expression, rounded through a float32 tensor as it does
    return int(torch.ceil(torch.as_tensor(sample_rate // common * frames / (rate // common))))


def _frame_span(window: tuple[int, int], frames: int, rate: int, sample_rate: int) -> tuple[int, int, int]:
    """The frames ``[first, last)`` to read for output samples ``window`` at ``sample_rate``, and the output
    index at which they start.

    torchaudio's resample maps each block of ``rate / gcd`` input frames to ``sample_rate / gcd`` output samples
    with one filter, so a span that starts on a block and reaches past the filter's width on both sides gives
    the same output samples as the whole clip does.
    """
    start, length = window
    if rate == sample_rate:
        return start, min(frames, start + length), start
    common = math.gcd(rate, sample_rate)
    block_in, block_out = rate // common, sample_rate // common
    width = math.ceil(6 * block_in / (0.99 * min(block_in, block_out)))  # torchaudio's filter reach, in frames
    margin = -(-width // block_in) + 1  # in blocks
    first_block = max(0, start // block_out - margin)
    last_block = -(-(start + length) // block_out) + margin
    return first_block * block_in, min(frames, last_block * block_in), first_block * block_out


def _source(value: Any) -> tuple[Path | io.BytesIO, str] | None:
    """A file path or encoded bytes → what soundfile reads and its name for messages; other values → None."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        _check_exists("audio", path)
        return path, str(path)
    if isinstance(value, (bytes, bytearray)):
        return io.BytesIO(bytes(value)), "<audio bytes>"
    return None


def audio_length(value: Any, sample_rate: int) -> int | None:
    """Samples the decoded clip of a file or encoded bytes will have at ``sample_rate``, from the header alone
    (no audio is decoded); ``None`` for other kinds of value.

    Raises:
        BadMediaError: The file is missing, unreadable or truncated.
    """
    found = _source(value)
    if found is None:
        return None
    source, name = found
    _refuse_truncated(source, name)
    try:
        with soundfile.SoundFile(source) as file:
            frames, rate = file.frames, file.samplerate
    except _READ_ERRORS as err:
        raise BadMediaError.for_file("audio", name, f"{type(err).__name__}: {err}") from err
    return _decoded_length(frames, rate, sample_rate)


def _read_audio(
    source: Path | io.BytesIO, sample_rate: int, name: str, window: tuple[int, int] | None = None
) -> torch.Tensor:
    _refuse_truncated(source, name)
    try:
        with soundfile.SoundFile(source) as file:
            rate, first, last, offset = file.samplerate, 0, file.frames, 0
            if window is not None:
                first, last, offset = _frame_span(window, file.frames, rate, sample_rate)
                file.seek(first)
            data = file.read(max(0, last - first), dtype="float32", always_2d=True)
    except _READ_ERRORS as err:
        raise BadMediaError.for_file("audio", name, f"{type(err).__name__}: {err}") from err
    try:
        wave = to_mono_at(data, int(rate), sample_rate, what=name)
    except ValueError as err:
        raise BadMediaError.for_file("audio", name, str(err).removeprefix(f"{name}: ")) from err
    if window is None:
        return wave
    start = window[0] - offset
    return wave[start : start + window[1]].contiguous()


def decode_audio(value: Any, sample_rate: int, window: tuple[int, int] | None = None) -> torch.Tensor:
    """Any audio value → mono float32 ``(T,)`` at ``sample_rate``.

    Reads a path (``str`` / ``PathLike``), encoded file bytes (WAV, FLAC, OGG), or a ``(samples, rate)`` pair
    whose samples are ``(T,)`` or ``(T, channels)`` (numpy or torch). A bare array is refused: without its rate
    the audio could be silently played at the wrong speed.

    Args:
        value: The audio.
        sample_rate: Wanted rate in Hz.
        window: ``(start, length)`` to return only ``decoded[start : start + length]``; files and bytes then
            decode just those frames (see :func:`load_audio`).

    Raises:
        BadMediaError: A file or bytes that cannot be decoded, or samples that are non-finite or impossibly
            large (the file is named).
        TypeError: A value of another kind (the message says how to pass an array).
        ValueError: Bad samples or rate in a ``(samples, rate)`` pair.
    """
    found = _source(value)
    if found is not None:
        source, name = found
        return _read_audio(source, sample_rate, name, window)
    if isinstance(value, tuple) and len(value) == 2:
        samples, rate = value
        wave = to_mono_at(samples, rate, sample_rate)
        return wave if window is None else wave[window[0] : window[0] + window[1]].contiguous()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        raise TypeError(f"pass an audio array with its sample rate, as (samples, rate), e.g. (wave, {sample_rate})")
    raise TypeError(f"audio must be a file path, encoded bytes or a (samples, rate) pair, got {type(value).__name__}")
