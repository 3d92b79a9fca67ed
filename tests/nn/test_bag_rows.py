"""SparseEmbedding's merged sparse gradient (one row per distinct ID) against autograd's per-lookup gradient."""

from __future__ import annotations

import pytest
import torch

from jointembed.kernels import numba_available
from jointembed.nn import SparseEmbedding
from jointembed.sparse import SparseBatch

pytestmark = pytest.mark.skipif(not numba_available(), reason="the merged gradient needs numba")

BAGS = [[1, 3, 3, 0], [], [5, 1, 0, 0, 7], [0], [3]]
WEIGHTS = [[2.0, 1.0, 0.5, 3.0], [], [4.0, 1.0, 2.0, 1.0, 0.25], [1.5], [2.0]]


def _grads(combiner, weighted, padding_idx, dtype, merged, monkeypatch):
    torch.manual_seed(0)
    layer = SparseEmbedding(9, 4, combiner=combiner, padding_idx=padding_idx, sparse=True).to(dtype)
    batch = SparseBatch.from_lists(BAGS, weights=WEIGHTS if weighted else None)
    target = torch.randn(len(BAGS), 4, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with monkeypatch.context() as patch:
        if not merged:  # autograd's nn.EmbeddingBag path, one gradient row per lookup
            patch.setattr(SparseEmbedding, "_merges_gradient", lambda *_: False)
        out = layer(batch)
        (out * target).sum().backward()
    return out.detach(), layer.weight.grad


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("padding_idx", [None, 0])
def test_merged_gradient_equals_autograds(combiner, weighted, padding_idx, monkeypatch):
    out, grad = _grads(combiner, weighted, padding_idx, torch.float32, True, monkeypatch)
    ref_out, ref_grad = _grads(combiner, weighted, padding_idx, torch.float32, False, monkeypatch)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad.to_dense(), ref_grad.to_dense(), rtol=0, atol=1e-6)
    distinct = sorted({i for bag in BAGS for i in bag} - {padding_idx})
    rows = grad._indices()[0].tolist()
    assert rows == distinct  # one row per distinct ID, sorted (coalesced); the padding ID gets none
    assert ref_grad._nnz() > len(rows)


def test_float64_tables_and_inference_take_the_plain_path(monkeypatch):
    out, grad = _grads("mean", True, None, torch.float64, True, monkeypatch)
    ref_out, ref_grad = _grads("mean", True, None, torch.float64, False, monkeypatch)
    torch.testing.assert_close(grad.to_dense(), ref_grad.to_dense(), rtol=0, atol=1e-12)
    layer = SparseEmbedding(9, 4, sparse=True)
    with torch.no_grad():
        assert not layer(SparseBatch.from_lists(BAGS)).requires_grad


def test_merged_gradient_accumulates_over_two_backward_passes():
    torch.manual_seed(0)
    layer = SparseEmbedding(9, 4, sparse=True)
    dense = SparseEmbedding(9, 4, sparse=False)
    dense.load_state_dict(layer.state_dict())
    batch = SparseBatch.from_lists(BAGS)
    for module in (layer, dense):
        module(batch).sum().backward()
        module(batch).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad.to_dense(), dense.weight.grad, rtol=0, atol=1e-6)
