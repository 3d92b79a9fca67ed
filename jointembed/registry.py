"""Registries: a name for every encoder, loss and modality, so configs and checkpoints name things, never import
paths.

An encoder class registers itself with ``@register_encoder("name")`` in its module; ``create_encoder(name, **kw)``
builds one. Losses and modalities (the units that turn a data type's raw values into an encoder's batch) work
the same way. The packages are imported lazily on the first lookup, so importing this module stays cheap and
every built-in entry is present by the time a name is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "register_encoder",
    "create_encoder",
    "get_encoder_class",
    "list_encoders",
    "register_loss",
    "create_loss",
    "get_loss_class",
    "list_losses",
    "register_modality",
    "create_modality",
    "get_modality_class",
    "list_modalities",
]

T = TypeVar("T", bound=type)

_ENCODERS: dict[str, type] = {}
_LOSSES: dict[str, type] = {}
_MODALITIES: dict[str, type] = {}
# The package whose import registers the built-in entries of each registry.
_PACKAGES = {"encoder": "jointembed.encoders", "loss": "jointembed.losses", "modality": "jointembed.modalities"}


def _register(table: dict[str, type], kind: str, name: str) -> Callable[[T], T]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {kind} name must be a non-empty string, got {name!r}")

    def decorator(cls: T) -> T:
        previous = table.get(name)
        # Re-registering the same class (a module reloaded) is harmless; two classes under one name is a bug.
        same = previous is not None and (previous.__module__, previous.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if previous is not None and not same:
            raise ValueError(
                f"{kind} name {name!r} is already registered to {previous.__module__}.{previous.__qualname__}; "
                f"cannot register {cls.__module__}.{cls.__qualname__} under the same name"
            )
        table[name] = cls
        cls.registry_name = name
        return cls

    return decorator


def _lookup(table: dict[str, type], kind: str, name: str) -> type:
    importlib.import_module(_PACKAGES[kind])
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise KeyError(f"unknown {kind} {name!r}; registered {kind}s: {known}") from None


def register_encoder(name: str) -> Callable[[T], T]:
    """Class decorator registering an encoder class under ``name`` (and setting its ``registry_name``).

    Args:
        name: The registry key, saved in configs and checkpoints (e.g. ``"hf_text"``).

    Raises:
        ValueError: ``name`` is empty or already taken by another class.
    """
    return _register(_ENCODERS, "encoder", name)


def get_encoder_class(name: str) -> type:
    """The encoder class registered under ``name``.

    Raises:
        KeyError: No encoder has that name; the message lists the registered names.
    """
    return _lookup(_ENCODERS, "encoder", name)


def create_encoder(name: str, /, **kwargs: Any) -> Any:
    """Build the encoder registered under ``name`` with constructor arguments ``kwargs``.

    ``create_encoder(enc.registry_name, **enc.get_config())`` rebuilds an encoder of the same architecture.

    Raises:
        KeyError: No encoder has that name; the message lists the registered names.
    """
    return get_encoder_class(name)(**kwargs)


def list_encoders() -> list[str]:
    """Sorted names of all registered encoders (the built-in ones are imported first)."""
    importlib.import_module(_PACKAGES["encoder"])
    return sorted(_ENCODERS)


def register_loss(name: str) -> Callable[[T], T]:
    """Class decorator registering a loss class under ``name`` (and setting its ``registry_name``).

    Raises:
        ValueError: ``name`` is empty or already taken by another class.
    """
    return _register(_LOSSES, "loss", name)


def get_loss_class(name: str) -> type:
    """The loss class registered under ``name``.

    Raises:
        KeyError: No loss has that name; the message lists the registered names.
    """
    return _lookup(_LOSSES, "loss", name)


def create_loss(name: str, /, **kwargs: Any) -> Any:
    """Build the loss registered under ``name`` with constructor arguments ``kwargs``.

    Raises:
        KeyError: No loss has that name; the message lists the registered names.
    """
    return get_loss_class(name)(**kwargs)


def list_losses() -> list[str]:
    """Sorted names of all registered losses (the built-in ones are imported first)."""
    importlib.import_module(_PACKAGES["loss"])
    return sorted(_LOSSES)


def register_modality(name: str) -> Callable[[T], T]:
    """Class decorator registering a modality (a data type's input unit) under ``name``, e.g. ``"audio"``.

    Raises:
        ValueError: ``name`` is empty or already taken by another class.
    """
    return _register(_MODALITIES, "modality", name)


def get_modality_class(name: str) -> type:
    """The modality class registered under ``name``.

    Raises:
        KeyError: No modality has that name; the message lists the registered names.
    """
    return _lookup(_MODALITIES, "modality", name)


def create_modality(name: str, /, **kwargs: Any) -> Any:
    """Build the modality registered under ``name`` with constructor arguments ``kwargs``.

    Raises:
        KeyError: No modality has that name; the message lists the registered names.
    """
    return get_modality_class(name)(**kwargs)


def list_modalities() -> list[str]:
    """Sorted names of all registered modalities (the built-in ones are imported first)."""
    importlib.import_module(_PACKAGES["modality"])
    return sorted(_MODALITIES)
