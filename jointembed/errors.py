"""Named exceptions raised by jointembed.

Each one subclasses the built-in exception a caller would already catch (``ValueError``), so code written
against plain Python keeps working, while code that wants to tell jointembed's failures apart can.
"""

from __future__ import annotations

__all__ = ["DataFormatError", "VocabularyFormatError", "CheckpointError"]


class DataFormatError(ValueError):
    """A data file (ratings, CSV, manifest) could not be parsed; the message names the file and line or row."""


class VocabularyFormatError(ValueError):
    """A saved vocabulary file is corrupt, of another format, or of an unsupported version."""


class CheckpointError(ValueError):
    """A saved model folder is missing files, has the wrong format, or does not match the model's parameters."""
