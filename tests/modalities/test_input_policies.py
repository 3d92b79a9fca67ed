"""Inputs decoded as a person would see or hear them, and inputs refused before they cost or mislead:

* a photo is turned upright by its EXIF orientation;
* transparency is composited over the image unit's ``background`` (a drawing in the alpha channel, a palette
  PNG with a transparent colour);
* an image larger than the unit's ``max_pixels`` is a named bad file, refused from its header;
* of a long audio file only the window used is read;
* audio samples that are NaN, infinite or impossibly large are a named bad file (they embedded as NaN);
* an empty text, a text with no word for the scratch encoder, and an empty ID bag are refused, naming the value,
  by default (they all embedded to one vector, which ``classify`` answered confidently).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image, ImageFile

from jointembed.data.media import BadMediaError, EmptyInputError, decode_audio, decode_image
from jointembed.data.multimodal import Example, MultimodalDataset
from jointembed.modalities import AudioModality, IdsModality, ImageModality, TextModality
from jointembed.models.joint import JointEmbeddingModel
from jointembed.registry import create_encoder, create_modality, get_encoder_class


def _tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_encoder(name, **get_encoder_class(name).tiny_config())


def _drawing() -> np.ndarray:
    """A light-on-dark, asymmetric 12x20 drawing (like the bundled digit images)."""
    drawing = np.zeros((12, 20), np.uint8)
    drawing[2:10, 3] = 255
    drawing[2, 3:15] = 200
    drawing[5:7, 10:18] = 90
    return drawing


def _save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


# ----- photos: orientation and transparency ----------------------------------------------------------------------

# EXIF orientation → the transpose that shows the photo upright; each is its own inverse but for the rotations.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_INVERSE = {**_UPRIGHT, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", sorted(_UPRIGHT))
def test_a_photo_stored_sideways_decodes_upright_by_its_exif_orientation(orientation: int, tmp_path: Path) -> None:
    upright = np.random.default_rng(orientation).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    stored = Image.fromarray(upright).transpose(_INVERSE[orientation])  # as the camera wrote the pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(stored, tmp_path / "photo.png", exif=exif)
    expected = torch.from_numpy(upright).permute(2, 0, 1)
    unit = ImageModality(image_size=8)
    for value in (path, path.read_bytes(), Image.open(path)):
        assert torch.equal(unit.decode(value), expected)
    assert torch.equal(unit.load(path), unit.load(upright))  # training and embedding see the upright photo


def test_a_rotated_photo_embeds_equal_to_the_upright_one(tmp_path: Path) -> None:
    upright = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise: shown after a quarter turn clockwise
    rotated = _save(Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90), tmp_path / "r.png", exif=exif)
    plain = _save(Image.fromarray(upright), tmp_path / "u.png")
    model = JointEmbeddingModel({"image": _tiny("cnn_image"), "text": _tiny("scratch_text")}).eval()
    vectors = model.embed(image=[rotated, plain])
    torch.testing.assert_close(vectors[0], vectors[1])


def test_a_drawing_in_the_alpha_channel_decodes_like_the_opaque_drawing(tmp_path: Path) -> None:
    drawing = _drawing()
    opaque = decode_image(drawing)
    white = np.full_like(drawing, 255)
    rgba = Image.fromarray(np.dstack([white, white, white, drawing]), "RGBA")  # white ink, transparent paper
    gray_alpha = Image.merge("LA", [Image.fromarray(white), Image.fromarray(drawing)])
    unit = ImageModality(image_size=8)  # the default background: black, the bundled digits' paper
    for image in (rgba, gray_alpha):
        path = _save(image, tmp_path / "drawing.png")
        assert torch.equal(unit.decode(path), opaque)
        assert torch.equal(unit.decode(path.read_bytes()), opaque)
    assert torch.equal(unit.decode(np.dstack([white, white, white, drawing])), opaque)  # an RGBA array too
    # dark ink on a transparent page reads as on white paper with background white
    ink = Image.fromarray(np.dstack([0 * white, 0 * white, 0 * white, drawing]), "RGBA")
    on_white = ImageModality(background="white").decode(_save(ink, tmp_path / "ink.png"))
    assert torch.equal(on_white, decode_image(255 - drawing))


def test_a_palette_png_with_a_transparent_colour_decodes_like_the_opaque_drawing(tmp_path: Path) -> None:
    drawing = (_drawing() > 0).astype(np.uint8)  # palette index 1 (white) where drawn, else 0
    palette = Image.fromarray(drawing, "P")
    palette.putpalette([255, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)  # 0: red, marked transparent below
    path = _save(palette, tmp_path / "palette.png", transparency=0)
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    assert torch.equal(ImageModality().decode(path), decode_image(drawing * 255))  # paper black, not red
    # an RGB image with one colour marked transparent (PNG tRNS) too
    rgb = Image.fromarray(np.dstack([np.full_like(drawing, 255), drawing * 255, drawing * 255]))  # white on red
    path = _save(rgb, tmp_path / "trns.png", transparency=(255, 0, 0))
    assert torch.equal(ImageModality().decode(path), decode_image(drawing * 255))


def test_background_is_a_setting_saved_with_the_unit_and_old_configs_load() -> None:
    unit = ImageModality(image_size=8, background="white", max_pixels=1000)
    config = unit.get_config()
    assert config["background"] == "white" and config["max_pixels"] == 1000
    rebuilt = create_modality("image", **json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config and rebuilt.background == (255, 255, 255) and rebuilt.max_pixels == 1000
    listed = create_modality("image", **json.loads(json.dumps(ImageModality(background=(1, 2, 3)).get_config())))
    assert listed.background == (1, 2, 3)
    old = create_modality("image", image_size=8, augment_strength=1.0)  # saved before the settings existed
    assert old.background == (0, 0, 0) and old.max_pixels == 64_000_000
    for bad in ("chartreusish", (1, 2), (0, 0, 256), "#12"):
        with pytest.raises(ValueError, match="colour"):
            ImageModality(background=bad)
    with pytest.raises(ValueError, match="max_pixels must be >= 1"):
        ImageModality(max_pixels=0)


def test_ordinary_images_decode_as_before() -> None:
    """Opaque images (RGB, gray, palette without transparency, fully opaque RGBA) decode bit for bit as they did."""
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    assert torch.equal(decode_image(buffer.getvalue()), expected)
    opaque = np.dstack([rgb, np.full((9, 7), 255, np.uint8)])
    assert torch.equal(decode_image(Image.fromarray(opaque, "RGBA")), expected)
    quantised = Image.fromarray(rgb).quantize(16)  # a palette with no transparent colour
    assert torch.equal(decode_image(quantised), torch.from_numpy(np.array(quantised.convert("RGB"))).permute(2, 0, 1))


# ----- image bombs -------------------------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width x height`` 1-bit pixels (its data is not all there: it is never read)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that decodes an image's pixels."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"decoded the pixels of a {self.size} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_an_image_bomb_passed_as_bytes_is_a_named_bad_file(no_decoding: None) -> None:
    bomb = _png_header(30000, 30000)  # 900 million pixels in a hundred bytes: Pillow's own limit refuses it
    assert len(bomb) < 200
    with pytest.raises(BadMediaError, match=r"cannot decode image bytes: .*900000000 pixels"):
        ImageModality().decode(bomb)


def test_an_image_over_max_pixels_is_refused_from_its_header(no_decoding: None, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(9000, 9000))  # 81 million pixels: under Pillow's limit, over the unit's default
    with pytest.raises(BadMediaError, match=r"big\.png: too large: 9000x9000 = 81,000,000 pixels, over max_pixels"):
        ImageModality().decode(big)
    with pytest.raises(BadMediaError, match=r"cannot decode image bytes: too large: 9000x9000"):
        ImageModality().decode(big.read_bytes())
    with pytest.raises(BadMediaError, match=r"<image array>: too large: 20x10 = 200 pixels, over max_pixels = 100"):
        ImageModality(max_pixels=100).decode(np.zeros((10, 20), np.uint8))


def test_embed_readable_skips_an_image_bomb_and_names_it() -> None:
    good = io.BytesIO()
    Image.fromarray(_drawing()).save(good, "PNG")
    model = JointEmbeddingModel({"image": _tiny("cnn_image"), "text": _tiny("scratch_text")}).eval()
    found = model.embed_readable(image=[good.getvalue(), _png_header(30000, 30000), _png_header(9000, 9000)])
    assert found.indices == [0] and [index for index, _ in found.skipped] == [1, 2]
    assert "900000000 pixels" in found.skipped[0][1] and "9000x9000" in found.skipped[1][1]


# ----- audio: the window used, and samples that overflow ---------------------------------------------------------


@pytest.fixture
def frames_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of frames each ``SoundFile.read`` returns."""
    counts: list[int] = []
    read = soundfile.SoundFile.read

    def counting(self: soundfile.SoundFile, *args: object, **kwargs: object) -> np.ndarray:
        data = read(self, *args, **kwargs)
        counts.append(len(data))
        return data

    monkeypatch.setattr(soundfile.SoundFile, "read", counting)
    return counts


def test_of_an_hour_long_file_only_the_second_used_is_read(tmp_path: Path, frames_read: list[int]) -> None:
    rate, hour = 1000, 3600 * 1000
    ramp = (np.arange(hour) % 20000 - 10000).astype(np.int16)  # a different value at each of 20 000 frames
    path = tmp_path / "hour.wav"
    soundfile.write(path, ramp, rate, subtype="PCM_16")
    unit = AudioModality(sample_rate=rate, max_seconds=1.0, gain_db=0)
    middle = unit.load(path)
    assert frames_read == [1000] and middle.shape == (1000,)
    start = (hour - 1000) // 2  # the middle second, as the crop of the whole clip takes
    torch.manual_seed(3)
    window = unit.load(path, train=True)  # a random window: also read alone
    assert frames_read == [1000, 1000] and window.shape == (1000,)
    expected = torch.from_numpy(soundfile.read(path, start=start, stop=start + 1000, dtype="float32")[0])
    assert torch.equal(middle, expected)
    whole = decode_audio(path, rate)  # reads all 3.6 million frames, for the comparison
    torch.manual_seed(3)
    assert torch.equal(window, unit.transform(whole, train=True))  # the same window the whole clip gives
    assert unit.cache.memory_bytes == 0  # and the hour is not cached


def test_a_long_file_at_another_rate_reads_its_window_with_the_same_samples(tmp_path: Path, frames_read: list) -> None:
    seconds, rate = 70, 16000
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, (seconds * rate, 2)).astype(np.float32)
    path = tmp_path / "long.wav"
    soundfile.write(path, wave, rate, subtype="FLOAT")
    unit = AudioModality(sample_rate=8000, max_seconds=2.0, gain_db=0)
    window = unit.load(path)
    assert window.shape == (16000,) and max(frames_read) < 2.1 * rate  # 2 s and the resampling filter's reach
    frames_read.clear()
    expected = unit.transform(decode_audio(path, 8000))
    assert frames_read == [seconds * rate]
    torch.testing.assert_close(window, expected, atol=1e-6, rtol=0)


def test_short_files_are_decoded_whole_and_cached_as_before(tmp_path: Path, frames_read: list[int]) -> None:
    path = tmp_path / "short.wav"
    soundfile.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 24000).astype(np.float32), 8000)
    unit = AudioModality(sample_rate=8000, max_seconds=1.0)
    assert torch.equal(unit.load(path), unit.transform(decode_audio(path, 8000)))
    assert frames_read == [24000, 24000] and unit.cache.memory_bytes == 24000 * 4
    unit.load(path)
    assert len(frames_read) == 2  # the second load comes from the cache, header and all


@pytest.mark.parametrize("bad", [1e19, np.inf, np.nan])
def test_audio_samples_that_overflow_are_a_named_bad_file(bad: float, tmp_path: Path) -> None:
    wave = np.zeros(800, np.float32)
    wave[100] = bad
    path = tmp_path / "loud.wav"
    soundfile.write(path, wave, 8000, subtype="FLOAT")
    unit = AudioModality(sample_rate=8000)
    with pytest.raises(
        BadMediaError,
        match=r"loud\.wav: it holds (NaN or infinite samples|samples as large as 1e\+19, beyond ±4\.29e\+09)",
    ):
        unit.load(path)
    with pytest.raises(BadMediaError, match="NaN or infinite|as large as"):
        unit.load((wave, 8000))
    with pytest.raises(BadMediaError, match="NaN or infinite|as large as"):
        unit.load((wave, 16000))  # checked before and after resampling
    model = JointEmbeddingModel({"audio": _tiny("audio_cnn"), "text": _tiny("scratch_text")}).eval()
    found = model.embed_readable(audio=[path, (np.full(800, 0.1, np.float32), 8000)])
    assert found.indices == [1] and found.skipped[0][0] == 0 and torch.isfinite(found.vectors).all()


# ----- empty content -----------------------------------------------------------------------------------------------


def test_empty_text_is_refused_by_default_and_allowed_on_request() -> None:
    unit = TextModality()
    for empty in ("", "   ", "\n\t", b""):
        with pytest.raises(EmptyInputError, match="nothing to embed .* empty: allow"):
            unit.load(empty)
    assert unit.load("😀") == "😀"  # unbound: an encoder with its own tokenizer may read it
    unit.bind(_tiny("scratch_text"), "text")  # the scratch encoder reads \w+ words only
    for wordless in ("😀😀", "?!", " -- "):
        with pytest.raises(EmptyInputError, match="has no word .* for the text encoder to read"):
            unit.load(wordless)
    assert unit.load(" seven! ") == "seven!"
    allowed = TextModality(empty="allow")
    allowed.bind(_tiny("scratch_text"), "text")
    assert allowed.load("") == "" and allowed.load("😀") == "😀"
    assert create_modality("text", **json.loads(json.dumps(allowed.get_config()))).empty == "allow"
    assert create_modality("text", strip=True).empty == "error"  # a config saved before the setting
    with pytest.raises(ValueError, match="empty must be 'error' or 'allow'"):
        TextModality(empty="skip")


def test_an_empty_id_bag_is_refused_by_default_and_allowed_on_request() -> None:
    unit = IdsModality()
    unit.fit([["a", "b"]])
    with pytest.raises(EmptyInputError, match="an empty ID bag: nothing to embed"):
        unit.load([])
    allowed = IdsModality(empty="allow")
    allowed.fit([[1, 2]])
    assert allowed.load([]) == [] and allowed.load(()) == []
    assert create_modality("ids", **json.loads(json.dumps(allowed.get_config()))).empty == "allow"
    assert create_modality("ids", unknown="oov").empty == "error"  # a config saved before the setting


def _text_ids_model() -> JointEmbeddingModel:
    model = JointEmbeddingModel({"text": _tiny("scratch_text"), "ids": _tiny("ids")})
    model.inputs["ids"].fit([[0, 1, 2, 7]])
    model.bind_inputs()
    model.set_zero_shot(["zero", "seven"], [["zero"], ["seven"]], field="text")
    return model.eval()


@pytest.mark.parametrize("value", ["", "   ", "😀", "?!"])
def test_classify_refuses_an_empty_text_rather_than_answering(value: str) -> None:
    model = _text_ids_model()
    assert len(model.classify(text=["seven"]).labels) == 1  # a real text is answered
    with pytest.raises(EmptyInputError, match="nothing to embed"):
        model.classify(text=["seven", value])


def test_classify_and_embed_refuse_an_empty_id_bag_and_embed_readable_skips_it() -> None:
    model = _text_ids_model()
    with pytest.raises(EmptyInputError, match="an empty ID bag"):
        model.classify(ids=[[7], []])
    found = model.embed_readable(ids=[[7], [], [0, 1]])
    assert found.indices == [0, 2] and found.skipped[0][0] == 1 and "empty ID bag" in found.skipped[0][1]
    found = model.embed_readable(text=["seven", " "])
    assert found.indices == [0] and found.skipped[0][0] == 1


def test_a_training_row_with_an_empty_text_is_named_or_skipped() -> None:
    text = TextModality()
    text.bind(_tiny("scratch_text"), "text")
    examples = [Example(row=1, values={"text": "seven"}), Example(row=2, values={"text": "🙂"})]
    strict = MultimodalDataset(examples, {"text": text}, manifest="train.jsonl")
    assert strict[0]["text"] == "seven"
    with pytest.raises(EmptyInputError, match=r"train\.jsonl, row 2: the text '🙂' has no word"):
        strict[1]
    lenient = MultimodalDataset(examples, {"text": text}, manifest="train.jsonl", on_bad_file="skip")
    assert lenient[1]["bad"].row == 2 and "has no word" in lenient[1]["bad"].reason
