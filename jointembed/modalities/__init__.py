"""Modalities: one unit per data type that turns its raw values into its encoder's batch (see ``base``).

Importing this package registers the built-in units (``ids``, ``text``, ``image``, ``audio``); see
:func:`jointembed.registry.list_modalities`.
"""

from jointembed.modalities.audio import AudioModality
from jointembed.modalities.base import Modality
from jointembed.modalities.ids import IdsModality
from jointembed.modalities.image import ImageModality
from jointembed.modalities.text import TextModality

__all__ = ["Modality", "IdsModality", "TextModality", "ImageModality", "AudioModality"]
