"""Named exceptions raised by jointembed.

Each one subclasses the built-in exception a caller would already catch (``ValueError``, or ``KeyError`` for an
unknown key), so code written against plain Python keeps working, while code that wants to tell jointembed's
failures apart can.
"""

from __future__ import annotations

__all__ = [
    "DataFormatError",
    "VocabularyFormatError",
    "CheckpointError",
    "UnknownItemError",
    "IndexFileError",
    "ModelMismatchError",
    "ConcurrentWriteError",
]


class DataFormatError(ValueError):
    """A data file (ratings, CSV, manifest) could not be parsed; the message names the file and line or row."""


class VocabularyFormatError(ValueError):
    """A saved vocabulary file is corrupt, of another format, or of an unsupported version."""


class CheckpointError(ValueError):
    """A saved model folder is missing files, has the wrong format, or does not match the model's parameters."""


class PredictionFormatError(ValueError):
    """A folder of prediction shards is incomplete (a rank did not finish), holds a truncated, corrupt or stray
    shard, or a row twice; the message names the shard or index file."""


class UnknownItemError(KeyError):
    """A raw item key or title that is not in a recommender's catalogue (or names several items); the message
    names it. A ``KeyError``, as a failed lookup is."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class IndexFileError(ValueError):
    """A saved search index is missing a file, truncated, tampered with, or of another format or version; the
    message names the folder and the file."""


class ConcurrentWriteError(OSError):
    """Another process is writing the same folder: it held the folder's lock for longer than the wait allowed, or
    saved the folder after this copy of it was loaded (saving now would silently drop its changes). The message
    names the folder and what to do. An ``OSError``, as other failures to write a file are."""


class ModelMismatchError(ValueError):
    """Vectors of one model met another: a search index made by a different model (or of another dimension)
    than the one embedding the queries or the new entries; the message names both."""
