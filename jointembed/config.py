"""Recording constructor arguments as JSON, so a saved config can rebuild an object through its registry name."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["constructor_config"]


def _path_to_str(value: Any) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{value!r} of type {type(value).__name__} is not JSON-serialisable")


def constructor_config(cls: type, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of ``cls.__init__`` picked from ``arguments`` (pass ``locals()``), as JSON types.

    Tuples become lists and paths strings, so the result survives a JSON round trip unchanged.

    Raises:
        TypeError: An argument is not JSON-serialisable (the message names the class).
    """
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    config = {name: arguments[name] for name in names}
    try:
        return json.loads(json.dumps(config, default=_path_to_str))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{cls.__name__} arguments must be JSON-serialisable: {error}") from None
