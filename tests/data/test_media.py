"""Decoding images and audio, and the errors for missing or corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from jointembed.data.media import BadMediaError, load_audio, load_image
from jointembed.errors import DataFormatError


def sine(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_wav_at_16k_loads_resampled_to_8k(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    soundfile.write(path, sine(16000, 1.0), 16000, subtype="PCM_16")
    wave = load_audio(path, 8000)
    assert wave.shape == (8000,) and wave.dtype == torch.float32
    torch.testing.assert_close(wave[100:-100], torch.from_numpy(sine(8000, 1.0))[100:-100], atol=2e-3, rtol=0)
    assert load_audio(path, 16000).shape == (16000,)


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = np.full(800, 0.5, np.float32), np.full(800, 0.1, np.float32)
    soundfile.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    wave = load_audio(path, 8000)
    torch.testing.assert_close(wave, torch.full((800,), 0.3))


@pytest.mark.parametrize(("name", "subtype"), [("tone.flac", "PCM_16"), ("tone.ogg", "VORBIS")])
def test_flac_and_ogg(tmp_path: Path, name: str, subtype: str) -> None:
    path = tmp_path / name
    soundfile.write(path, sine(8000, 0.5), 8000, subtype=subtype)
    wave = load_audio(path, 8000)
    assert wave.shape == (4000,) and float(wave.abs().max()) == pytest.approx(0.5, abs=0.05)


def test_png_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    image = load_image(tmp_path / "gray.png")
    assert image.shape == (3, 12, 10) and image.dtype == torch.uint8
    for channel in image:
        assert torch.equal(channel, torch.from_numpy(gray))
    Image.new("RGBA", (5, 4), (10, 20, 30, 255)).save(tmp_path / "opaque.png")
    opaque = load_image(tmp_path / "opaque.png")
    assert opaque.shape == (3, 4, 5) and opaque[:, 0, 0].tolist() == [10, 20, 30]
    # alpha 40/255 over the default black background: round(c * 40 / 255)
    Image.new("RGBA", (5, 4), (10, 20, 30, 40)).save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png")[:, 0, 0].tolist() == [2, 3, 5]


def test_missing_files_name_the_file(tmp_path: Path) -> None:
    for load in (load_image, lambda p: load_audio(p, 8000)):
        with pytest.raises(BadMediaError, match=r"nothere\.bin: no such file") as info:
            load(tmp_path / "nothere.bin")
        assert isinstance(info.value, DataFormatError) and info.value.path == str(tmp_path / "nothere.bin")
    with pytest.raises(BadMediaError, match="not a regular file"):
        load_image(tmp_path)


def test_corrupt_images_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(b"this is not a PNG file at all")
    with pytest.raises(BadMediaError, match=r"cannot read image file .*noise\.png: UnidentifiedImageError"):
        load_image(tmp_path / "noise.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadMediaError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")


def test_corrupt_and_empty_audio_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "noise.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(BadMediaError, match=r"cannot read audio file .*noise\.wav"):
        load_audio(tmp_path / "noise.wav", 8000)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(BadMediaError, match=r"empty\.wav: it holds no samples"):
        load_audio(tmp_path / "empty.wav", 8000)


def test_error_located_at_a_manifest_row_and_rebuilt_from_its_message() -> None:
    err = BadMediaError.for_file("image", "/data/a.png", "no such file").at_row("/data/m.jsonl", 12)
    assert str(err) == "/data/m.jsonl, row 12: cannot read image file /data/a.png: no such file"
    assert (err.path, err.row, err.manifest, err.reason) == ("/data/a.png", 12, "/data/m.jsonl", "no such file")
    # DataLoader workers re-raise an exception as type(err)(text): a single argument must do.
    assert "row 12" in str(BadMediaError(str(err)))
