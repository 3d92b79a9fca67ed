"""The cache of decoded files: the same tensors as a fresh decode, from memory and from disk; refreshed when the file
changes; bounded; empty when pickled; and the audio unit's use of it."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from jointembed.data.media import BadMediaError, decode_audio
from jointembed.modalities import AudioModality
from jointembed.modalities.decode_cache import DecodeCache


def write_wav(path: Path, seed: int, seconds: float = 0.5, rate: int = 44100) -> Path:
    rng = np.random.default_rng(seed)
    samples = rng.uniform(-0.5, 0.5, round(rate * seconds)).astype(np.float32)
    soundfile.write(path, samples, rate, subtype="FLOAT" if path.suffix == ".wav" else None)
    return path


def rewrite(path: Path, seed: int) -> None:
    """New content of the same size, and a modification time moved on (as an editor's save would)."""
    before = path.stat()
    write_wav(path, seed)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


class Counting:
    """A decoder that counts its calls."""

    def __init__(self, rate: int = 16000) -> None:
        self.rate, self.calls = rate, 0

    def __call__(self, path: Path) -> torch.Tensor:
        self.calls += 1
        return decode_audio(path, self.rate)


def test_memory_level_returns_what_a_fresh_decode_returns_and_decodes_once(tmp_path: Path) -> None:
    clip = write_wav(tmp_path / "a b.wav", seed=0)
    cache, decode = DecodeCache(), Counting()
    first = cache.get(clip, "t", decode)
    again = cache.get(str(clip), "t", decode)
    torch.testing.assert_close(first, decode_audio(clip, 16000), rtol=0, atol=0)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert decode.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    again.zero_()  # a copy: changing what was returned leaves the cache as it was
    torch.testing.assert_close(cache.get(clip, "t", decode), first, rtol=0, atol=0)
    assert cache.get(clip, "other tag", decode) is not None and decode.calls == 2


def test_a_rewritten_file_is_decoded_again(tmp_path: Path) -> None:
    clip = write_wav(tmp_path / "clip.wav", seed=0)
    cache, decode = DecodeCache(folder=tmp_path / "cache"), Counting()
    old = cache.get(clip, "t", decode)
    rewrite(clip, seed=1)
    new = cache.get(clip, "t", decode)
    torch.testing.assert_close(new, decode_audio(clip, 16000), rtol=0, atol=0)
    assert not torch.equal(new, old) and decode.calls == 2
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # the old entry was replaced, not kept beside it
    # a new process (an empty memory level) reads the refreshed entry from disk
    fresh, decode = DecodeCache(folder=tmp_path / "cache"), Counting()
    torch.testing.assert_close(fresh.get(clip, "t", decode), new, rtol=0, atol=0)
    assert decode.calls == 0 and fresh.disk_hits == 1
    rewrite(clip, seed=2)  # ... and not once the file changes again
    torch.testing.assert_close(fresh.get(clip, "t", decode), decode_audio(clip, 16000), rtol=0, atol=0)
    assert decode.calls == 1


def test_disk_level_is_shared_written_whole_and_survives_a_corrupt_entry(tmp_path: Path) -> None:
    clip = write_wav(tmp_path / "clip.wav", seed=0)
    folder = tmp_path / "cache"
    DecodeCache(max_bytes=0, folder=folder).get(clip, "t", Counting())
    (entry,) = folder.iterdir()  # no temporary file left behind
    assert entry.suffix == ".npz"
    decode = Counting()
    from_disk = DecodeCache(max_bytes=0, folder=folder).get(clip, "t", decode)
    torch.testing.assert_close(from_disk, decode_audio(clip, 16000), rtol=0, atol=0)
    assert decode.calls == 0
    entry.write_bytes(b"not a zip")  # a damaged entry is a miss, and is rewritten
    cache = DecodeCache(max_bytes=0, folder=folder)
    torch.testing.assert_close(cache.get(clip, "t", decode), decode_audio(clip, 16000), rtol=0, atol=0)
    assert decode.calls == 1 and np.load(entry)["data"].shape == (8000,)


def test_both_levels_stay_within_their_budgets(tmp_path: Path) -> None:
    clips = [write_wav(tmp_path / f"{i}.wav", seed=i) for i in range(4)]  # 8000 float32 samples = 32,000 bytes each
    cache = DecodeCache(max_bytes=70_000, folder=tmp_path / "cache", max_folder_bytes=100_000)
    decode = Counting()
    for clip in clips:
        cache.get(clip, "t", decode)
    assert cache.memory_bytes == 64_000  # the two most recently used
    cache.get(clips[3], "t", decode)
    assert cache.hits == 1
    cache.get(clips[0], "t", decode)  # evicted from memory, read from disk if still there, else decoded
    assert cache.hits == 1 and decode.calls + cache.disk_hits == 5
    sizes = [p.stat().st_size for p in (tmp_path / "cache").glob("*.npz")]
    assert sum(sizes) <= 100_000 and len(sizes) < 4


def test_a_pickled_or_copied_cache_is_empty_with_the_same_settings(tmp_path: Path) -> None:
    clip = write_wav(tmp_path / "clip.wav", seed=0)
    cache = DecodeCache(max_bytes=1 << 20, folder=tmp_path / "c", max_folder_bytes=1 << 21)
    cache.get(clip, "t", Counting())
    for other in (pickle.loads(pickle.dumps(cache)), copy.deepcopy(cache)):
        assert other.memory_bytes == 0 and (other.max_bytes, other.max_folder_bytes) == (1 << 20, 1 << 21)
        assert other.folder == tmp_path / "c"


def test_the_audio_unit_decodes_files_through_its_cache(tmp_path: Path) -> None:
    clip = write_wav(tmp_path / "clip.ogg", seed=0, seconds=1.0)
    unit = AudioModality(sample_rate=16000, max_seconds=None, cache_dir=str(tmp_path / "cache"))
    torch.testing.assert_close(unit.load(clip), decode_audio(clip, 16000), rtol=0, atol=0)
    torch.testing.assert_close(unit.load(clip), decode_audio(clip, 16000), rtol=0, atol=0)
    assert (unit.cache.misses, unit.cache.hits) == (1, 1)
    assert "cache_dir" not in unit.get_config()  # the machine's setting, not the model's
    with pytest.raises(BadMediaError, match="missing.wav: no such file"):
        unit.load(tmp_path / "missing.wav")
    off = AudioModality(sample_rate=16000, max_seconds=None, cache_mb=0)
    off.load(clip)
    assert not off.cache.enabled and off.cache.misses == 0
