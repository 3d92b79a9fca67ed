"""Images: a path, bytes, a PIL image or an array → upright RGB (transparency composited) → resized, centre-cropped
square in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from jointembed.config import check_at_least
from jointembed.data.media import decode_image, rgb_colour
from jointembed.modalities.base import Modality
from jointembed.registry import register_modality

__all__ = ["ImageModality", "image_transform", "resolve_path"]


def resolve_path(value: Any, base: Path) -> Path:
    """A manifest's file cell → an absolute path (relative to the manifest's folder ``base``).

    Raises:
        ValueError: The cell is not a string.
    """
    import os

    if not isinstance(value, str):
        raise ValueError(f"must be a file path (a string), got {value!r}")
    file = Path(os.path.expanduser(value))
    return file if file.is_absolute() else Path(os.path.normpath(base / file))


def image_transform(image_size: int, augment: bool = False, strength: float = 1.0) -> v2.Compose:
    """The image pipeline: uint8 ``(3, h, w)`` → float ``(3, image_size, image_size)`` in [0, 1].

    Resizes the shorter side to ``image_size`` and centre-crops the square (so square images are just resized);
    with ``augment``, a small random affine transform follows: rotation up to ``10 * strength`` degrees,
    translation up to ``10 * strength`` % and scaling by ``1 ± 0.1 * strength``.
    """
    steps: list[Any] = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    if augment and strength > 0:
        shift = min(0.1 * strength, 1.0)
        steps.append(
            v2.RandomAffine(
                degrees=10.0 * strength,
                translate=(shift, shift),
                scale=(1 - shift, 1 + shift),
                interpolation=v2.InterpolationMode.BILINEAR,
            )
        )
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


@register_modality("image")
class ImageModality(Modality):
    """An image per example, as a ``(3, image_size, image_size)`` float tensor in [0, 1]; the image encoder
    normalises it with its backbone's mean and std.

    Raw values: a file path, encoded bytes, a PIL image, or an array / tensor (see
    :func:`~jointembed.data.media.decode_image`: 16-bit and float images are scaled, never clipped).
    Batch: ``FloatTensor (n, 3, image_size, image_size)``.

    Images are decoded as a person sees them, in training and inference alike: turned upright by their EXIF
    orientation (a phone photo stored sideways), and transparent pixels (RGBA, gray + alpha, a palette or colour
    marked transparent) composited over ``background``. An image of more than ``max_pixels`` pixels is refused
    from its header, before its pixels are decoded (a 17 KB PNG can declare 12000x12000 pixels); the refusal is a
    :class:`~jointembed.data.media.BadMediaError` naming the file and its size, skipped like any unreadable file.

    Args:
        image_size: Side of the square the shorter side is resized to and centre-cropped at.
        augment_strength: Scale of the training-only random affine transform (0 disables it).
        background: Colour under transparent pixels: a name (``black``, ``white``...), ``#rrggbb`` or
            ``[r, g, b]`` in 0..255. Black by default: most images store black under their transparent pixels
            (so they read as they did before transparency was composited), and it is the paper of light-on-dark
            digit images; use ``white`` for dark drawings or logos on a transparent background.
        max_pixels: Largest image read, in pixels (64 million: an 8000x8000 photo, more than a 48-megapixel
            phone's); ``None`` leaves only Pillow's own limit (about 179 million).
    """

    def __init__(
        self,
        image_size: int = 32,
        augment_strength: float = 1.0,
        background: str | tuple[int, int, int] = "black",
        max_pixels: int | None = 64_000_000,
    ) -> None:
        super().__init__()
        self._set_config(locals())
        if image_size < 1 or augment_strength < 0:
            raise ValueError(f"need image_size >= 1 and augment_strength >= 0, got {image_size}, {augment_strength}")
        if max_pixels is not None:
            check_at_least("max_pixels", max_pixels, 1)
        self.image_size = image_size
        self.background = rgb_colour(background)
        self.max_pixels = max_pixels
        self._train = image_transform(image_size, True, augment_strength)

    def parse_cell(self, value: Any, base: Path, from_csv: bool) -> Path:
        return resolve_path(value, base)

    def decode(self, value: Any) -> torch.Tensor:
        """Any image value → ``(3, H, W)`` uint8, upright, transparency composited over ``background``.

        Raises:
            BadMediaError: An unreadable file or bytes, or an image over ``max_pixels`` (the file is named).
        """
        return decode_image(value, self.background, self.max_pixels)

    def transform(self, decoded: torch.Tensor, train: bool = False) -> torch.Tensor:
        if train:
            return self._train(decoded)
        # The eval pipeline's kernels called directly: the same results as ``image_transform(image_size)``
        # without v2's per-call dispatch, which cost more than a small CNN's forward (benchmarks/embed_overhead.py).
        size = self.image_size
        image = decoded
        if min(image.shape[-2:]) != size:
            image = TF.resize(image, [size], antialias=True)
        if tuple(image.shape[-2:]) != (size, size):
            image = TF.center_crop(image, [size, size])
        return TF.to_dtype(image, torch.float32, scale=True)

    def collate(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        side = self.image_size
        return torch.stack(list(items)) if items else torch.zeros(0, 3, side, side)

    def example_values(self, count: int = 2, seed: int = 0) -> list[Any]:
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 256, (8 + i, 10, 3), dtype=np.uint8) for i in range(count)]
