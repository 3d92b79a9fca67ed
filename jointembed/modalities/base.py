"""The modality unit: everything that turns one data type's raw values into its encoder's batch.

A :class:`Modality` owns the whole input path of a data type, so the data module (training), the inference API
(:meth:`JointEmbeddingModel.embed`) and the saved model all call the same code:

``parse_cell`` (a manifest cell → a raw value, validated) → ``decode`` (a raw value: a path, bytes, an array, a
string... → a canonical decoded value) → ``transform`` (preprocessing, plus augmentation when training) →
``collate`` (a list of transformed values → the encoder's batch).

Its settings (image size, sample rate, vocabulary...) are constructor arguments (what LightningCLI reads) plus any
state ``fit`` learns from the training values; ``get_config`` returns both, and ``save_to`` / ``load_from``
keep what does not belong in JSON (a large vocabulary) as files of the pretrained folder. A new data type is a
new module with a ``@register_modality("name")`` class.
"""

from __future__ import annotations

import abc
import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from jointembed.config import constructor_config

__all__ = ["Modality", "one_thread"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run per-example preprocessing single-threaded: on tensors this small, intra-op threads only add
    synchronisation, which costs 10-20x when the cores are busy (DataLoader workers already use one thread)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Modality(abc.ABC):
    """Base class of the input units: one data type's raw values → its encoder's batch.

    Subclasses call ``self._set_config(locals())`` first in ``__init__`` and implement ``decode``, ``collate``
    and ``example_values``; ``parse_cell``, ``transform``, ``fit``, ``bind`` and the file hooks have defaults.
    ``registry_name`` is set by :func:`jointembed.registry.register_modality`.
    """

    registry_name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._config: dict[str, Any] = {}

    def _set_config(self, arguments: Mapping[str, Any]) -> None:
        """Record the constructor arguments (pass ``locals()``) as JSON types."""
        self._config = constructor_config(type(self), arguments)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments and fitted state: ``create_modality(self.registry_name, **self.get_config())``
        rebuilds an equal unit (files from :meth:`save_to` aside)."""
        return copy.deepcopy(self._config)

    # ----- the input path -------------------------------------------------------------------------------

    def parse_cell(self, value: Any, base: Path, from_csv: bool) -> Any:
        """A manifest cell → the raw value ``decode`` takes; relative paths are resolved against ``base``.

        Args:
            value: The cell: a JSON value, or a CSV cell's text.
            base: The manifest's folder.
            from_csv: Whether the cell comes from a CSV file (then it is always a string).

        Raises:
            ValueError: The cell is not a valid value of this type (the reader adds the file, row and column).
        """
        return value

    @abc.abstractmethod
    def decode(self, value: Any) -> Any:
        """A raw value (a path, bytes, an array, a string...) → the canonical decoded value of this type.

        Raises:
            TypeError: A value of a kind this unit does not read (the message lists those it does).
            jointembed.data.media.BadMediaError: A file that is missing, unreadable, corrupt or too large, or a
                value this unit refuses to embed, such as an empty text (``EmptyInputError``); the data module
                and ``embed_readable`` skip these and report them by row where told to.
        """

    def transform(self, decoded: Any, train: bool = False) -> Any:
        """Preprocess one decoded value (crop, resize, vocabulary lookup...), augmenting it when ``train``."""
        return decoded

    def load(self, value: Any, train: bool = False) -> Any:
        """``transform(decode(value), train)``: one raw value ready for :meth:`collate`."""
        return self.transform(self.decode(value), train)

    @abc.abstractmethod
    def collate(self, items: Sequence[Any]) -> Any:
        """Batch transformed values (possibly none) into the encoder's input."""

    def lengths(self, values: Sequence[Any], encoder: torch.nn.Module) -> list[int] | None:
        """How long each raw value will be in ``encoder``'s padded batch, or ``None`` (the default) when that is
        unknown before decoding or does not matter: the inference path then batches values in the given order.

        Worth it only for a type that is cheap to measure up front (text, not files to decode).
        """
        return None

    # ----- state ------------------------------------------------------------------------------------------

    def fit(self, values: Sequence[Any], every: Sequence[Any] = ()) -> None:  # noqa: B027 (optional hook)
        """Learn settings from the training split's raw values (``every`` holds all splits'); default: nothing."""

    @property
    def fitted(self) -> bool:
        """Whether the unit has what it needs to load values (a vocabulary, for IDs)."""
        return True

    def bind(self, encoder: torch.nn.Module, field: str) -> None:  # noqa: B027 (optional hook)
        """Check this unit against the encoder it feeds (or size the encoder from it); default: nothing.

        Raises:
            ValueError: The two disagree (e.g. sample rates); the message names the field and both values.
        """

    def check(self, value: Any) -> None:  # noqa: B027 (optional hook)
        """Refuse a parsed value that the fitted, bound unit could not load (the data module checks every row
        at setup, so the file and row are named before training); default: nothing.

        Raises:
            ValueError: The value cannot be loaded; the message says why.
        """

    def save_to(self, folder: Path) -> dict[str, Any]:
        """Write what does not belong in JSON (a large vocabulary) as files in ``folder`` (created by the caller),
        and return the config to save, which names those files relative to ``folder``. Default: no files."""
        return self.get_config()

    @classmethod
    def load_from(cls, config: Mapping[str, Any], folder: Path) -> Modality:
        """Rebuild a unit from what :meth:`save_to` returned and wrote.

        Raises:
            jointembed.errors.CheckpointError: A file is missing or corrupt (the message names it).
            TypeError: The config does not fit the constructor.
        """
        return cls(**config)

    @abc.abstractmethod
    def example_values(self, count: int = 2, seed: int = 0) -> list[Any]:
        """``count`` valid raw values of this type (for tests and docs), needing no files."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items() if not isinstance(v, list) or len(v) < 8)
        return f"{type(self).__name__}({args})"
