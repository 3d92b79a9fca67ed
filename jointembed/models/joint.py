"""The joint embedding model: one encoder per modality, all mapping into one shared, L2-normalised space.

A plain ``nn.Module`` (usable without Lightning): ``forward`` embeds every modality present in a batch, ``embed``
one modality, ``similarity`` compares anything with anything by cosine similarity. ``save_pretrained`` writes
one self-describing folder that ``from_pretrained`` rebuilds through the encoder registry:

- ``config.json``: ``{"format": "jointembed.joint", "version": 1, "encoders": {name: {"type": registry name,
  "config": encoder.get_config()}}}`` (registry names, never Python import paths);
- ``model.safetensors``: every parameter and buffer, keys as in ``state_dict()`` (``encoders.<name>.…``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from jointembed.encoders.base import Encoder
from jointembed.errors import CheckpointError
from jointembed.io import atomic_write, atomic_write_json
from jointembed.registry import create_encoder

__all__ = ["JointEmbeddingModel", "CONFIG_NAME", "WEIGHTS_NAME", "FORMAT", "FORMAT_VERSION"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "jointembed.joint"
FORMAT_VERSION = 1


class JointEmbeddingModel(nn.Module):
    """Encoders keyed by modality name (the batch key each reads), all sharing the output dimension D.

    Args:
        encoders: At least two encoders, e.g. ``{"image": ImageEncoder(...), "text": TextEncoder(...)}``; the
            dict key (not the encoder's default ``modality``) names the batch entry each one encodes.

    Raises:
        ValueError: Fewer than two encoders, or encoders with different ``output_dim`` (the message names them).
    """

    def __init__(self, encoders: dict[str, Encoder]) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(f"a joint model needs at least two encoders, got {sorted(encoders)}")
        dims = {name: int(encoder.output_dim) for name, encoder in encoders.items()}
        if len(set(dims.values())) > 1:
            listed = ", ".join(f"{name}={dim}" for name, dim in dims.items())
            raise ValueError(f"all encoders must share output_dim, got {listed}")
        self.encoders = nn.ModuleDict(encoders)
        self.output_dim = next(iter(dims.values()))

    @property
    def modalities(self) -> list[str]:
        """The encoders' names, in order."""
        return list(self.encoders.keys())

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Embed every modality of the model that the batch holds.

        Args:
            batch: The data module's batch dict: modality name → that modality's inputs (present examples only),
                and ``"present"``: modality name → ``(B,)`` bool mask. A modality with no present example (or
                absent from the batch) is skipped.

        Returns:
            Modality name → ``(n_present, D)`` L2-normalised embeddings, rows in example order.
        """
        present = batch.get("present", {})
        out = {}
        for name, encoder in self.encoders.items():
            if name not in batch or (name in present and not bool(present[name].any())):
                continue
            out[name] = encoder(batch[name])
        return out

    def embed(self, modality: str, inputs: Any) -> torch.Tensor:
        """``(n, D)`` L2-normalised embeddings of one modality's inputs (as the data module batches them).

        Raises:
            KeyError: The model has no encoder of that name; the message lists the ones it has.
        """
        if modality not in self.encoders:
            raise KeyError(f"the model has no encoder {modality!r}; it has: {', '.join(self.modalities)}")
        return self.encoders[modality](inputs)

    @staticmethod
    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity ``(n, m)`` between the rows of ``a`` ``(n, D)`` and ``b`` ``(m, D)`` (any modalities)."""
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T

    def get_config(self) -> dict[str, Any]:
        """The ``config.json`` content: format, version, and each encoder's registry name and config."""
        encoders = {}
        for name, encoder in self.encoders.items():
            if not getattr(encoder, "registry_name", ""):
                raise ValueError(
                    f"encoder {name!r} ({type(encoder).__name__}) is not registered: decorate its class with "
                    "@jointembed.registry.register_encoder(name) so a checkpoint can name it"
                )
            encoders[name] = {"type": encoder.registry_name, "config": encoder.get_config()}
        return {"format": FORMAT, "version": FORMAT_VERSION, "encoders": encoders}

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created; files written atomically)."""
        folder = Path(folder)
        config = self.get_config()
        # Cloning gives every tensor its own storage: safetensors refuses tensors that share memory.
        state = {key: value.detach().cpu().contiguous().clone() for key, value in self.state_dict().items()}
        atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}))
        atomic_write_json(folder / CONFIG_NAME, config)
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> JointEmbeddingModel:
        """Rebuild a model saved with :meth:`save_pretrained` from a local folder.

        Args:
            folder: The saved folder.
            strict: Require the weights' keys to match the model's exactly.
            map_location: Device the weights are loaded onto.

        Raises:
            CheckpointError: A file is missing or unreadable, the format or version is not this one, an encoder
                type is unknown, or (strict) keys are missing/unexpected; the message names the file.
        """
        folder = Path(folder)
        config = _read_config(folder / CONFIG_NAME)
        encoders = {}
        for name, spec in config["encoders"].items():
            try:
                encoders[name] = create_encoder(spec["type"], **spec.get("config", {}))
            except (KeyError, TypeError) as error:
                raise CheckpointError(f"{folder / CONFIG_NAME}: cannot build encoder {name!r}: {error}") from error
        model = cls(encoders)
        model.load_weights(folder / WEIGHTS_NAME, strict=strict, map_location=map_location)
        return model

    def load_weights(
        self, path: str | os.PathLike, strict: bool = True, map_location: str | torch.device = "cpu"
    ) -> None:
        """Load a ``model.safetensors`` file into this model.

        Raises:
            CheckpointError: The file is missing or unreadable, shapes differ, or (strict) keys are missing or
                unexpected (one error listing both).
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: weights file not found")
        try:
            state = load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: cannot read safetensors weights: {error}") from error
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"{path}: weights do not match the model; missing keys: {missing}; unexpected keys: {unexpected}"
            )
        shapes = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k in state and state[k].shape != own[k].shape
        ]
        if shapes:
            raise CheckpointError(f"{path}: shape mismatch: {'; '.join(shapes)}")
        self.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found (is this a folder written by save_pretrained?)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read JSON config: {error}") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path}: format is {found!r}, expected {FORMAT!r}")
    if config.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported version {config.get('version')!r}, expected {FORMAT_VERSION}")
    if not isinstance(config.get("encoders"), dict) or not all(
        isinstance(spec, dict) and isinstance(spec.get("type"), str) for spec in config["encoders"].values()
    ):
        raise CheckpointError(f"{path}: 'encoders' must map names to {{'type': registry name, 'config': {{...}}}}")
    return config
