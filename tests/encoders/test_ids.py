import pytest
import torch

from jointembed.encoders import IdEncoder
from jointembed.sparse import SparseBatch


def test_bag_embedding_by_hand_without_tower():
    torch.manual_seed(0)
    encoder = IdEncoder(6, embedding_dim=3, combiner="sum", hidden_sizes=(), output_dim=2)
    batch = SparseBatch.from_lists([[1, 4, 4], [], [5]])
    table = encoder.embedding.weight
    expected = torch.stack([table[1] + 2 * table[4], torch.zeros(3), table[5]])
    torch.testing.assert_close(encoder.encode_backbone(batch), expected)
    assert encoder.feature_dim == 3


def test_tower_sets_feature_dim():
    encoder = IdEncoder(6, embedding_dim=3, hidden_sizes=(7, 5), output_dim=2)
    assert encoder.feature_dim == 5
    assert encoder(SparseBatch.from_lists([[0], [1, 2]])).shape == (2, 2)


def test_bad_inputs_are_named():
    encoder = IdEncoder(6, embedding_dim=3, output_dim=2)
    with pytest.raises(ValueError, match="ID 6 in bag 1 is out of range"):
        encoder(SparseBatch.from_lists([[0], [6]]))
    with pytest.raises(TypeError, match="expects a jointembed.sparse.SparseBatch, got list"):
        encoder([[0], [1]])


def test_sparse_gradients():
    encoder = IdEncoder(50, embedding_dim=4, sparse=True, output_dim=2)
    encoder(SparseBatch.from_lists([[1, 2], [3]])).sum().backward()
    assert encoder.embedding.weight.grad.is_sparse
