"""Contract tests run on every registered loss: it builds from its defaults, its forward gives a finite scalar and
its backward finite gradients.

Losses come in two kinds, told apart by their base class, each with the inputs its ``forward`` takes:

- pair losses (:class:`~jointembed.losses.info_nce.ScaledPairLoss`): ``loss(a (n, D), b (n, D), positives)``,
  built with no arguments;
- catalogue losses (:class:`~jointembed.losses.sampled_softmax.CatalogueLoss`): ``loss(user_vectors (B, d),
  item_table (N, d), item_bias (N, 1), targets (B,))``, built with their documented required argument
  ``num_items`` (and the item ``counts`` when their defaults need them), as the recommendation task builds them.

A loss of a new kind fails here until its inputs are added.
"""

import pytest
import torch
import torch.nn.functional as F

from jointembed.losses.info_nce import ScaledPairLoss
from jointembed.losses.sampled_softmax import CatalogueLoss
from jointembed.registry import create_loss, get_loss_class, list_losses

NUM_ITEMS, DIM, BATCH = 12, 4, 5


def _build(name: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """The loss built from its defaults, and a seeded tiny input set whose float tensors require gradients."""
    cls = get_loss_class(name)
    gen = torch.Generator().manual_seed(0)
    if issubclass(cls, CatalogueLoss):
        counts = {"counts": torch.arange(NUM_ITEMS, dtype=torch.float32)} if cls.needs_counts({}) else {}
        loss = create_loss(name, num_items=NUM_ITEMS, **counts)
        users = torch.randn(BATCH, DIM, generator=gen, requires_grad=True)
        table = torch.nn.Parameter(torch.randn(NUM_ITEMS, DIM, generator=gen))
        bias = torch.nn.Parameter(torch.randn(NUM_ITEMS, 1, generator=gen))
        return loss, (users, table, bias, torch.tensor([0, 3, 3, 7, 11]))
    if issubclass(cls, ScaledPairLoss):
        a = F.normalize(torch.randn(BATCH, DIM, generator=gen), dim=1).requires_grad_()
        b = F.normalize(torch.randn(BATCH, DIM, generator=gen), dim=1).requires_grad_()
        return create_loss(name), (a, b, None)
    pytest.fail(f"loss {name!r} ({cls.__qualname__}) is of a kind this contract test has no inputs for: add them")


def _finite(grad: torch.Tensor) -> bool:
    values = grad.coalesce().values() if grad.is_sparse else grad
    return bool(torch.isfinite(values).all())


@pytest.mark.parametrize("name", list_losses())
def test_builds_from_defaults_and_is_registered_under_its_name(name):
    loss, _ = _build(name)
    assert isinstance(loss, get_loss_class(name)) and loss.registry_name == name


@pytest.mark.parametrize("name", list_losses())
def test_forward_is_a_finite_scalar_and_backward_finite_gradients(name):
    torch.manual_seed(0)  # the sampled softmax draws its negatives from the global generator
    loss, inputs = _build(name)
    value = loss(*inputs)
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad] + list(loss.parameters())
    for leaf in leaves:
        assert leaf.grad is not None and _finite(leaf.grad), f"{name}: no or non-finite gradient"
    assert any(_finite(t.grad) and t.grad.to_dense().abs().sum() > 0 for t in leaves[:2])
