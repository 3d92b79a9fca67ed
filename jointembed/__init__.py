"""jointembed: learn embeddings of sparse IDs, text, images and audio, alone or in one shared space.

The public API is re-exported here. Names are imported lazily (PEP 562) so that ``import jointembed`` and
``jointembed --help`` stay fast: torch and Lightning load only when a name that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Vocabulary": "jointembed.vocab",
    "SparseBatch": "jointembed.sparse",
    "collate_sparse": "jointembed.sparse",
    "SparseEmbedding": "jointembed.nn.sparse_embedding",
    "suggest_embedding_dim": "jointembed.nn.sparse_embedding",
    "MLP": "jointembed.nn.mlp",
    "DataFormatError": "jointembed.errors",
    "VocabularyFormatError": "jointembed.errors",
    "CheckpointError": "jointembed.errors",
    "Interactions": "jointembed.data.interactions",
    "Histories": "jointembed.data.interactions",
    "read_movielens": "jointembed.data.movielens",
    "generate_movie_world": "jointembed.data.movie_world",
    "evaluate_rankings": "jointembed.metrics.ranking",
    "Recommender": "jointembed.models.recommender",
    "EmbeddingNet": "jointembed.models.embedding_net",
    "JointEmbeddingModel": "jointembed.models.joint",
    "Encoder": "jointembed.encoders.base",
    "create_encoder": "jointembed.registry",
    "list_encoders": "jointembed.registry",
    "create_loss": "jointembed.registry",
    "list_losses": "jointembed.registry",
    "retrieval_metrics": "jointembed.metrics.retrieval",
    "zero_shot_accuracy": "jointembed.metrics.retrieval",
    "LazyAdam": "jointembed.optim",
    "RowWiseAdagrad": "jointembed.optim",
    "Modality": "jointembed.modalities.base",
    "IdsModality": "jointembed.modalities.ids",
    "TextModality": "jointembed.modalities.text",
    "ImageModality": "jointembed.modalities.image",
    "AudioModality": "jointembed.modalities.audio",
    "create_modality": "jointembed.registry",
    "list_modalities": "jointembed.registry",
    "HousePricePredictor": "jointembed.models.house_price",
    "DigitClassifier": "jointembed.models.digit_classifier",
    "PretrainedRecommender": "jointembed.models.pretrained_recommender",
    "ItemScore": "jointembed.models.pretrained_recommender",
    "UnknownItemError": "jointembed.errors",
    "EmbeddingIndex": "jointembed.search.index",
    "TwoTowerRecommender": "jointembed.models.two_tower",
    "PretrainedTwoTower": "jointembed.models.pretrained_two_tower",
}

__all__ = [
    "__version__",
    "Vocabulary",
    "SparseBatch",
    "collate_sparse",
    "SparseEmbedding",
    "suggest_embedding_dim",
    "MLP",
    "DataFormatError",
    "VocabularyFormatError",
    "CheckpointError",
    "Interactions",
    "Histories",
    "read_movielens",
    "generate_movie_world",
    "evaluate_rankings",
    "Recommender",
    "EmbeddingNet",
    "JointEmbeddingModel",
    "Encoder",
    "create_encoder",
    "list_encoders",
    "create_loss",
    "list_losses",
    "retrieval_metrics",
    "zero_shot_accuracy",
    "LazyAdam",
    "RowWiseAdagrad",
    "Modality",
    "IdsModality",
    "TextModality",
    "ImageModality",
    "AudioModality",
    "create_modality",
    "list_modalities",
    "HousePricePredictor",
    "DigitClassifier",
    "PretrainedRecommender",
    "ItemScore",
    "UnknownItemError",
    "EmbeddingIndex",
    "TwoTowerRecommender",
    "PretrainedTwoTower",
]

if TYPE_CHECKING:  # let type checkers and IDEs see the real names
    from jointembed.data.interactions import Histories, Interactions
    from jointembed.data.movie_world import generate_movie_world
    from jointembed.data.movielens import read_movielens
    from jointembed.encoders.base import Encoder
    from jointembed.errors import CheckpointError, DataFormatError, UnknownItemError, VocabularyFormatError
    from jointembed.metrics.ranking import evaluate_rankings
    from jointembed.metrics.retrieval import retrieval_metrics, zero_shot_accuracy
    from jointembed.modalities import AudioModality, IdsModality, ImageModality, Modality, TextModality
    from jointembed.models.digit_classifier import DigitClassifier
    from jointembed.models.embedding_net import EmbeddingNet
    from jointembed.models.house_price import HousePricePredictor
    from jointembed.models.joint import JointEmbeddingModel
    from jointembed.models.pretrained_recommender import ItemScore, PretrainedRecommender
    from jointembed.models.pretrained_two_tower import PretrainedTwoTower
    from jointembed.models.recommender import Recommender
    from jointembed.models.two_tower import TwoTowerRecommender
    from jointembed.nn.mlp import MLP
    from jointembed.nn.sparse_embedding import SparseEmbedding, suggest_embedding_dim
    from jointembed.optim import LazyAdam, RowWiseAdagrad
    from jointembed.registry import (
        create_encoder,
        create_loss,
        create_modality,
        list_encoders,
        list_losses,
        list_modalities,
    )
    from jointembed.search.index import EmbeddingIndex
    from jointembed.sparse import SparseBatch, collate_sparse
    from jointembed.vocab import Vocabulary


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jointembed' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
