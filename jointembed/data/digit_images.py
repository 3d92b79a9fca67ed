"""Digit images, from any picture to the network's input: scikit-learn's 8×8, 0–16 form, then a weighted bag.

This is the one unit that turns a digit image into the embedding network's input. The training data
(:class:`~jointembed.data.digits.DigitsDataModule`) reads scikit-learn's arrays through :func:`image_to_bag`;
a pretrained digit classifier saves the :class:`DigitImagePreprocessing` settings and calls the same code on any
picture (a file, a PIL image, a uint8 array, dark ink on light paper or the reverse), so the two cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from jointembed.errors import DataFormatError
from jointembed.sparse import SparseBatch

__all__ = [
    "DigitImagePreprocessing",
    "image_to_bag",
    "bags_to_sparse",
    "IMAGE_SIZE",
    "NUM_PIXELS",
    "MAX_INTENSITY",
    "CLASS_NAMES",
]

IMAGE_SIZE = 8
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
MAX_INTENSITY = 16.0
CLASS_NAMES = tuple(str(digit) for digit in range(10))

Ink = Literal["auto", "dark", "light"]
_INKED = 0.05  # a pixel at least this inked (after the paper's tone is taken off) belongs to the digit's box


def image_to_bag(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lit pixels of one image.

    Args:
        image: ``(8, 8)`` or ``(64,)`` intensities in 0..16.

    Returns:
        ``ids`` ``(n,)`` int64 row-major pixel IDs with intensity > 0, in increasing order, and ``weights``
        ``(n,)`` float32 ``intensity / 16``.
    """
    flat = np.asarray(image, dtype=np.float64).reshape(-1)
    if flat.shape != (NUM_PIXELS,):
        raise ValueError(f"a digit image has {NUM_PIXELS} pixels, got shape {np.shape(image)}")
    ids = np.flatnonzero(flat > 0)
    return ids.astype(np.int64), (flat[ids] / MAX_INTENSITY).astype(np.float32)


def bags_to_sparse(bags: Sequence[tuple[np.ndarray, np.ndarray]]) -> SparseBatch:
    """``B`` bags ``(ids, weights)`` from :func:`image_to_bag` as one weighted :class:`SparseBatch` over 64 pixels."""
    lengths = torch.tensor([len(ids) for ids, _ in bags])
    values = torch.from_numpy(np.concatenate([ids for ids, _ in bags]))
    weights = torch.from_numpy(np.concatenate([w for _, w in bags]))
    return SparseBatch.from_tensors(values, lengths=lengths, weights=weights, num_values=NUM_PIXELS)


@dataclass(frozen=True)
class DigitImagePreprocessing:
    """Any digit image → scikit-learn's form (8×8, 0 = paper, 16 = full ink) → weighted bag of lit pixel IDs.

    Inputs and the convention for each (:meth:`to_image`):

    - a NumPy array of any dtype **but uint8**, shaped ``(8, 8)`` or ``(64,)``: already on scikit-learn's 0–16
      scale (``load_digits().images[i]``), used as it is (values outside 0–16 are an error);
    - a uint8 array (``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA), a PIL image, or the path of an
      image file: pixels on the 0–255 scale, read as follows. Transparent pixels count as white paper. The
      image is turned to grayscale; with ``ink="auto"`` the paper is whichever side the median of the image's
      border pixels is on (light paper means dark ink, the usual scan or photo, and is inverted; dark paper
      means light ink, as in scikit-learn's own arrays), ``"dark"`` or ``"light"`` forces the ink's colour. The
      ink map (0 = paper, 1 = full ink) is shifted so its ``paper_percentile``-th percentile (the paper's own
      tone, e.g. grey paper) becomes 0. With ``crop`` it is cut to the digit's bounding box (pixels more than 5 %
      inked): scikit-learn's digits were size-normalised, every one of them fills the frame's height, so a digit
      anywhere on a larger page is read at their scale. It is then padded with paper to a centred square,
      averaged over 8×8 equal blocks (PIL's box filter: scikit-learn's digits count the inked pixels of 4×4
      blocks of a 32×32 bitmap) and scaled to 0–16, rounded to whole numbers like theirs.

    A bundled digit drawn 32×32 (dark on light or light on dark) comes back exactly with ``crop=False``; with
    ``crop`` three in four come back exactly and the rest move sideways by half a cell or more, as scikit-learn's
    digits are not all centred (a trained recipe gives the same class to about 97 % of them).

    Args:
        ink: ``auto``, ``dark`` (dark ink on light paper) or ``light`` (light ink on dark paper).
        paper_percentile: Percentile of the ink map taken as the paper's tone, in [0, 100).
        crop: Cut the picture to the digit's bounding box before the 8×8 reduction.
    """

    ink: Ink = "auto"
    paper_percentile: float = 10.0
    crop: bool = True

    def __post_init__(self) -> None:
        if self.ink not in ("auto", "dark", "light"):
            raise ValueError(f"ink must be 'auto', 'dark' or 'light', got {self.ink!r}")
        if not 0.0 <= self.paper_percentile < 100.0:
            raise ValueError(f"paper_percentile must be in [0, 100), got {self.paper_percentile}")

    @property
    def num_ids(self) -> int:
        """Number of pixel IDs a bag draws from (64)."""
        return NUM_PIXELS

    def to_image(self, image: Any, where: str = "image") -> np.ndarray:
        """One image as ``(8, 8)`` float64 intensities in 0..16 (see the class docstring for each input kind).

        Raises:
            DataFormatError: An array of the wrong shape or outside 0–16, an unreadable file, or an input of
                another type; the message names ``where``.
        """
        if isinstance(image, np.ndarray) and image.dtype != np.uint8:
            if image.shape not in ((IMAGE_SIZE, IMAGE_SIZE), (NUM_PIXELS,)):
                raise DataFormatError(
                    f"{where}: an array on scikit-learn's 0-16 scale must be 8x8 or 64 values, got shape "
                    f"{image.shape} (pass pixels on the 0-255 scale as a uint8 array or a PIL image)"
                )
            values = image.astype(np.float64).reshape(IMAGE_SIZE, IMAGE_SIZE)
            if not np.isfinite(values).all() or values.min() < 0 or values.max() > MAX_INTENSITY:
                raise DataFormatError(
                    f"{where}: intensities must be finite and within 0-16 (scikit-learn's scale), got "
                    f"{values.min()}..{values.max()}; pass 0-255 pixels as a uint8 array"
                )
            return values
        return self._pixels_to_image(_open_image(image, where))

    def _pixels_to_image(self, picture: Image.Image) -> np.ndarray:
        if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
            white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
            picture = Image.alpha_composite(white, picture.convert("RGBA"))
        gray = np.asarray(picture.convert("L"), dtype=np.float64) / 255.0
        border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
        dark_ink = self.ink == "dark" or (self.ink == "auto" and np.median(border) > 0.5)
        ink = 1.0 - gray if dark_ink else gray
        paper = np.percentile(ink, self.paper_percentile)
        ink = np.clip((ink - paper) / (1.0 - paper), 0.0, 1.0) if paper < 1.0 else np.zeros_like(ink)
        inked = ink > _INKED
        if self.crop and inked.any():
            rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
            ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        height, width = ink.shape
        side = max(height, width)
        square = np.zeros((side, side), dtype=np.float32)
        top, left = (side - height) // 2, (side - width) // 2
        square[top : top + height, left : left + width] = ink
        small = Image.fromarray(square, mode="F").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
        return np.rint(np.asarray(small, dtype=np.float64) * MAX_INTENSITY).clip(0.0, MAX_INTENSITY)

    def to_batch(self, images: Any) -> SparseBatch:
        """``B`` images (see :meth:`split`) as one weighted :class:`SparseBatch` of lit pixel IDs."""
        items = self.split(images)
        return bags_to_sparse([image_to_bag(self.to_image(item, f"images[{i}]")) for i, item in enumerate(items)])

    @staticmethod
    def split(images: Any) -> list[Any]:
        """The images in ``images``: one image (a path, a PIL image, a uint8 array, an 8×8 or 64-value 0–16 array)
        or several (a list or tuple of those, or a non-uint8 ``(N, 8, 8)`` or ``(N, 64)`` array)."""
        if isinstance(images, np.ndarray) and images.dtype != np.uint8:
            if images.ndim == 3 or (images.ndim == 2 and images.shape[1] == NUM_PIXELS):
                return list(images)
            return [images]
        if isinstance(images, (list, tuple)):
            if not images:
                raise DataFormatError("no images to read (got an empty sequence)")
            return list(images)
        return [images]

    def to_config(self) -> dict[str, Any]:
        """The settings as JSON types, with the fixed facts a reader checks (size, scale, bag rule)."""
        return {
            "image_size": IMAGE_SIZE,
            "max_intensity": MAX_INTENSITY,
            "bag": "ids of pixels with intensity > 0 (row * 8 + column), weighted by intensity / 16",
            "resample": "box",
            "ink": self.ink,
            "paper_percentile": self.paper_percentile,
            "crop": self.crop,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DigitImagePreprocessing:
        """Rebuild settings saved by :meth:`to_config`.

        Raises:
            ValueError: The size or scale differs from this jointembed's, or a field is missing or invalid.
        """
        missing = [k for k in ("image_size", "max_intensity", "ink", "paper_percentile", "crop") if k not in config]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        if config["image_size"] != IMAGE_SIZE or float(config["max_intensity"]) != MAX_INTENSITY:
            raise ValueError(
                f"images of {config['image_size']} pixels a side on a 0-{config['max_intensity']} scale; this "
                f"jointembed reads {IMAGE_SIZE}x{IMAGE_SIZE} images on a 0-{MAX_INTENSITY:g} scale"
            )
        if not isinstance(config["crop"], bool):
            raise ValueError(f"field 'crop' must be true or false, got {config['crop']!r}")
        return cls(ink=config["ink"], paper_percentile=float(config["paper_percentile"]), crop=config["crop"])


def _open_image(image: Any, where: str) -> Image.Image:
    """A PIL image from a PIL image, a uint8 array, or an image file's path."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):  # uint8: non-uint8 arrays are handled by the caller
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)):
            return Image.fromarray(image)
        raise DataFormatError(f"{where}: a uint8 image must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                opened.load()
                return opened.copy()
        except UnidentifiedImageError as error:
            raise DataFormatError(f"{where}: {image} is not an image file PIL can read: {error}") from error
    raise DataFormatError(
        f"{where}: expected an image (a file path, a PIL image or a NumPy array), got {type(image).__name__}"
    )
