"""A trained digit classifier that reads raw images: the embedding network plus its image-to-bag preprocessing.

``jointembed fit --config recipes/digits.yaml`` leaves ``<log_dir>/pretrained``; load it anywhere with
:meth:`DigitClassifier.from_pretrained` and call :meth:`~DigitClassifier.predict` on 8×8 arrays on
scikit-learn's 0–16 scale, image files, PIL images or uint8 arrays (dark ink on light paper or the reverse: see
:class:`~jointembed.data.digit_images.DigitImagePreprocessing` for the convention).

The folder (see :mod:`jointembed.pretrained`):

- ``config.json``: ``{"format": "jointembed.digit_classifier", "version": 1, "network": EmbeddingNet arguments,
  "class_names": [...], "preprocessing": DigitImagePreprocessing.to_config()}``;
- ``model.safetensors``: the :class:`~jointembed.models.embedding_net.EmbeddingNet`'s ``state_dict``;
- ``README.md``: a model card with the run's test metrics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jointembed.data.digit_images import DigitImagePreprocessing
from jointembed.errors import CheckpointError
from jointembed.models.embedding_net import EmbeddingNet, load_network
from jointembed.pretrained import CONFIG_NAME, model_card, read_config, resolve_folder, state_for_saving, write_folder
from jointembed.sparse import SparseBatch

__all__ = ["DigitClassifier", "FORMAT", "FORMAT_VERSION"]

FORMAT = "jointembed.digit_classifier"
FORMAT_VERSION = 1

_USAGE = """
from jointembed.models.digit_classifier import DigitClassifier
from sklearn.datasets import load_digits

model = DigitClassifier.from_pretrained("{folder}")
model.predict(load_digits().images[:5])  # class indices; also image files, PIL images, uint8 arrays
model.predict_names("my_digit.png")      # ["7"]: dark ink on light paper is inverted automatically
"""


class DigitClassifier(nn.Module):
    """An :class:`~jointembed.models.embedding_net.EmbeddingNet` over the 64 pixel IDs with its preprocessing and
    class names: raw images in, classes out.

    Args:
        network: The trained network: a 64-ID table, no dense features, one logit per class.
        class_names: The name of each class index (``"0"`` … ``"9"``).
        preprocessing: How a raw image becomes a bag of lit pixel IDs; ``None`` for the default settings.

    Raises:
        ValueError: The network's outputs do not match the class names, or it does not read 64 pixel IDs.
    """

    def __init__(
        self,
        network: EmbeddingNet,
        class_names: Sequence[str],
        preprocessing: DigitImagePreprocessing | None = None,
    ) -> None:
        super().__init__()
        if network.out_features != len(class_names):
            raise ValueError(f"the network has {network.out_features} outputs but {len(class_names)} class names")
        self.preprocessing = preprocessing or DigitImagePreprocessing()
        network.check_input_sizes(self.preprocessing.num_ids, 0)
        self.network = network
        self.class_names = [str(name) for name in class_names]

    def forward(self, sparse: SparseBatch) -> torch.Tensor:
        """``(B, num_classes)`` logits of ``B`` bags of lit pixel IDs."""
        return self.network(sparse)

    @torch.no_grad()
    def predict_proba(self, images: Any, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities of raw images.

        Args:
            images: One image or several (see :meth:`~jointembed.data.digit_images.DigitImagePreprocessing.split`):
                8×8 or 64-value arrays on the 0–16 scale (a non-uint8 ``(N, 8, 8)`` array is ``N`` of them),
                image files, PIL images, uint8 arrays.
            batch_size: Images per forward pass.

        Returns:
            ``(N, num_classes)`` float32 probabilities, rows summing to 1.

        Raises:
            DataFormatError: An image that cannot be read; the message names ``images[i]``.
        """
        items = self.preprocessing.split(images)
        device = next(self.network.parameters()).device
        out = []
        for start in range(0, len(items), batch_size):
            sparse = self.preprocessing.to_batch(items[start : start + batch_size])
            out.append(self(sparse.to(device)).softmax(dim=-1))
        return torch.cat(out).cpu().numpy()

    def predict(self, images: Any, batch_size: int = 1024) -> np.ndarray:
        """``(N,)`` int64 most probable class index of each image (inputs as :meth:`predict_proba`)."""
        return self.predict_proba(images, batch_size).argmax(axis=1).astype(np.int64)

    def predict_names(self, images: Any, batch_size: int = 1024) -> list[str]:
        """The most probable class name of each image (inputs as :meth:`predict_proba`)."""
        return [self.class_names[i] for i in self.predict(images, batch_size)]

    def get_config(self) -> dict[str, Any]:
        """The ``config.json`` content: format, version, network arguments, class names, preprocessing."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "network": self.network.get_config(),
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.to_config(),
        }

    def save_pretrained(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the pretrained folder (atomically: an interrupted save leaves any previous folder whole).

        Args:
            folder: Destination folder.
            metrics: Test metrics for the model card (``test_metrics.json`` of the run).

        Returns:
            The folder.
        """
        details = {
            "network": self.network.get_config(),
            "classes": ", ".join(self.class_names),
            "preprocessing": self.preprocessing.to_config(),
        }
        card = model_card(
            "Handwritten digit classifier (8x8 digits)",
            "Classifies an image of a handwritten digit: the image is reduced to scikit-learn's 8x8, 0-16 form, "
            "read as a bag of its lit pixel IDs weighted by intensity, embedded and classified.",
            _USAGE.format(folder=Path(folder).name),
            metrics,
            details,
        )
        return write_folder(folder, self.get_config(), state_for_saving(self.network), card=card)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> DigitClassifier:
        """Load a folder written by :meth:`save_pretrained`, in eval mode.

        Args:
            name_or_path: The folder (or a Hugging Face hub repo id, see :func:`~jointembed.pretrained.resolve_folder`).
            strict: Require the weights' keys to match the network's exactly.
            map_location: Device to load onto.

        Raises:
            CheckpointError: The folder or a file is missing, truncated or of another format or version, a field is
                malformed, or the weights do not match; the message names the file and the field or keys.
        """
        folder = resolve_folder(name_or_path)
        config = read_config(folder, FORMAT, (FORMAT_VERSION,))
        where = folder / CONFIG_NAME
        names = config.get("class_names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise CheckpointError(f"{where}: field 'class_names' must be a list of strings, got {names!r}")
        try:
            preprocessing = DigitImagePreprocessing.from_config(config.get("preprocessing") or {})
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{where}: field 'preprocessing': {error}") from error
        network = load_network(folder, config, strict=strict, map_location=map_location)
        try:
            model = cls(network, names, preprocessing)
        except ValueError as error:
            raise CheckpointError(f"{where}: the network does not fit the classes or pixels: {error}") from error
        return model.to(map_location).eval()
