"""Registries: a name for every encoder, loss and modality, so configs and checkpoints name things, never import
paths.

An encoder class registers itself with ``@register_encoder("name")`` in its module; ``create_encoder(name, **kw)``
builds one. Losses and modalities (the units that turn a data type's raw values into an encoder's batch) work
the same way: each kind is one :class:`Registry`, and the module-level functions are its methods. The packages
are imported lazily on the first lookup, so importing this module stays cheap and every built-in entry is
present by the time a name is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "Registry",
    "ENCODERS",
    "LOSSES",
    "MODALITIES",
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


class Registry:
    """Names → classes of one kind (encoders, losses, modalities).

    Args:
        kind: What the entries are, for messages (``"encoder"``).
        package: The package whose import registers the built-in entries.
    """

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self.table: dict[str, type] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering a class under ``name`` (and setting its ``registry_name``).

        Raises:
            ValueError: ``name`` is empty or already taken by another class.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def decorator(cls: T) -> T:
            previous = self.table.get(name)
            # Re-registering the same class (a module reloaded) is harmless; two classes under one name is a bug.
            same = previous is not None and (previous.__module__, previous.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if previous is not None and not same:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered to {previous.__module__}."
                    f"{previous.__qualname__}; cannot register {cls.__module__}.{cls.__qualname__} under the same name"
                )
            self.table[name] = cls
            cls.registry_name = name
            return cls

        return decorator

    def get(self, name: str) -> type:
        """The class registered under ``name``.

        Raises:
            KeyError: No entry has that name; the message lists the registered names.
        """
        importlib.import_module(self.package)
        try:
            return self.table[name]
        except KeyError:
            known = ", ".join(sorted(self.table)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; registered {self.kind}s: {known}") from None

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Build the entry registered under ``name`` with constructor arguments ``kwargs``.

        ``create(obj.registry_name, **obj.get_config())`` rebuilds an object of the same configuration.

        Raises:
            KeyError: No entry has that name; the message lists the registered names.
        """
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Sorted names of all registered entries (the built-in ones are imported first)."""
        importlib.import_module(self.package)
        return sorted(self.table)


ENCODERS = Registry("encoder", "jointembed.encoders")
LOSSES = Registry("loss", "jointembed.losses")
MODALITIES = Registry("modality", "jointembed.modalities")

register_encoder = ENCODERS.register
get_encoder_class = ENCODERS.get
create_encoder = ENCODERS.create
list_encoders = ENCODERS.names

register_loss = LOSSES.register
get_loss_class = LOSSES.get
create_loss = LOSSES.create
list_losses = LOSSES.names

register_modality = MODALITIES.register
get_modality_class = MODALITIES.get
create_modality = MODALITIES.create
list_modalities = MODALITIES.names
