"""A recommender's catalogue in a search index: exact index search gives the recommender's own rankings
(score = u · W[j] + b[j] as an inner product), HNSW recovers them closely, and an index of another model or made
for the other purpose is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jointembed.errors import ModelMismatchError
from jointembed.models.pretrained_recommender import PretrainedRecommender
from jointembed.models.recommender import Recommender
from jointembed.search import EmbeddingIndex, faiss_available

N = 3000


def _recommender(seed: int = 0) -> PretrainedRecommender:
    torch.manual_seed(seed)
    model = Recommender(N, embedding_dim=16, hidden_sizes=(16,))
    with torch.no_grad():
        model.item_bias.normal_(0, 0.5)  # a bias that matters: the inner-product trick must carry it
    return PretrainedRecommender(model, [f"m{i}" for i in range(N)], [f"title {i}" for i in range(N)])


def _histories(count: int = 40) -> list[list[str]]:
    rng = np.random.default_rng(1)
    return [[f"m{i}" for i in rng.choice(N, size=int(rng.integers(1, 30)), replace=False)] for _ in range(count)]


def test_exact_index_gives_the_recommenders_own_rankings(tmp_path: Path) -> None:
    rec = _recommender()
    histories = _histories()
    index = rec.catalogue_index("recommend")
    expected = rec.recommend(histories, k=10)
    got = rec.recommend(histories, k=10, index=index)
    for want, have in zip(expected, got, strict=True):
        assert [s.key for s in have] == [s.key for s in want]
        assert np.allclose([s.score for s in have], [s.score for s in want], atol=1e-4)
        assert have[0].title == want[0].title
    assert all(not set(h) & {s.key for s in r} for h, r in zip(histories, got, strict=True))  # no watched item
    similar = rec.catalogue_index("similar")
    assert [s.key for s in rec.similar_items("m5", 7, index=similar)] == [s.key for s in rec.similar_items("m5", 7)]
    loaded = EmbeddingIndex.load(index.save(tmp_path / "items"), model=None)
    assert [s.key for s in rec.recommend(histories[0], k=5, index=loaded)] == [s.key for s in expected[0][:5]]


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed (the faiss extra)")
def test_hnsw_index_recovers_the_exact_rankings() -> None:
    rec = _recommender()
    histories = _histories(100)
    exact = rec.recommend(histories, k=10)
    hnsw = rec.recommend(histories, k=10, index=rec.catalogue_index("recommend", "hnsw", {"ef_search": 128}))
    recall = np.mean([len({s.key for s in a} & {s.key for s in b}) / 10 for a, b in zip(exact, hnsw, strict=True)])
    assert recall >= 0.9


def test_an_index_of_another_model_or_purpose_is_refused() -> None:
    rec, other = _recommender(0), _recommender(1)
    with pytest.raises(ModelMismatchError, match="made for 'similar', not 'recommend'"):
        rec.recommend(["m1"], k=3, index=rec.catalogue_index("similar"))
    with pytest.raises(ModelMismatchError, match="not comparable"):
        rec.recommend(["m1"], k=3, index=other.catalogue_index("recommend"))
    with pytest.raises(ValueError, match="has no history"):
        rec.recommend([[]], k=3, index=rec.catalogue_index("recommend"))
