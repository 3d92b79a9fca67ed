"""Audio: a path, bytes or (samples, rate) → mono at the encoder's sample rate → a clip of at most a set length.

Decoded files are cached (:class:`~jointembed.modalities.decode_cache.DecodeCache`), so a clip is decoded and
resampled once, not every epoch; training and inference go through the same unit, hence the same cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jointembed.data.media import audio_length, decode_audio
from jointembed.modalities.base import Modality
from jointembed.modalities.decode_cache import DecodeCache
from jointembed.modalities.image import resolve_path
from jointembed.registry import register_modality

__all__ = ["AudioModality", "pack_audio", "WHOLE_CLIP_SECONDS"]

#: Files up to this long (or up to ``max_seconds``) are decoded whole and cached; of a longer file only the
#: window used is read. A minute of 48 kHz stereo is 23 MB decoded: bounded, and worth caching across epochs.
WHOLE_CLIP_SECONDS = 60.0


def pack_audio(waves: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Clips ``(T_i,)`` → ``{"waveform": (n, max T_i) zero-padded, "lengths": (n,)}``."""
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    waveform = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0)
    for i, wave in enumerate(waves):
        waveform[i, : wave.numel()] = wave
    return {"waveform": waveform, "lengths": lengths}


@register_modality("audio")
class AudioModality(Modality):
    """A sound per example: mono, at the audio encoder's sample rate, cropped to ``max_seconds``.

    Raw values: a file path (WAV, FLAC, OGG: anything libsndfile reads), encoded bytes, or a
    ``(samples, rate)`` pair; stereo is averaged to mono and any rate is resampled. Longer clips are cropped to
    their middle (a random window when training, with a random gain of up to ``± gain_db``; with ``crop_eval``
    off, only training crops). Batch: ``{"waveform": FloatTensor (n, T), "lengths": LongTensor (n,)}``, zero-padded.

    Files are decoded once: the whole mono clip at ``sample_rate`` is cached by file path, size and modification
    time (crops and gains are drawn afresh from it each time). The cache settings belong to the machine, not to
    the model: they are not saved with it (a loaded model caches in memory with the defaults). Of a file longer
    than ``WHOLE_CLIP_SECONDS`` (a minute) that is cropped, only the window used is read from disk, each time.
    Samples that are NaN, infinite or beyond ``±2^32`` (after averaging and resampling too) are a
    :class:`~jointembed.data.media.BadMediaError` naming the file: they would embed as NaN.

    Args:
        sample_rate: Rate in Hz; ``None`` takes the bound audio encoder's (the one place it is set).
        max_seconds: Longer clips are cropped to this; ``None`` keeps whole clips.
        gain_db: Range of the random training gain in dB (0 disables it).
        crop_eval: Crop also outside training (to the clip's middle); ``False`` trains on random windows of
            ``max_seconds`` and evaluates and embeds whole clips.
        cache_mb: Memory for decoded clips, in MiB (per process: each DataLoader worker has its own); 0 disables.
            A 5 s clip at 16 kHz takes 0.3 MiB.
        cache_dir: Folder to also keep decoded clips in (shared by processes and runs, e.g. cross-validation
            folds); ``None`` for none.
        cache_dir_mb: Size limit of ``cache_dir`` in MiB; the oldest entries are deleted beyond it.
    """

    def __init__(
        self,
        sample_rate: int | None = None,
        max_seconds: float | None = 1.0,
        gain_db: float = 6.0,
        crop_eval: bool = True,
        cache_mb: float = 1024.0,
        cache_dir: str | None = None,
        cache_dir_mb: float = 4096.0,
    ) -> None:
        super().__init__()
        self._set_config(locals())
        for runtime in ("cache_mb", "cache_dir", "cache_dir_mb"):
            del self._config[runtime]
        if sample_rate is not None and sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds}")
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.crop_eval = crop_eval
        self.gain_db = gain_db
        self.cache = DecodeCache(int(cache_mb * 2**20), cache_dir, int(cache_dir_mb * 2**20))

    @property
    def fitted(self) -> bool:
        return self.sample_rate is not None

    def bind(self, encoder: torch.nn.Module, field: str) -> None:
        """Take the audio encoder's sample rate, or check that it is this unit's.

        Raises:
            ValueError: The unit's and the encoder's rates differ (both are named).
        """
        rate = getattr(encoder, "sample_rate", None)
        if rate is None:
            return
        if self.sample_rate is None:
            self.sample_rate = int(rate)
            self._config["sample_rate"] = int(rate)
        elif int(rate) != self.sample_rate:
            raise ValueError(
                f"field {field!r}: the audio input is set to {self.sample_rate} Hz but its encoder expects {rate} Hz;"
                " leave the input's sample_rate unset to take the encoder's"
            )

    def parse_cell(self, value: Any, base: Path, from_csv: bool) -> Path:
        return resolve_path(value, base)

    def _rate(self) -> int:
        if self.sample_rate is None:
            raise ValueError("the audio input has no sample_rate: set it, or bind it to an audio encoder")
        return self.sample_rate

    def _tag(self) -> str:
        # the cache tag names the decoder's version: bump it when decode_audio's output changes
        return f"audio-v1-{self._rate()}"

    def decode(self, value: Any) -> torch.Tensor:
        """Any audio value → mono float32 ``(T,)`` at ``sample_rate``, the whole clip (files through the cache).

        Raises:
            BadMediaError: An unreadable file or bytes, or NaN, infinite or impossibly large samples.
        """
        rate = self._rate()
        if isinstance(value, (str, PathLike)) and self.cache.enabled:
            return self.cache.get(value, self._tag(), lambda path: decode_audio(path, rate))
        return decode_audio(value, rate)

    def load(self, value: Any, train: bool = False) -> torch.Tensor:
        """``transform(decode(value), train)``, except that of a file (or bytes) longer than
        ``max(max_seconds, 60 s)`` only the window that is used is read (the middle, or a random one when
        training, as ``transform`` crops), so an hour-long recording costs one window, not its whole length.
        Shorter files are decoded whole, once, through the cache."""
        limit = self._crop_length(train)
        if limit is None or not isinstance(value, (str, PathLike, bytes, bytearray)):
            return self.transform(self.decode(value), train)
        if isinstance(value, (str, PathLike)) and self.cache.enabled:
            cached = self.cache.lookup(value, self._tag())  # a short file decoded before: no header to read
            if cached is not None:
                return self.transform(cached, train)
        rate = self._rate()
        total = audio_length(value, rate)
        if total is None or total <= max(limit, round(WHOLE_CLIP_SECONDS * rate)):
            return self.transform(self.decode(value), train)
        spare = total - limit
        start = int(torch.randint(0, spare + 1, ())) if train else spare // 2  # as transform would crop
        return self.transform(decode_audio(value, rate, window=(start, limit)), train)

    def _crop_length(self, train: bool) -> int | None:
        """Samples ``transform`` crops a clip to, or ``None`` when it keeps whole clips."""
        if self.max_seconds is None or not (train or self.crop_eval):
            return None
        return max(1, round(self.max_seconds * self._rate()))

    def transform(self, decoded: torch.Tensor, train: bool = False) -> torch.Tensor:
        wave = decoded
        limit = self._crop_length(train)
        if limit is not None and wave.numel() > limit:
            spare = wave.numel() - limit
            start = int(torch.randint(0, spare + 1, ())) if train else spare // 2
            wave = wave[start : start + limit]
        if train and self.gain_db > 0:
            decibels = (torch.rand(()) * 2 - 1) * self.gain_db
            wave = wave * torch.pow(10.0, decibels / 20)
        return wave

    def collate(self, items: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return pack_audio(items)

    def example_values(self, count: int = 2, seed: int = 0) -> list[Any]:
        rng = np.random.default_rng(seed)
        rate = self.sample_rate or 8000
        return [(rng.uniform(-0.5, 0.5, rate // 4 + 100 * i).astype(np.float32), rate) for i in range(count)]
