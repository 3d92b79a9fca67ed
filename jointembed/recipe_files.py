"""Recipes that build on a base recipe: a YAML file with a top-level ``base:`` key holds only its differences.

jsonargparse (and so LightningCLI) reads several ``--config`` files in turn, but a later file replaces a whole
dict-valued argument (the joint model's ``encoders``) rather than merging it, and a recipe cannot name another
recipe. This small merge is written here because neither library offers it: a recipe names its ``base`` (a path
relative to the recipe), and :func:`resolve_recipe` merges the chain into one config before LightningCLI reads
it, so ``--print_config`` and the run's saved ``config.yaml`` show the whole, resolved recipe.

Merge rules: mappings merge key by key, recursively; anything else (lists, scalars) in the recipe replaces the
base's value; a node whose ``class_path`` differs from the base's replaces the base's node whole (another class
takes other arguments).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jointembed.errors import DataFormatError

__all__ = ["merge_configs", "resolve_recipe", "BASE_KEY"]

BASE_KEY = "base"


def merge_configs(base: Any, override: Any) -> Any:
    """``override`` laid over ``base`` by the rules of the module docstring (neither input is modified)."""
    if not isinstance(base, Mapping) or not isinstance(override, Mapping):
        return override
    if "class_path" in override and override.get("class_path") != base.get("class_path"):
        return dict(override)
    merged = dict(base)
    for key, value in override.items():
        merged[key] = merge_configs(base[key], value) if key in base else value
    return merged


def resolve_recipe(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any] | None:
    """The recipe at ``path`` merged over its chain of bases, or ``None`` when it names no base.

    Raises:
        DataFormatError: The file is not a YAML mapping, its ``base`` is not a string, the base file is missing,
            or the bases form a cycle (the message names the files).
    """
    path = Path(path).resolve()
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DataFormatError(f"{path}: cannot read the recipe: {error}") from error
    if not isinstance(config, dict) or BASE_KEY not in config:
        return None
    base = config.pop(BASE_KEY)
    if not isinstance(base, str):
        raise DataFormatError(
            f"{path}: '{BASE_KEY}' must be the path of a recipe (relative to this file), got {base!r}"
        )
    base_path = (path.parent / base).resolve()
    if base_path in (*_seen, path):
        chain = " -> ".join(str(p) for p in (*_seen, path, base_path))
        raise DataFormatError(f"{path}: recipes name each other as base in a cycle: {chain}")
    if not base_path.is_file():
        raise DataFormatError(f"{path}: base recipe {base_path} does not exist")
    parent = resolve_recipe(base_path, (*_seen, path))
    if parent is None:
        parent = yaml.safe_load(base_path.read_text(encoding="utf-8")) or {}
    return merge_configs(parent, config)
