"""Encoders: one file per data type, each turning its modality's batch into ``(n, D)`` unit vectors.

Importing this package registers every built-in encoder (see :func:`jointembed.registry.list_encoders`).
"""

from jointembed.encoders.audio import AudioCNNEncoder, HFAudioEncoder
from jointembed.encoders.base import Encoder, ProjectionHead, masked_mean
from jointembed.encoders.ids import IdEncoder
from jointembed.encoders.image import HFImageEncoder, SmallCNNImageEncoder, TorchvisionImageEncoder
from jointembed.encoders.text import HFTextEncoder, ScratchTextEncoder

__all__ = [
    "Encoder",
    "ProjectionHead",
    "masked_mean",
    "IdEncoder",
    "HFTextEncoder",
    "ScratchTextEncoder",
    "TorchvisionImageEncoder",
    "SmallCNNImageEncoder",
    "HFImageEncoder",
    "AudioCNNEncoder",
    "HFAudioEncoder",
]
