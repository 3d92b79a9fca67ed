"""Constructor arguments: checking the numbers a recipe sets (so an impossible setting is refused, by name, when
the object is built rather than as a traceback mid-run) and recording them as JSON, so a saved config can rebuild
an object through its registry name."""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["constructor_config", "check_positive", "check_non_negative", "check_at_least"]


def _check(name: str, value: Any, requirement: str, holds: bool, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {expected} {requirement}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number {requirement}, got {value}")
    if not holds:
        raise ValueError(f"{name} must be {requirement}, got {value}")


def check_positive(name: str, value: float) -> float:
    """``value`` if it is a finite number > 0 (a learning rate, a temperature).

    Raises:
        ValueError: It is not, e.g. ``lr must be > 0, got -1.0`` (``TypeError`` if it is not a number).
    """
    _check(name, value, "> 0", isinstance(value, numbers.Real) and value > 0)
    return value


def check_non_negative(name: str, value: float) -> float:
    """``value`` if it is a finite number >= 0 (a weight decay, a loss weight).

    Raises:
        ValueError: It is not, e.g. ``weight_decay must be >= 0, got -0.1`` (``TypeError`` if not a number).
    """
    _check(name, value, ">= 0", isinstance(value, numbers.Real) and value >= 0)
    return value


def check_at_least(name: str, value: int, minimum: int) -> int:
    """``value`` if it is an integer >= ``minimum`` (a batch size >= 1, a number of workers >= 0).

    Raises:
        ValueError: It is not, e.g. ``batch_size must be >= 1, got 0`` (``TypeError`` if not an integer).
    """
    _check(name, value, f">= {minimum}", isinstance(value, numbers.Integral) and value >= minimum, integer=True)
    return value


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
