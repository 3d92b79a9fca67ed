import math

import pytest
import torch

from jointembed.nn import SparseEmbedding, suggest_embedding_dim
from jointembed.sparse import SparseBatch


@pytest.mark.parametrize(("n", "dim"), [(1, 2), (16, 2), (64, 3), (100, 3), (1682, 6), (10_000, 10), (1_000_000, 32)])
def test_rule_of_thumb(n, dim):
    assert suggest_embedding_dim(n) == dim


def test_rule_of_thumb_clamps_and_validates():
    assert suggest_embedding_dim(1_000_000, maximum=16) == 16
    assert suggest_embedding_dim(16, minimum=1) == 2
    assert suggest_embedding_dim(2, minimum=1) == 1
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_values must be a positive integer"):
            suggest_embedding_dim(bad)


def _layer(combiner, **kw):
    torch.manual_seed(0)
    return SparseEmbedding(6, 4, combiner=combiner, **kw)


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
def test_combiners_match_hand_computation(combiner):
    layer = _layer(combiner)
    batch = SparseBatch.from_lists([[1, 3, 3], [], [5]], weights=[[2.0, 1.0, 0.5], [], [4.0]])
    out = layer(batch)
    w = layer.weight.detach()
    weighted = 2.0 * w[1] + 1.0 * w[3] + 0.5 * w[3]
    norm = {"sum": 1.0, "mean": 3.5, "sqrtn": math.sqrt(4.0 + 1.0 + 0.25)}[combiner]
    torch.testing.assert_close(out[0], weighted / norm)
    torch.testing.assert_close(out[1], torch.zeros(4))  # empty bag
    expected_last = {"sum": 4.0 * w[5], "mean": w[5], "sqrtn": w[5]}[combiner]
    torch.testing.assert_close(out[2], expected_last)


def test_padding_idx_is_ignored_by_mean():
    layer = _layer("mean", padding_idx=0)
    out = layer(SparseBatch.from_lists([[0, 0, 2], [0]]))
    torch.testing.assert_close(out[0], layer.weight[2].detach())
    torch.testing.assert_close(out[1], torch.zeros(4))


def test_default_dim_and_gradients():
    layer = SparseEmbedding(10_000)
    assert layer.embedding_dim == 10 and layer.weight.shape == (10_000, 10)
    out = layer(SparseBatch.from_lists([[1, 2], [3]]))
    out.sum().backward()
    grad = layer.weight.grad
    assert grad.abs().sum(1).nonzero().flatten().tolist() == [1, 2, 3]


def test_sparse_gradients_train_with_sparse_adam():
    torch.manual_seed(0)
    layer = SparseEmbedding(1000, 8, sparse=True)
    target = torch.randn(2, 8)
    opt = torch.optim.SparseAdam(layer.parameters(), lr=0.1)
    batch = SparseBatch.from_lists([[1, 5, 9], [700]])
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = (layer(batch) - target).pow(2).mean()
        loss.backward()
        assert layer.weight.grad.is_sparse
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_bad_combiner():
    with pytest.raises(ValueError, match="combiner must be"):
        SparseEmbedding(5, 2, combiner="max")


def test_ids_outside_the_table_raise_naming_bag_and_id():
    layer = _layer("mean")  # 6 rows
    with pytest.raises(ValueError, match=r"ID 7 in bag 1 is out of range for this table of 6 embeddings"):
        layer(SparseBatch.from_lists([[1, 2], [3, 7]]))
    batch = SparseBatch.from_lists([[1], [], [2, 3]])
    batch.values[2] = -4  # tensors stay writable: the layer checks what it is given
    with pytest.raises(ValueError, match=r"ID -4 in bag 2 .*IDs must be in \[0, 6\)"):
        layer(batch)
    assert layer(SparseBatch.from_lists([[0, 5], []])).shape == (2, 4)  # both ends of the table are fine
