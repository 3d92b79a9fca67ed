import math

import numpy as np
import pytest
import torch

from jointembed.histories import Histories
from jointembed.metrics.ranking import (
    catalog_coverage,
    chunked_top_k,
    evaluate_rankings,
    hit_rate_at_k,
    ndcg_at_k,
    recall_at_k,
    topk_excluding_seen,
    topk_from_scorer,
)
from jointembed.sparse import SparseBatch

TOPK = np.array([[3, 7, 1], [0, 2, 4], [5, 6, -1], [3, 7, 1]])
TARGETS = [[7], [2, 4, 9, 8], [1], []]  # the last user has no target and is skipped
D2, D3 = 1 / math.log2(3), 1 / math.log2(4)  # discounts of ranks 2 and 3


def test_hand_computed_values():
    # user 0: hit at rank 2 of 1 target; user 1: hits at ranks 2, 3 of 4 targets; user 2: no hit
    assert ndcg_at_k(TOPK, TARGETS) == pytest.approx((D2 + (D2 + D3) / (1 + D2 + D3) + 0) / 3)
    assert recall_at_k(TOPK, TARGETS) == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert hit_rate_at_k(TOPK, TARGETS) == pytest.approx(2 / 3)
    per_user = ndcg_at_k(TOPK, TARGETS, per_user=True)
    assert per_user[0] == pytest.approx(D2) and per_user[2] == 0 and np.isnan(per_user[3])
    assert recall_at_k(TOPK, TARGETS, k=2) == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert hit_rate_at_k(TOPK, TARGETS, k=1) == 0.0
    assert catalog_coverage(TOPK, num_items=10) == pytest.approx(0.8)
    assert catalog_coverage(TOPK, num_items=10, k=1) == pytest.approx(0.3)


def test_perfect_ranking_scores_one():
    topk = np.array([[4, 2, 9]])
    assert ndcg_at_k(topk, [[2, 4, 9, 1, 0]]) == pytest.approx(1.0)  # more targets than k: min(k, |T|)
    assert recall_at_k(topk, [[2, 4, 9, 1, 0]]) == pytest.approx(1.0)
    assert ndcg_at_k(topk, [[4, 4]]) == pytest.approx(1.0)  # repeated targets count once


def test_evaluate_rankings_matches_functions_and_selects_users():
    targets = Histories.from_lists(TARGETS, num_items=10)
    result = evaluate_rankings(torch.from_numpy(TOPK), targets, num_items=10, ks=[1, 3])
    assert result["ndcg@3"] == pytest.approx(ndcg_at_k(TOPK, TARGETS))
    assert result["recall@3"] == pytest.approx(5 / 9)
    assert result["hr@1"] == 0.0 and result["coverage@1"] == pytest.approx(0.3)
    assert result["num_users"] == 3
    as_bags = evaluate_rankings(TOPK, SparseBatch.from_lists(TARGETS), num_items=10, ks=[1, 3])
    assert as_bags == result
    picked = evaluate_rankings(TOPK[[1]], targets, num_items=10, users=[1])
    assert picked["recall@3"] == pytest.approx(2 / 3) and picked["num_users"] == 1


def test_input_errors():
    with pytest.raises(ValueError, match="repeats an item"):
        recall_at_k(np.array([[1, 1]]), [[1]])
    with pytest.raises(ValueError, match="2 rows but targets has 1"):
        recall_at_k(np.array([[1], [2]]), [[1]])
    with pytest.raises(ValueError, match="k must be in"):
        recall_at_k(TOPK, TARGETS, k=4)


def test_topk_excluding_seen():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.3, 0.2, 0.1]])
    seen = Histories.from_lists([[1], [0, 1, 2]], num_items=4)
    top = topk_excluding_seen(scores, seen, k=2)
    assert top.tolist() == [[2, 3], [3, -1]]  # -1: only one unseen item left
    assert scores[0, 1] == pytest.approx(0.9)  # not modified
    assert topk_excluding_seen(scores, None, k=5).tolist() == [[1, 2, 3, 0, -1], [0, 1, 2, 3, -1]]
    by_user = topk_excluding_seen(scores[[1]], seen, k=1, users=[0])  # row 0 of seen applies
    assert by_user.tolist() == [[0]]


def test_topk_from_scorer_chunks_agree():
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(30, 50, generator=gen)
    seen = Histories.from_lists([list(range(u % 7)) for u in range(30)], num_items=50)
    users = np.array([5, 2, 29, 0, 11, 17, 3])
    full = topk_excluding_seen(table[users], seen, k=6, users=users)
    for chunk_size in (1, 3, 100):
        got = topk_from_scorer(lambda u: table[torch.from_numpy(u)], users, seen, k=6, chunk_size=chunk_size)
        assert torch.equal(got, full)
    assert not set(got[1].tolist()) & set(seen.get(2).tolist())  # user 2 has seen items 0 and 1


def test_chunked_top_k_one_ranking_for_bags_histories_and_users():
    gen = torch.Generator().manual_seed(1)
    table = torch.rand(9, 20, generator=gen)
    rows = [[u, (u * 3) % 20, 19] for u in range(9)]
    brute = table.clone()
    for u, row in enumerate(rows):
        brute[u, row] = float("-inf")
    expected = brute.topk(5)
    for chunk_size in (1, 4, 100):
        for seen in (SparseBatch.from_lists(rows), Histories.from_lists(rows, num_items=20), rows):
            ids, scores = chunked_top_k(lambda r: table[r].clone(), 9, 5, seen, chunk_size=chunk_size)
            assert torch.equal(ids, expected.indices) and torch.equal(scores, expected.values)
    # by user ID: query i is user users[i] of the Histories
    users = np.array([8, 0, 3])
    ids, _ = chunked_top_k(lambda r: table[users[r]].clone(), 3, 5, Histories.from_lists(rows, 20), users, chunk_size=2)
    assert torch.equal(ids, expected.indices[users])


def test_chunked_top_k_pads_and_names_errors():
    scores = torch.tensor([[0.5, float("-inf"), 0.1]])
    ids, values = chunked_top_k(lambda r: scores[r].clone(), 1, 4, [[2]], chunk_size=8)
    assert ids.tolist() == [[0, -1, -1, -1]] and values[0, 0] == 0.5 and torch.isinf(values[0, 1:]).all()
    empty_ids, empty_scores = chunked_top_k(lambda r: scores[r], 0, 3, chunk_size=8)
    assert empty_ids.shape == empty_scores.shape == (0, 3) and empty_ids.dtype == torch.long
    with pytest.raises(ValueError, match="seen has 2 rows but there are 1 queries"):
        chunked_top_k(lambda r: scores[r].clone(), 1, 2, [[0], [1]], chunk_size=8)
    with pytest.raises(ValueError, match="seen holds item 7 but the scores have only 3 columns"):
        chunked_top_k(lambda r: scores[r].clone(), 1, 2, SparseBatch.from_lists([[7]]), chunk_size=8)
    with pytest.raises(ValueError, match=r"the scorer returned shape \(1, 3\) for 2 query rows"):
        chunked_top_k(lambda r: scores.clone(), 2, 2, chunk_size=8)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        chunked_top_k(lambda r: scores[r], 1, 0, chunk_size=8)


def test_non_finite_scores_are_never_recommended() -> None:
    """NaN scores once fell back to a popularity-like order and a plausible HR@10."""
    from jointembed.metrics.ranking import chunked_top_k

    scores = torch.tensor([[float("nan"), 0.5, float("inf"), 0.1], [float("nan")] * 4])
    ids, top = chunked_top_k(lambda rows: scores[rows].clone(), 2, 3, chunk_size=1)
    assert ids.tolist() == [[1, 3, -1], [-1, -1, -1]]
