"""Every task refuses an impossible setting when it is built, naming the argument and the value (``lr -1`` once
reached the optimiser and ended in a 76-line traceback, or trained nothing)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from jointembed.encoders.text import ScratchTextEncoder
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.models.joint import JointEmbeddingModel
from jointembed.models.recommender import Recommender
from jointembed.models.two_tower import TwoTowerRecommender
from jointembed.registry import create_encoder
from jointembed.tasks.classification import ClassificationTask
from jointembed.tasks.coldstart import ColdStartTask
from jointembed.tasks.contrastive import ContrastiveTask
from jointembed.tasks.recommendation import RecommendationTask
from jointembed.tasks.regression import RegressionTask


def _joint() -> JointEmbeddingModel:
    ids = create_encoder("ids", num_embeddings=10, embedding_dim=4, hidden_sizes=[], output_dim=8)
    text = create_encoder("scratch_text", num_buckets=64, embedding_dim=8, output_dim=8)
    return JointEmbeddingModel({"ids": ids, "text": text})


def _two_tower() -> TwoTowerRecommender:
    content = ScratchTextEncoder(num_buckets=64, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=8)
    return TwoTowerRecommender(content, num_items=5, id_dim=4, hidden_sizes=[8])


TASKS: dict[str, Callable[..., Any]] = {
    "classification": lambda **kw: ClassificationTask(EmbeddingNet(16, out_features=3), **kw),
    "regression": lambda **kw: RegressionTask(EmbeddingNet(16, out_features=1), **kw),
    "recommendation": lambda **kw: RecommendationTask(Recommender(12, embedding_dim=4, hidden_sizes=(8,)), **kw),
    "coldstart": lambda **kw: ColdStartTask(_two_tower(), **kw),
    "contrastive": lambda **kw: ContrastiveTask(_joint(), **kw),
}

IMPOSSIBLE = [
    ({"lr": -1.0}, r"^lr must be > 0, got -1\.0$"),
    ({"lr": 0.0}, r"^lr must be > 0, got 0\.0$"),
    ({"lr": math.nan}, r"^lr must be a finite number > 0, got nan$"),
    ({"lr": math.inf}, r"^lr must be a finite number > 0, got inf$"),
    ({"weight_decay": -0.1}, r"^weight_decay must be >= 0, got -0\.1$"),
]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(("setting", "message"), IMPOSSIBLE, ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_an_impossible_setting_is_refused_by_name_when_the_task_is_built(task, setting, message):
    with pytest.raises(ValueError, match=message):
        TASKS[task](**setting)


@pytest.mark.parametrize(
    ("task", "setting", "message"),
    [
        ("recommendation", {"dense_lr": -1e-3}, r"^dense_lr must be > 0, got -0\.001$"),
        ("recommendation", {"eval_k": 0}, r"^eval_k must be >= 1, got 0$"),
        ("coldstart", {"num_negatives": -1}, r"^num_negatives must be >= 0, got -1$"),
        ("coldstart", {"bind_weight": -1.0}, r"^bind_weight must be >= 0, got -1\.0$"),
        ("coldstart", {"eval_k": 0}, r"^eval_k must be >= 1, got 0$"),
        ("coldstart", {"taste_weight": math.nan}, r"^taste_weight must be a finite number >= 0, got nan$"),
        ("contrastive", {"backbone_lr": {"text": -1.0}}, r"^backbone_lr\['text'\] must be >= 0, got -1\.0$"),
        ("contrastive", {"pair_weights": {"ids-text": -1.0}}, r"^pair_weights\['ids-text'\] must be >= 0, got -1"),
        ("contrastive", {"retrieval_ks": (1, 0)}, r"^retrieval_ks must be >= 1, got 0$"),
    ],
)
def test_each_tasks_own_settings_are_checked_too(task, setting, message):
    with pytest.raises(ValueError, match=message):
        TASKS[task](**setting)


@pytest.mark.parametrize("task", TASKS)
def test_the_defaults_build(task):
    TASKS[task]()
