import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from jointembed.data.digit_images import DigitImagePreprocessing, image_to_bag
from jointembed.data.digits import collate_digits
from jointembed.errors import DataFormatError


def _render(image: np.ndarray, scale: int = 4, dark_ink: bool = True) -> np.ndarray:
    """A 0-16 digit drawn as a (8 * scale)-pixel uint8 image, dark ink on white paper or light ink on black."""
    ink = np.kron(image, np.ones((scale, scale))) / 16
    return np.rint(255 * (1 - ink if dark_ink else ink)).astype(np.uint8)


def test_preprocessing_recovers_sklearn_digits_from_rendered_pictures(tmp_path):
    pre = DigitImagePreprocessing(crop=False)  # with the crop, a digit may move half a cell (see below)
    images = load_digits().images[:40]
    for i, image in enumerate(images):
        dark, light = _render(image), _render(image, dark_ink=False)
        rgba = np.dstack([dark, dark, dark, np.full_like(dark, 255)])
        for picture in (dark, light, np.dstack([dark] * 3), rgba, Image.fromarray(dark)):
            np.testing.assert_array_equal(pre.to_image(picture), image, err_msg=f"image {i}")
    path = tmp_path / "digit.png"
    Image.fromarray(_render(images[0])).save(path)
    np.testing.assert_array_equal(pre.to_image(path), images[0])
    np.testing.assert_array_equal(pre.to_image(str(path)), images[0])
    # the 0-16 scale itself is used as it is, flat or square
    np.testing.assert_array_equal(pre.to_image(images[0].reshape(64)), images[0])


def test_preprocessing_conventions_transparency_grey_paper_padding_and_forced_ink():
    pre = DigitImagePreprocessing(crop=False)
    image = load_digits().images[3]
    dark = _render(image)
    # dark ink on a transparent background: transparent counts as white paper
    transparent = np.dstack([np.zeros_like(dark)] * 3 + [255 - dark])
    np.testing.assert_array_equal(pre.to_image(transparent), image)
    # grey paper (tone 200) with black ink: the paper's tone is taken off before scaling
    grey = np.rint(200 * (1 - np.kron(image, np.ones((4, 4))) / 16)).astype(np.uint8)
    np.testing.assert_array_equal(pre.to_image(grey), image)
    # a wide picture is padded with paper to a centred square before the 8x8 reduction
    # (32 x 64 -> 64 x 64: the digit fills the middle 4 x 4 cells, each the mean of 2 x 2 of its pixels)
    wide = pre.to_image(np.pad(dark, ((0, 0), (16, 16)), constant_values=255))
    assert wide.shape == (8, 8) and wide.sum() == wide[2:6, 2:6].sum()
    np.testing.assert_allclose(wide[2:6, 2:6], image.reshape(4, 2, 4, 2).mean(axis=(1, 3)), atol=0.5)
    # forcing the wrong ink colour reads the paper as the digit
    assert (DigitImagePreprocessing(ink="light").to_image(dark) > 0).sum() > (image > 0).sum()
    np.testing.assert_array_equal(DigitImagePreprocessing(ink="dark", crop=False).to_image(dark), image)


def test_crop_reads_a_digit_anywhere_on_a_page_at_sklearns_scale():
    crop = DigitImagePreprocessing()
    images = load_digits().images
    tight = _render(images[5])
    page = np.full((120, 90), 255, dtype=np.uint8)
    page[70:102, 10:42] = tight  # small, off-centre, on a large sheet
    np.testing.assert_array_equal(crop.to_image(page), crop.to_image(tight))
    assert (DigitImagePreprocessing(crop=False).to_image(page) > 0).sum() < (images[5] > 0).sum() / 2
    # every bundled digit fills the frame's height, so the crop only recentres it sideways: the result is the
    # drawing shifted by a few pixels (most by none, a fifth by half a cell), reduced again
    shifts = []
    for image in images[:100]:
        back = crop.to_image(_render(image))
        wide = np.pad(np.kron(image, np.ones((4, 4))), ((0, 0), (8, 8)))
        moved = {
            px: np.rint(np.roll(wide, px, axis=1)[:, 8:40].reshape(8, 4, 8, 4).mean(axis=(1, 3)))
            for px in range(-8, 9, 2)
        }
        best = min(moved, key=lambda px: np.abs(moved[px] - back).max())
        assert np.abs(moved[best] - back).max() <= 1  # rounding
        shifts.append(abs(best))
    assert np.mean(np.asarray(shifts) == 0) > 0.6 and max(shifts) <= 8


def test_preprocessing_errors_name_the_image(tmp_path):
    pre = DigitImagePreprocessing()
    with pytest.raises(DataFormatError, match=r"images\[1\]: an array on scikit-learn's 0-16 scale must be 8x8"):
        pre.to_batch([np.zeros((8, 8)), np.zeros((5, 5))])
    with pytest.raises(DataFormatError, match="within 0-16 .* got 255.0..255.0; pass 0-255 pixels as a uint8 array"):
        pre.to_image(np.full((8, 8), 255.0))
    with pytest.raises(DataFormatError, match=r"a uint8 image must be \(H, W\)"):
        pre.to_image(np.zeros((8, 8, 2), dtype=np.uint8))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(DataFormatError, match="notes.png is not an image file"):
        pre.to_image(bad)
    with pytest.raises(DataFormatError, match="expected an image .* got dict"):
        pre.to_image({"pixels": []})
    with pytest.raises(ValueError, match="ink must be"):
        DigitImagePreprocessing(ink="blue")


def test_split_one_image_or_many():
    images = load_digits().images
    assert len(DigitImagePreprocessing.split(images[0])) == 1
    assert len(DigitImagePreprocessing.split(images[0].reshape(64))) == 1
    assert len(DigitImagePreprocessing.split(images[:5])) == 5
    assert len(DigitImagePreprocessing.split(images[:5].reshape(5, 64))) == 5
    assert len(DigitImagePreprocessing.split(_render(images[0]))) == 1
    assert len(DigitImagePreprocessing.split([_render(images[0]), images[1]])) == 2


def test_to_batch_builds_the_training_bags():
    digits = load_digits()
    batch = DigitImagePreprocessing().to_batch(digits.images[:3])
    expected = collate_digits(
        [{"ids": ids, "weights": w, "target": 0} for ids, w in map(image_to_bag, digits.images[:3])]
    )["sparse"]
    assert batch.tolist() == expected.tolist()
    torch.testing.assert_close(batch.weights, expected.weights, rtol=0, atol=0)


def test_preprocessing_config_round_trip_and_checks():
    pre = DigitImagePreprocessing(ink="dark", paper_percentile=5.0, crop=False)
    assert DigitImagePreprocessing.from_config(json.loads(json.dumps(pre.to_config()))) == pre
    with pytest.raises(ValueError, match="field 'crop' must be true or false"):
        DigitImagePreprocessing.from_config(pre.to_config() | {"crop": "yes"})
    with pytest.raises(ValueError, match="this jointembed reads 8x8 images on a 0-16 scale"):
        DigitImagePreprocessing.from_config(pre.to_config() | {"image_size": 28})
    with pytest.raises(ValueError, match=r"missing field\(s\) \['ink'\]"):
        DigitImagePreprocessing.from_config({k: v for k, v in pre.to_config().items() if k != "ink"})
