"""A trained digit classifier that reads raw images: the embedding network plus its image-to-bag preprocessing.

``jointembed fit --config recipes/digits.yaml`` leaves ``<log_dir>/pretrained``; load it anywhere with
:meth:`DigitClassifier.from_pretrained` and call :meth:`~DigitClassifier.predict` on 8×8 arrays on
scikit-learn's 0–16 scale, image files, PIL images or uint8 arrays (dark ink on light paper or the reverse: see
:class:`~jointembed.data.digit_images.DigitImagePreprocessing` for the convention).

The folder (see :class:`~jointembed.models.embedding_net.PretrainedEmbeddingNet`): ``config.json``
``{"format": "jointembed.digit_classifier", "version": 1, "network": EmbeddingNet arguments, "class_names": [...],
"preprocessing": DigitImagePreprocessing.to_config()}``, ``model.safetensors`` (the network's ``state_dict``) and a
``README.md`` model card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jointembed.data.digit_images import DigitImagePreprocessing
from jointembed.errors import CheckpointError
from jointembed.models.embedding_net import EmbeddingNet, PretrainedEmbeddingNet
from jointembed.pretrained import model_card
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


class DigitClassifier(PretrainedEmbeddingNet):
    """An :class:`~jointembed.models.embedding_net.EmbeddingNet` over the 64 pixel IDs with its preprocessing and
    class names: raw images in, classes out.

    Args:
        network: The trained network: a 64-ID table, no dense features, one logit per class.
        class_names: The name of each class index (``"0"`` … ``"9"``).
        preprocessing: How a raw image becomes a bag of lit pixel IDs; ``None`` for the default settings.

    Raises:
        ValueError: The network's outputs do not match the class names, or it does not read 64 pixel IDs.
    """

    FORMAT = FORMAT
    FORMAT_VERSION = FORMAT_VERSION

    def __init__(
        self,
        network: EmbeddingNet,
        class_names: Sequence[str],
        preprocessing: DigitImagePreprocessing | None = None,
    ) -> None:
        super().__init__(network)
        if network.out_features != len(class_names):
            raise ValueError(f"the network has {network.out_features} outputs but {len(class_names)} class names")
        self.preprocessing = preprocessing or DigitImagePreprocessing()
        network.check_input_sizes(self.preprocessing.num_ids, 0)
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

    def parts_config(self) -> dict[str, Any]:
        """``{"class_names": [...], "preprocessing": DigitImagePreprocessing.to_config()}``."""
        return {"class_names": list(self.class_names), "preprocessing": self.preprocessing.to_config()}

    @classmethod
    def parts_from_config(cls, config: Mapping[str, Any], where: Path) -> dict[str, Any]:
        """The class names and the preprocessing from the folder's ``config.json``."""
        names = config.get("class_names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise CheckpointError(f"{where}: field 'class_names' must be a list of strings, got {names!r}")
        try:
            preprocessing = DigitImagePreprocessing.from_config(config.get("preprocessing") or {})
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{where}: field 'preprocessing': {error}") from error
        return {"class_names": names, "preprocessing": preprocessing}

    def model_card(self, folder: Path, metrics: Mapping[str, Any] | None) -> str:
        """The model card: what the network reads, its classes and preprocessing, the test metrics."""
        details = {
            "network": self.network.get_config(),
            "classes": ", ".join(self.class_names),
            "preprocessing": self.preprocessing.to_config(),
        }
        return model_card(
            "Handwritten digit classifier (8x8 digits)",
            "Classifies an image of a handwritten digit: the image is reduced to scikit-learn's 8x8, 0-16 form, "
            "read as a bag of its lit pixel IDs weighted by intensity, embedded and classified.",
            _USAGE.format(folder=folder.name),
            metrics,
            details,
        )
