"""The modality units one by one: parse_cell, decode, transform, collate, fit and bind, and the decoders they use
(``decode_image``, ``decode_audio``) on every kind of raw value."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from jointembed.data.media import BadMediaError, decode_audio, decode_image
from jointembed.modalities import AudioModality, IdsModality, ImageModality, Modality, TextModality
from jointembed.registry import create_modality, list_modalities
from jointembed.sparse import SparseBatch


def sine(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# ----- every registered unit -------------------------------------------------------------------------------------


def test_the_four_units_are_registered() -> None:
    assert {"ids", "text", "image", "audio"} <= set(list_modalities())


@pytest.mark.parametrize(
    ("name", "kwargs"), [("ids", {}), ("text", {}), ("image", {"image_size": 8}), ("audio", {"sample_rate": 8000})]
)
def test_example_values_load_collate_and_rebuild_from_config(name: str, kwargs: dict) -> None:
    unit: Modality = create_modality(name, **kwargs)
    assert unit.registry_name == name
    values = unit.example_values(3)
    if not unit.fitted:
        unit.fit(values)
    items = [unit.load(v) for v in values]
    batch = unit.collate(items)
    rebuilt = create_modality(unit.registry_name, **unit.get_config())
    assert type(rebuilt) is type(unit) and rebuilt.get_config() == unit.get_config()
    again = rebuilt.collate([rebuilt.load(v) for v in values])
    if isinstance(batch, SparseBatch):
        assert torch.equal(batch.values, again.values) and torch.equal(batch.offsets, again.offsets)
    elif isinstance(batch, dict):
        assert all(torch.equal(batch[k], again[k]) for k in batch)
    elif isinstance(batch, torch.Tensor):
        assert torch.equal(batch, again)
    else:
        assert batch == again


# ----- ids -------------------------------------------------------------------------------------------------------


def test_ids_parse_cell_from_json_and_csv(tmp_path: Path) -> None:
    ids = IdsModality()
    assert ids.parse_cell([3, "x"], tmp_path, from_csv=False) == (3, "x")
    assert ids.parse_cell(5, tmp_path, from_csv=False) == (5,)
    assert ids.parse_cell("3 17 42", tmp_path, from_csv=True) == (3, 17, 42)
    assert ids.parse_cell("new york|paris", tmp_path, from_csv=True) == ("new york", "paris")
    for bad in ([1, True], 1.5, [None]):
        with pytest.raises(TypeError, match="an ID must be an integer or a string"):
            ids.parse_cell(bad, tmp_path, from_csv=False)
    assert ids.decode("Heat") == ["Heat"] and ids.decode((1, 2)) == [1, 2]


def test_string_ids_go_through_a_vocabulary_of_the_training_keys(tmp_path: Path) -> None:
    ids = IdsModality()
    assert not ids.fitted
    with pytest.raises(ValueError, match="fit it on the training keys first"):
        ids.load(["apple"])
    ids.fit([("apple", "pear"), ("apple", 3)], every=[("apple", "pear"), ("apple", 3), ("pear", "kiwi")])
    assert ids.fitted and ids.mode == "vocabulary" and ids.vocab is not None
    assert ids.vocab.pad_id == 0 and ids.vocab.oov_id == 1
    assert ids.num_ids == 5  # <pad>, <oov>, apple, pear, 3
    assert ids.load(["apple", "pear"]) == [2, 3] and ids.load(["apple", 3]) == [2, 4]
    assert ids.load(["pear", "kiwi"]) == [3, 1]  # kiwi was never seen in training: <oov>
    batch = ids.collate([[2, 3], [], [4]])
    assert isinstance(batch, SparseBatch) and len(batch) == 3
    assert batch.values.tolist() == [2, 3, 4] and batch.offsets.tolist() == [0, 2, 2]
    strict = IdsModality(unknown="error")
    strict.fit([("apple",)])
    with pytest.raises(ValueError, match="unknown ID 'kiwi'"):
        strict.load(["kiwi"])
    # the vocabulary is saved as a file of the pretrained folder and read back
    config = ids.save_to(tmp_path)
    assert config["vocabulary"] == "vocab.json" and (tmp_path / "vocab.json").is_file()
    loaded = IdsModality.load_from(config, tmp_path)
    assert loaded.load(["apple", "pear", 3, "kiwi"]) == [2, 3, 4, 1]


def test_integer_ids_are_kept_and_checked() -> None:
    ids = IdsModality()
    ids.fit([(0, 4)], every=[(0, 4), (9,), ("x",)])
    assert ids.mode == "integer" and ids.vocab is None and ids.num_ids == 10  # the largest ID of any split + 1
    assert ids.load([0, 4]) == [0, 4] and ids.load(9) == [9]
    with pytest.raises(ValueError, match="string ID 'x', but the training IDs are all integers"):
        ids.load(["x"])
    with pytest.raises(ValueError, match=r"ID -1 is outside the table's \[0, 10\)"):
        ids.load([-1])
    with pytest.raises(ValueError, match=r"ID 10 is outside"):
        ids.load([10])
    assert ids.get_config() == {
        "unknown": "oov",
        "mode": "integer",
        "num_ids": 10,
        "vocabulary": None,
        "empty": "error",
    }


def test_ids_with_no_keys_stay_unfitted_and_rebuild_from_config() -> None:
    ids = IdsModality()
    ids.fit([], every=[])  # e.g. a model's ids field that no manifest row fills
    assert not ids.fitted and ids.num_ids is None
    assert not create_modality("ids", **ids.get_config()).fitted
    ids.fit([], every=[("x",)])  # only strings outside training: no way to tell integers from a vocabulary
    assert not ids.fitted
    ids.fit([], every=[(3,)])
    assert ids.mode == "integer" and ids.num_ids == 4


def test_ids_bind_sizes_an_unsized_id_encoder() -> None:
    from jointembed.encoders.ids import IdEncoder

    ids = IdsModality()
    ids.fit([("a", "b"), ("c",)])
    encoder = IdEncoder(num_embeddings=None, embedding_dim=4, hidden_sizes=[], output_dim=4)
    ids.bind(encoder, "movie")
    assert encoder.embedding.num_embeddings == 5  # <pad>, <oov>, a, b, c
    small = IdEncoder(num_embeddings=3, embedding_dim=4, hidden_sizes=[], output_dim=4)
    with pytest.raises(ValueError, match="field 'movie': the IdEncoder's table has 3 rows but its input has 5"):
        ids.bind(small, "movie")


# ----- text ------------------------------------------------------------------------------------------------------


def test_text_parse_decode_and_collate(tmp_path: Path) -> None:
    text = TextModality()
    assert text.parse_cell("hello, world", tmp_path, from_csv=True) == "hello, world"
    with pytest.raises(ValueError, match="must be a string, got 3"):
        text.parse_cell(3, tmp_path, from_csv=False)
    assert text.load("  seven ") == "seven" and TextModality(strip=False).load(" seven ") == " seven "
    assert text.decode("café".encode()) == "café"
    with pytest.raises(ValueError, match="text bytes are not UTF-8"):
        text.decode(b"\xff\xfe")
    with pytest.raises(TypeError, match="text must be a str, got int"):
        text.decode(3)
    assert text.collate(("a", "b")) == ["a", "b"] and text.collate([]) == []


# ----- image -----------------------------------------------------------------------------------------------------


def test_image_parse_cell_resolves_paths(tmp_path: Path) -> None:
    image = ImageModality()
    assert image.parse_cell("img/../img/a.png", tmp_path, from_csv=False) == tmp_path / "img" / "a.png"
    assert image.parse_cell(str(tmp_path / "b.png"), Path("/elsewhere"), from_csv=True) == tmp_path / "b.png"
    assert image.parse_cell("~/c.png", tmp_path, from_csv=False) == Path.home() / "c.png"
    with pytest.raises(ValueError, match=r"must be a file path \(a string\), got 1"):
        image.parse_cell(1, tmp_path, from_csv=False)


def test_image_transform_resizes_the_shorter_side_and_centre_crops() -> None:
    unit = ImageModality(image_size=4)
    stripes = torch.zeros(3, 4, 8, dtype=torch.uint8)
    stripes[:, :, 4:] = 255  # left half black, right half white
    out = unit.transform(stripes)
    assert out.shape == (3, 4, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out[0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))  # the centre columns 2..5
    square = unit.transform(torch.full((3, 8, 8), 255, dtype=torch.uint8))
    torch.testing.assert_close(square, torch.ones(3, 4, 4))
    batch = unit.collate([out, square])
    assert batch.shape == (2, 3, 4, 4) and unit.collate([]).shape == (0, 3, 4, 4)
    with pytest.raises(ValueError, match="need image_size >= 1"):
        ImageModality(image_size=0)


def test_image_training_transform_augments_unless_strength_is_zero() -> None:
    value = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8))
    torch.manual_seed(0)
    unit = ImageModality(image_size=16)
    augmented = [unit.transform(value, train=True) for _ in range(3)]
    assert all(a.shape == (3, 16, 16) for a in augmented)
    assert any(not torch.equal(a, unit.transform(value)) for a in augmented)
    plain = ImageModality(image_size=16, augment_strength=0)
    assert torch.equal(plain.transform(value, train=True), plain.transform(value))


def test_decode_image_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    deep = np.full((4, 5), 40000, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really a 16-bit file
    for value in (tmp_path / "deep.png", str(tmp_path / "deep.png"), (tmp_path / "deep.png").read_bytes()):
        image = decode_image(value)
        assert image.shape == (3, 4, 5) and image.dtype == torch.uint8
        assert float(image.float().mean()) == pytest.approx(40000 / 257, abs=0.5)  # 156, not clipped to 255
    assert decode_image(deep)[:, 0, 0].tolist() == [156, 156, 156]  # uint16 arrays too


def test_decode_image_float_tiff_and_float_arrays() -> None:
    ramp = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    expected = torch.from_numpy(np.rint(ramp.astype(np.float64) * 255).astype(np.uint8))
    tiff = decode_image(png_bytes(Image.fromarray(ramp), "TIFF"))  # a float ("F" mode) TIFF
    assert tiff.shape == (3, 4, 5) and torch.equal(tiff[0], expected) and torch.equal(tiff[2], expected)
    assert torch.equal(decode_image(ramp)[1], expected)  # floats in [0, 1]
    assert torch.equal(decode_image(ramp * 255)[1], expected)  # floats in [0, 255]
    chw = decode_image(torch.from_numpy(np.stack([ramp] * 3)))  # a torch tensor is read channels-first
    assert chw.shape == (3, 4, 5) and torch.equal(chw[0], expected)
    with pytest.raises(ValueError, match=r"float image values span -1\.\.0"):
        decode_image(np.full((2, 2), -1.0))
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_image(np.full((2, 2), np.nan))


def test_decode_image_uint8_arrays_pil_and_bytes() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.equal(decode_image(rgb), expected)  # numpy (H, W, C)
    opaque = np.concatenate([rgb, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    assert torch.equal(decode_image(opaque), expected)  # opaque alpha changes nothing
    faint = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    faded = torch.from_numpy(np.rint(rgb * (7 / 255)).astype(np.uint8)).permute(2, 0, 1)
    assert torch.equal(decode_image(faint), faded)  # composited over the default black
    gray = decode_image(rgb[..., 0])
    assert gray.shape == (3, 4, 5) and all(torch.equal(c, expected[0]) for c in gray)
    assert torch.equal(decode_image(Image.fromarray(rgb)), expected)
    assert decode_image(Image.new("L", (5, 4), 9))[:, 0, 0].tolist() == [9, 9, 9]
    assert torch.equal(decode_image(png_bytes(Image.fromarray(rgb))), expected)
    assert torch.equal(ImageModality().decode(bytearray(png_bytes(Image.fromarray(rgb)))), expected)
    with pytest.raises(BadMediaError, match="cannot decode image bytes"):
        decode_image(b"not an image")
    with pytest.raises(ValueError, match="image arrays must be uint8, uint16 or float"):
        decode_image(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"an image array must be .*got \(2, 2, 5\)"):
        decode_image(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(TypeError, match="an image must be a file path, encoded bytes, a PIL image"):
        decode_image(3)


# ----- audio -----------------------------------------------------------------------------------------------------


def test_decode_audio_stereo_resampling_bytes_and_pairs(tmp_path: Path) -> None:
    stereo = np.stack([np.full(800, 0.5, np.float32), np.full(800, 0.1, np.float32)], axis=1)
    torch.testing.assert_close(decode_audio((stereo, 8000), 8000), torch.full((800,), 0.3))  # numpy (T, channels)
    channels_first = torch.from_numpy(stereo.T.copy())  # a torch (channels, T) tensor
    torch.testing.assert_close(decode_audio((channels_first, 8000), 8000), torch.full((800,), 0.3))
    soundfile.write(tmp_path / "stereo.wav", stereo, 8000, subtype="FLOAT")
    torch.testing.assert_close(decode_audio(tmp_path / "stereo.wav", 8000), torch.full((800,), 0.3))
    wave = decode_audio((sine(16000, 1.0), 16000), 8000)  # 16 kHz → 8 kHz
    assert wave.shape == (8000,) and wave.dtype == torch.float32
    torch.testing.assert_close(wave[100:-100], torch.from_numpy(sine(8000, 1.0))[100:-100], atol=2e-3, rtol=0)
    buffer = io.BytesIO()
    soundfile.write(buffer, sine(16000, 1.0), 16000, format="WAV", subtype="PCM_16")
    from_bytes = decode_audio(buffer.getvalue(), 8000)
    assert from_bytes.shape == (8000,)
    torch.testing.assert_close(from_bytes, wave, atol=1e-3, rtol=0)
    with pytest.raises(BadMediaError, match="cannot read audio file <audio bytes>"):
        decode_audio(b"RIFF garbage", 8000)


@pytest.mark.parametrize("bare", [sine(8000, 0.1), torch.from_numpy(sine(8000, 0.1))], ids=["numpy", "torch"])
def test_decode_audio_refuses_a_bare_array(bare: np.ndarray | torch.Tensor) -> None:
    with pytest.raises(TypeError, match=r"pass an audio array with its sample rate, as \(samples, rate\)"):
        decode_audio(bare, 8000)


def test_decode_audio_bad_pairs_and_kinds() -> None:
    with pytest.raises(ValueError, match="sample rate must be a positive integer, got 0"):
        decode_audio((sine(8000, 0.1), 0), 8000)
    with pytest.raises(ValueError, match="it holds no samples"):
        decode_audio((np.zeros(0, np.float32), 8000), 8000)
    with pytest.raises(TypeError, match=r"audio must be a file path, encoded bytes or a \(samples, rate\) pair"):
        decode_audio(3, 8000)


def test_audio_rate_comes_from_the_encoder_or_is_checked_against_it(tmp_path: Path) -> None:
    encoder = torch.nn.Module()
    encoder.sample_rate = 16000
    unit = AudioModality()
    assert not unit.fitted
    with pytest.raises(ValueError, match="the audio input has no sample_rate"):
        unit.load((sine(8000, 0.1), 8000))
    unit.bind(encoder, "speech")
    assert unit.fitted and unit.sample_rate == 16000 and unit.get_config()["sample_rate"] == 16000
    assert unit.load((sine(8000, 0.1), 8000)).shape == (1600,)  # resampled to the encoder's rate
    with pytest.raises(ValueError, match="field 'speech': the audio input is set to 8000 Hz but its encoder expects"):
        AudioModality(sample_rate=8000).bind(encoder, "speech")
    assert unit.parse_cell("wav/a.wav", tmp_path, from_csv=True) == tmp_path / "wav" / "a.wav"
    with pytest.raises(ValueError, match="must be a file path"):
        unit.parse_cell(["a.wav"], tmp_path, from_csv=False)


def test_audio_transform_crops_and_gains() -> None:
    unit = AudioModality(sample_rate=10, max_seconds=0.4, gain_db=6.0)
    wave = torch.arange(10, dtype=torch.float32) + 1
    torch.testing.assert_close(unit.transform(wave), torch.tensor([4.0, 5.0, 6.0, 7.0]))  # the middle 4 samples
    torch.manual_seed(0)
    for _ in range(5):
        crop = unit.transform(wave, train=True)
        gain = float(crop[1] - crop[0])  # the wave rises by 1 a sample, so the crop by the gain
        assert 10 ** (-6 / 20) - 1e-5 <= gain <= 10 ** (6 / 20) + 1e-5
        start = round(float(crop[0]) / gain) - 1
        torch.testing.assert_close(crop / gain, wave[start : start + 4])  # a contiguous window
    no_gain = AudioModality(sample_rate=10, max_seconds=0.4, gain_db=0)
    crop = no_gain.transform(wave, train=True)
    assert crop.shape == (4,) and torch.equal(crop, wave[int(crop[0]) - 1 :][:4])
    assert torch.equal(AudioModality(sample_rate=10, max_seconds=None).transform(wave), wave)
    batch = unit.collate([torch.ones(3), torch.ones(1)])
    assert batch["waveform"].tolist() == [[1, 1, 1], [1, 0, 0]] and batch["lengths"].tolist() == [3, 1]
    assert unit.collate([])["waveform"].shape == (0, 0)
    with pytest.raises(ValueError, match="max_seconds must be > 0 or None"):
        AudioModality(max_seconds=0)


def test_audio_without_crop_eval_trains_on_windows_and_evaluates_whole_clips() -> None:
    unit = AudioModality(sample_rate=10, max_seconds=0.4, gain_db=0, crop_eval=False)
    wave = torch.arange(10, dtype=torch.float32)
    assert torch.equal(unit.transform(wave), wave)  # evaluation and embedding: the whole clip
    assert unit.transform(wave, train=True).shape == (4,)  # training: a random window of max_seconds
    assert create_modality("audio", **unit.get_config()).crop_eval is False  # saved with the model


def test_a_truncated_wav_is_a_bad_file_not_a_shorter_clip(tmp_path: Path) -> None:
    """libsndfile reads a WAV cut mid-stream as a shorter clip; the header's data size gives it away."""
    soundfile.write(tmp_path / "full.wav", np.zeros(8000, np.float32), 8000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    assert decode_audio(tmp_path / "full.wav", 8000).numel() == 8000
    with pytest.raises(BadMediaError, match=r"cut\.wav: truncated: its header promises 16000 bytes .* holds 7978"):
        decode_audio(tmp_path / "cut.wav", 8000)
    with pytest.raises(BadMediaError, match="truncated"):
        decode_audio(data[: len(data) // 2], 8000)
