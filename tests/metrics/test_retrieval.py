"""Retrieval and zero-shot metrics against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from jointembed.metrics.retrieval import class_embeddings, relevant_ranks, retrieval_metrics, zero_shot_accuracy

QUERY = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
GALLERY = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
# scores: q0 -> [1, .8, 0]; q1 -> [0, .6, 1]; q2 -> [.6, .96, .8]


def test_exact_pairs_by_index() -> None:
    assert relevant_ranks(QUERY, GALLERY).tolist() == [1, 2, 2]
    metrics = retrieval_metrics(QUERY, GALLERY, ks=(1, 2))
    assert metrics["R@1"] == pytest.approx(1 / 3)
    assert metrics["R@2"] == pytest.approx(1.0)
    assert metrics["MRR"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics["num_queries"] == 3


def test_same_label_counts_as_hit_and_minus_one_never_matches() -> None:
    labels = torch.tensor([0, 1, 1])
    assert relevant_ranks(QUERY, GALLERY, labels, labels).tolist() == [1, 1, 1]
    unknown = torch.tensor([0, -1, -1])
    assert relevant_ranks(QUERY, GALLERY, unknown, unknown).tolist() == [1, 2, 2]


def test_ids_pair_queries_with_a_larger_gallery_and_unmatched_queries_are_skipped() -> None:
    # gallery ids: g0 is example 7, g1 example 5, g2 example 9; query ids 5, 9, 4 (4 has no gallery item)
    ranks = relevant_ranks(QUERY, GALLERY, query_ids=torch.tensor([5, 9, 4]), gallery_ids=torch.tensor([7, 5, 9]))
    assert ranks.tolist() == [2, 1, 0]  # q0 -> g1 (.8 below g0's 1); q1 -> g2 (1.0, best)
    metrics = retrieval_metrics(QUERY, GALLERY, query_ids=torch.tensor([5, 9, 4]), gallery_ids=torch.tensor([7, 5, 9]))
    assert metrics["R@1"] == pytest.approx(0.5)
    assert metrics["MRR"] == pytest.approx(0.75)
    assert metrics["num_queries"] == 2


def test_ties_are_pessimistic() -> None:
    zeros = torch.zeros(4, 3)
    assert relevant_ranks(zeros, zeros).tolist() == [4, 4, 4, 4]
    assert retrieval_metrics(zeros, zeros)["R@1"] == 0.0


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="n == m"):
        retrieval_metrics(QUERY, GALLERY[:2])
    with pytest.raises(ValueError, match="both query_labels"):
        retrieval_metrics(QUERY, GALLERY, query_labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="relevant"):
        retrieval_metrics(QUERY, GALLERY, query_ids=torch.tensor([1, 2, 3]), gallery_ids=torch.tensor([4, 5, 6]))
    with pytest.raises(ValueError, match="k must be"):
        retrieval_metrics(QUERY, GALLERY, ks=(0,))


def test_zero_shot_accuracy_by_hand() -> None:
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.9, 0.1]])
    prompts = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.0, 1.0]]])  # (C=2, P=2, D=2)
    # class 0 = normalise(mean) = (0.8, 0.4) / 0.894; class 1 = (0, 1). Row 2 scores .894 vs .8 -> class 0.
    torch.testing.assert_close(class_embeddings(prompts)[0], torch.tensor([0.8, 0.4]) / (0.8**2 + 0.4**2) ** 0.5)
    assert zero_shot_accuracy(embeddings, torch.tensor([0, 1, 0, -1]), prompts) == pytest.approx(1.0)
    assert zero_shot_accuracy(embeddings, torch.tensor([0, 1, 1, -1]), prompts) == pytest.approx(2 / 3)
    assert zero_shot_accuracy(embeddings, torch.tensor([0, 1, 1, -1]), class_embeddings(prompts)) == pytest.approx(
        2 / 3
    )


def test_zero_shot_errors() -> None:
    with pytest.raises(ValueError, match="labelled"):
        zero_shot_accuracy(QUERY, torch.full((3,), -1), GALLERY)
    with pytest.raises(ValueError, match="no prompt"):
        zero_shot_accuracy(QUERY, torch.tensor([0, 1, 5]), GALLERY)


def test_non_finite_embeddings_score_worst_never_best() -> None:
    """A diverged model (NaN embeddings) once scored R@1 = MRR = 1.0 and perfect zero-shot accuracy."""
    nan = torch.full((4, 3), float("nan"))
    metrics = retrieval_metrics(nan, nan, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]))
    assert metrics["R@1"] == 0.0 and metrics["MRR"] == pytest.approx(1 / 4)
    inf = torch.eye(4, 3) * float("inf")
    assert retrieval_metrics(inf, inf)["R@1"] < 1.0
    assert zero_shot_accuracy(nan, torch.tensor([0, 0, 1, 1]), torch.eye(2, 3)) == 0.0
