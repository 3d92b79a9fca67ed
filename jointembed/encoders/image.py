"""Images: torchvision backbones by name (``torchvision_image``), a small CNN (``cnn_image``), Hugging Face vision
models (``hf_image``).

Input: ``FloatTensor (n, 3, H, W)`` in ``[0, 1]`` (decoded, resized and augmented by the data module). Each encoder
normalises with its backbone's mean/std inside ``forward``, and resizes when the backbone needs a fixed size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder, ProjectionHead
from jointembed.encoders.hf import build_hf_model, drop_pooler, portable_hf_config, refuse_remote_code
from jointembed.errors import CheckpointError
from jointembed.registry import register_encoder
from jointembed.trust import downloads_allowed, reference

__all__ = ["TorchvisionImageEncoder", "SmallCNNImageEncoder", "HFImageEncoder", "load_state_dict_file"]


class _ImageEncoder(Encoder):
    """Shared input handling: check, move to the device, resize to ``image_size`` if set, normalise."""

    modality = "image"
    image_size: int | None = None

    def _init_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one value per channel and std > 0, got mean={mean}, std={std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, C, H, W)`` in ``[0, 1]`` → resized and normalised backbone input on the encoder's device."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != self.mean.shape[1]:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{type(self).__name__} expects images (n, {self.mean.shape[1]}, H, W), got {got}")
        x = images.to(self.device, self.mean.dtype)  # the dtype the module was cast to (float32 by default)
        size = self.image_size
        if size is not None and x.shape[0] > 0 and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
        size = self.image_size or 32
        return torch.rand(batch_size, self.mean.shape[1], size, size, generator=torch.Generator().manual_seed(seed))


def load_state_dict_file(model: nn.Module, path: str | Path) -> None:
    """Load a state dict file (``.safetensors``, or a ``torch.save`` file) into ``model``, strictly.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: The file holds no state dict, or its keys or shapes do not match the model; the
            message names the file and lists the missing and unexpected keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path}: expected a state dict (parameter name -> tensor)")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"weights file {path} does not match {type(model).__name__}: missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {shapes}"
        )
    model.load_state_dict(state, strict=True)


def _remove_classifier(model: nn.Module) -> int:
    """Replace the model's last ``nn.Linear`` (the classifier) with ``Identity``; return its input width."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name, module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier to remove")
    name, linear = last
    parent = model.get_submodule(name.rpartition(".")[0])
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return linear.in_features


@register_encoder("torchvision_image")
class TorchvisionImageEncoder(_ImageEncoder):
    """Any torchvision classification model by name, with its classifier (last linear layer) removed.

    Output: ``(n, output_dim)``; the features are the classifier's input (512 for resnet18).

    Args:
        name: A ``torchvision.models.list_models()`` name: resnet18, mobilenet_v3_small, vit_b_16, convnext_tiny...
        weights_path: A local state dict of the full torchvision model (classifier included), loaded strictly
            before the classifier is removed; ``None`` for random initialisation. Nothing is downloaded.
        model_kwargs: Extra arguments of the torchvision builder (e.g. ``{"width_mult": 0.5}``).
        image_size: Resize inputs to this square size (ViTs need their training size, 224); ``None`` keeps them.
        mean: Per-channel normalisation mean (ImageNet's by default).
        std: Per-channel normalisation standard deviation.
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
    """

    def __init__(
        self,
        name: str = "resnet18",
        weights_path: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        image_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
    ) -> None:
        import torchvision

        super().__init__()
        self._set_config(locals())
        known = torchvision.models.list_models(module=torchvision.models)
        if name not in known:
            raise ValueError(f"unknown torchvision classification model {name!r}; known models: {', '.join(known)}")
        self.backbone = torchvision.models.get_model(name, weights=None, **(model_kwargs or {}))
        weights_path = reference(weights_path, "weights_path")
        if weights_path is not None:
            load_state_dict_file(self.backbone, weights_path)
        self.feature_dim = _remove_classifier(self.backbone)
        self.image_size = image_size or getattr(self.backbone, "image_size", None)
        self._init_normalisation(mean, std)
        self.head = ProjectionHead(self.feature_dim, output_dim, head_hidden_sizes)

    def save_to(self, folder: Path) -> dict[str, Any]:
        """The config without ``weights_path``: the saved weights replace the file, which stays on this machine."""
        return {**self.get_config(), "weights_path": None}

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {"name": "mobilenet_v3_small", "model_kwargs": {"width_mult": 0.25}, "output_dim": 8}

    def encode_backbone(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` → ``(n, feature_dim)``."""
        x = self.preprocess(inputs)
        if x.shape[0] == 0:
            return x.new_zeros(0, self.feature_dim)
        out = self.backbone(x)
        # GoogLeNet / Inception return (logits, aux...) in training mode; the features are the first element.
        return out[0] if isinstance(out, tuple) else out


@register_encoder("cnn_image")
class SmallCNNImageEncoder(_ImageEncoder):
    """A small CNN trained from scratch: ``[Conv3×3 → BatchNorm → ReLU → MaxPool2]`` per width, global mean pool.

    Suited to small images (8×8 to 64×64 digits, icons) on a CPU. Output: ``(n, output_dim)``.

    Args:
        channels: Output channels of each block; the feature width is the last one.
        in_channels: Input channels.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
    """

    #: Memory layouts of the CNN's activations in inference and in training, as ``audio_cnn``'s (see there).
    memory_format: torch.memory_format = torch.channels_last
    train_memory_format: torch.memory_format = torch.contiguous_format

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        in_channels: int = 3,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self._set_config(locals())
        if not channels or len(mean) != in_channels:
            raise ValueError(f"need at least one block and one mean/std per input channel ({in_channels})")
        layers: list[nn.Module] = []
        width = in_channels
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            width = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.feature_dim = width
        self._init_normalisation(mean, std)
        self.head = ProjectionHead(self.feature_dim, output_dim, head_hidden_sizes)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {"channels": [4, 8], "output_dim": 8}

    def encode_backbone(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(n, C, H, W)`` → ``(n, channels[-1])``."""
        layout = self.train_memory_format if self.backbone.training else self.memory_format
        x = self.preprocess(inputs).contiguous(memory_format=layout)  # the layers keep the layout
        return self.backbone(x) if x.shape[0] else x.new_zeros(0, self.feature_dim)


@register_encoder("hf_image")
class HFImageEncoder(_ImageEncoder):
    """A Hugging Face vision model (ViT, DeiT, DINOv2, ...; the vision tower of CLIP / SigLIP) via AutoModel.

    Inputs are resized to the model's ``config.image_size``. Output: ``(n, output_dim)``.

    Args:
        model_name_or_path: Hub id or local folder of a pretrained model.
        config: Instead, a transformers config dict (with ``model_type``) for a randomly initialised model.
        pooling: ``pooler`` (the model's pooled output: CLIP's projected CLS, ViT's pooler), ``cls`` or ``mean``
            (over all tokens).
        mean: Normalisation mean; ``None`` reads the pretrained model's image processor (0.5 for a config).
        std: Normalisation standard deviation; ``None`` as for ``mean``.
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
        local_files_only: Never download: read local folders and the Hugging Face cache only.
        cache_dir: Hugging Face cache folder, or ``None`` for the default.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        pooling: Literal["pooler", "cls", "mean"] = "pooler",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
        local_files_only: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self._set_config(locals())
        if pooling not in ("pooler", "cls", "mean"):
            raise ValueError(f"pooling must be 'pooler', 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.backbone = build_hf_model(model_name_or_path, config, local_files_only, cache_dir, vision_tower=True)
        if pooling != "pooler":
            drop_pooler(self.backbone)
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if mean is None:
            mean, std = _processor_stats(model_name_or_path, local_files_only, cache_dir)
            self._config.update(mean=list(mean), std=list(std))
        self.image_size = self.backbone.config.image_size
        self._init_normalisation(mean, std)
        self.feature_dim = self.backbone.config.hidden_size
        self.head = ProjectionHead(self.feature_dim, output_dim, head_hidden_sizes)

    def save_to(self, folder: Path) -> dict[str, Any]:
        """A config that rebuilds the backbone from its architecture; the saved weights fill it."""
        return portable_hf_config(self.get_config(), self.backbone)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        vit = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2}
        return {"config": {**vit, "num_attention_heads": 2, "intermediate_size": 37}, "output_dim": 8}

    def encode_backbone(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` → ``(n, hidden_size)``."""
        x = self.preprocess(inputs)
        if x.shape[0] == 0:
            return x.new_zeros(0, self.feature_dim)
        out = self.backbone(pixel_values=x)
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ValueError(f"{type(self.backbone).__name__} has no pooled output; use pooling 'cls' or 'mean'")
            return out.pooler_output
        hidden = out.last_hidden_state
        return hidden[:, 0] if self.pooling == "cls" else hidden.mean(1)


def _processor_stats(path: str | None, local_files_only: bool, cache_dir: str | None) -> tuple[list, list]:
    """Mean and std of a pretrained model's image processor (0.5 / 0.5 for a model built from a config)."""
    if path is None:
        return [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    from transformers import AutoImageProcessor

    path = reference(path, "model_name_or_path")
    refuse_remote_code(path)
    if not downloads_allowed():
        local_files_only, cache_dir = True, None
    try:
        processor = AutoImageProcessor.from_pretrained(
            path, local_files_only=local_files_only, cache_dir=cache_dir, trust_remote_code=False
        )
    except OSError as error:
        raise OSError(
            f"cannot read the image processor of {path!r} for its mean/std; pass mean and std: {error}"
        ) from error
    return list(processor.image_mean), list(processor.image_std)
