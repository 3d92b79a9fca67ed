"""Building Hugging Face backbones for the ``hf_*`` encoders: from a hub id / local folder, or from a config dict.

Local files first: ``local_files_only=True`` is the default, so nothing is downloaded unless asked for; while a
saved folder is read nothing is downloaded at all, only its own files are read (:mod:`jointembed.trust`), and no
model's own code (``auto_map``) is ever run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from jointembed.trust import downloads_allowed, reference

__all__ = ["build_hf_model", "hf_config_from_dict", "drop_pooler", "portable_hf_config", "refuse_remote_code"]

# Composite (two-tower) model types whose vision tower is used on its own, and the class of that tower.
_VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}


def hf_config_from_dict(config: dict[str, Any]) -> Any:
    """A ``transformers`` config from a dict holding ``model_type`` and that config's arguments.

    Raises:
        ValueError: ``model_type`` is missing or unknown to transformers.
    """
    from transformers import AutoConfig

    if "model_type" not in config:
        raise ValueError(
            f"a Hugging Face config dict needs a 'model_type' key (e.g. 'bert'), got keys {sorted(config)}"
        )
    if "auto_map" in config:
        raise ValueError("a Hugging Face config dict may not name custom code ('auto_map'); jointembed never runs it")
    kwargs = {k: v for k, v in config.items() if k != "model_type"}
    return AutoConfig.for_model(config["model_type"], **kwargs)


def build_hf_model(
    model_name_or_path: str | None,
    config: dict[str, Any] | None,
    local_files_only: bool = True,
    cache_dir: str | None = None,
    vision_tower: bool = False,
) -> nn.Module:
    """Load pretrained weights from ``model_name_or_path``, or build a randomly initialised model from ``config``.

    Args:
        model_name_or_path: Hub id or local folder of a pretrained model.
        config: A config dict (``{"model_type": "bert", "hidden_size": 32, ...}``) for random initialisation.
        local_files_only: Never download; read local folders and the Hugging Face cache only.
        cache_dir: Hugging Face cache folder, or ``None`` for the default.
        vision_tower: For CLIP / SigLIP checkpoints and configs, build only the vision tower.

    Raises:
        ValueError: Neither or both of ``model_name_or_path`` and ``config`` were given.
        OSError: The pretrained model could not be found or read.
    """
    import transformers
    from transformers import AutoConfig, AutoModel

    if (model_name_or_path is None) == (config is None):
        raise ValueError(
            "give exactly one of model_name_or_path (pretrained weights) or config (random initialisation), "
            f"got model_name_or_path={model_name_or_path!r} and config={config!r}"
        )
    if config is not None:
        hf_config = hf_config_from_dict(config)
        if vision_tower and hf_config.model_type in _VISION_TOWERS:
            return getattr(transformers, _VISION_TOWERS[hf_config.model_type])(hf_config.vision_config)
        return AutoModel.from_config(hf_config, trust_remote_code=False)
    model_name_or_path = reference(model_name_or_path, "model_name_or_path")
    refuse_remote_code(model_name_or_path)
    if not downloads_allowed():
        local_files_only, cache_dir = True, None
    kwargs = {"local_files_only": local_files_only, "cache_dir": cache_dir, "trust_remote_code": False}
    try:
        model_class = AutoModel
        if vision_tower:
            model_type = AutoConfig.from_pretrained(model_name_or_path, **kwargs).model_type
            if model_type in _VISION_TOWERS:
                model_class = getattr(transformers, _VISION_TOWERS[model_type])
        return model_class.from_pretrained(model_name_or_path, **kwargs)
    except OSError as error:
        hint = " (local_files_only=True: pass local_files_only=False to allow a download)" if local_files_only else ""
        raise OSError(f"could not load Hugging Face model {model_name_or_path!r}{hint}: {error}") from error


def refuse_remote_code(name_or_path: str | None) -> None:
    """Refuse a local model or tokenizer folder whose JSON files name custom code (``auto_map``): transformers
    would import it with ``trust_remote_code``, which jointembed never sets; saying so beats a prompt or a
    confusing error from deep inside transformers.

    Raises:
        ValueError: A ``config.json``, ``tokenizer_config.json`` or ``preprocessor_config.json`` in the folder
            has an ``auto_map`` entry (the message names the file).
    """
    if name_or_path is None or not Path(name_or_path).is_dir():
        return
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        path = Path(name_or_path) / name
        try:
            content = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # transformers reports an unreadable file itself
        if isinstance(content, dict) and "auto_map" in content:
            raise ValueError(f"{path}: field 'auto_map' names custom code; jointembed never runs a model's own code")


def drop_pooler(model: nn.Module) -> None:
    """Remove a model's pooler layer when the encoder pools itself, so no parameter goes without a gradient.

    Parameters that never receive a gradient break DistributedDataParallel (without ``find_unused_parameters``).
    BERT-, RoBERTa- and ViT-style models skip the pooler when it is ``None``.
    """
    if isinstance(getattr(model, "pooler", None), nn.Module):
        model.pooler = None


def portable_hf_config(encoder_config: dict[str, Any], backbone: nn.Module) -> dict[str, Any]:
    """An ``hf_*`` encoder's config that rebuilds its backbone from the architecture alone (no pretrained path):
    ``model_name_or_path`` cleared, ``config`` set to the backbone's own config dict. The saved weights then fill
    it, so a pretrained folder needs nothing outside itself (no hub, no package, no local path)."""
    architecture = backbone.config.to_dict()
    for private in ("_name_or_path", "_commit_hash"):
        architecture.pop(private, None)
    return {**encoder_config, "model_name_or_path": None, "config": architecture}
