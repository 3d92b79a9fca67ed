import math

import pytest
import torch
import torch.nn.functional as F

from jointembed.losses.sampled_softmax import (
    FullSoftmaxLoss,
    InBatchSoftmaxLoss,
    SampledSoftmaxLoss,
    catalogue_losses,
    create_catalogue_loss,
    proposal_log_probs,
)


def _tables(num_items=6, dim=3, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(batch, dim, generator=g)
    table = torch.randn(num_items, dim, generator=g)
    bias = torch.randn(num_items, 1, generator=g)
    return users, table, bias


def test_proposal_log_probs_by_hand():
    torch.testing.assert_close(proposal_log_probs(4, "uniform"), torch.full((4,), -math.log(4)))
    counts = torch.tensor([0.0, 1.0, 15.0])
    weights = [1.0, 2.0**0.75, 16.0**0.75]  # (count + 1) ** 0.75
    expected = torch.tensor([math.log(w / sum(weights)) for w in weights])
    torch.testing.assert_close(proposal_log_probs(3, "unigram", counts), expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"proposal": "unigram"}, "needs item counts"),
        ({"proposal": "zipf"}, "'uniform' or 'unigram'"),
        ({"proposal": "unigram", "counts": torch.ones(2)}, "2 entries"),
        ({"proposal": "unigram", "counts": torch.tensor([1.0, -1.0, 0.0])}, "non-negative"),
    ],
)
def test_proposal_log_probs_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        proposal_log_probs(3, **kwargs)


def test_log_expected_count_is_log_of_num_samples_times_q():
    uniform = SampledSoftmaxLoss(10, num_samples=5, proposal="uniform")
    torch.testing.assert_close(uniform.log_expected_count(torch.tensor([0, 9])), torch.full((2,), math.log(0.5)))
    counts = torch.tensor([3.0, 0.0, 0.0, 0.0])  # weights (c + 1)^1: 4, 1, 1, 1 -> q = 4/7, 1/7, ...
    unigram = SampledSoftmaxLoss(4, num_samples=7, proposal="unigram", counts=counts, alpha=1.0)
    torch.testing.assert_close(unigram.log_expected_count(torch.tensor([0, 1])), torch.tensor([math.log(4.0), 0.0]))


def test_sampled_loss_with_forced_negatives_matches_hand_computation():
    users, table, bias = _tables()
    counts = torch.tensor([5.0, 0.0, 2.0, 1.0, 9.0, 3.0])
    loss_fn = SampledSoftmaxLoss(6, num_samples=3, proposal="unigram", counts=counts)
    targets = torch.tensor([1, 4])
    negatives = torch.tensor([0, 4, 2])  # 4 is user 1's own target: an accidental hit
    q = (counts + 1) ** 0.75
    q = q / q.sum()
    expected = 0.0
    for i in range(2):

        def logit(j, i=i):
            return float(users[i] @ table[j] + bias[j, 0] - math.log(3 * q[j]))

        target = logit(int(targets[i]))
        others = [logit(int(j)) for j in negatives if int(j) != int(targets[i])]
        expected += -target + math.log(sum(math.exp(v) for v in [target, *others]))
    loss = loss_fn(users, table, bias, targets, negatives=negatives)
    torch.testing.assert_close(loss, torch.tensor(expected / 2))


def test_accidental_hits_are_masked_only_when_asked():
    users, table, bias = _tables()
    targets = torch.tensor([2, 3])
    masked = SampledSoftmaxLoss(6, 4, "uniform")
    kept = SampledSoftmaxLoss(6, 4, "uniform", remove_accidental_hits=False)
    with_hit = torch.tensor([2, 0, 2, 5])
    without = torch.tensor([0, 5])
    # Masked hits drop out; the remaining columns keep the correction of S = 4 samples.
    loss_masked = masked(users[:1], table, bias, targets[:1], negatives=with_hit)
    torch.testing.assert_close(loss_masked, masked(users[:1], table, bias, targets[:1], negatives=without))
    assert kept(users[:1], table, bias, targets[:1], negatives=with_hit) > loss_masked


def test_sampled_loss_approaches_full_loss_plus_log_correction():
    # For S >> N the samples' term estimates Σ_j exp(logit_j), so sampled = full + log(S q_target).
    torch.manual_seed(0)
    users, table, bias = _tables(num_items=50, dim=4, batch=8)
    targets = torch.randint(0, 50, (8,))
    num_samples = 200_000
    sampled = SampledSoftmaxLoss(50, num_samples, "uniform", remove_accidental_hits=False)(users, table, bias, targets)
    full = FullSoftmaxLoss(50)(users, table, bias, targets)
    torch.testing.assert_close(sampled, full + math.log(num_samples / 50), atol=0.02, rtol=0)


def test_sampled_gradient_trends_to_full_softmax_gradient():
    torch.manual_seed(0)
    num_items = 300
    counts = torch.randint(0, 100, (num_items,)).float()
    users, table, bias = _tables(num_items=num_items, dim=8, batch=16)
    users.requires_grad_(True)
    targets = torch.randint(0, num_items, (16,))
    (full_grad,) = torch.autograd.grad(FullSoftmaxLoss(num_items)(users, table, bias, targets), users)

    def cosine(num_samples):
        loss_fn = SampledSoftmaxLoss(num_items, num_samples, "unigram", counts)
        grads = [torch.autograd.grad(loss_fn(users, table, bias, targets), users)[0] for _ in range(20)]
        return F.cosine_similarity(torch.stack(grads).mean(0).flatten(), full_grad.flatten(), dim=0)

    small, large = cosine(5), cosine(2000)
    assert large > 0.99
    assert large > small


def test_sampler_follows_the_proposal():
    counts = torch.tensor([0.0, 10.0, 100.0, 1000.0])
    loss_fn = SampledSoftmaxLoss(4, num_samples=200_000, proposal="unigram", counts=counts)
    draws = loss_fn.sample(torch.Generator().manual_seed(0))
    assert draws.shape == (200_000,) and int(draws.min()) >= 0 and int(draws.max()) <= 3
    frequency = torch.bincount(draws, minlength=4).float() / 200_000
    torch.testing.assert_close(frequency, loss_fn.log_q.exp(), atol=5e-3, rtol=0)
    uniform = SampledSoftmaxLoss(7, num_samples=50, proposal="uniform").sample()
    assert uniform.shape == (50,) and int(uniform.max()) < 7


def test_sampled_loss_gives_sparse_gradients_to_table_and_bias():
    table = torch.nn.Parameter(torch.randn(1000, 4))
    bias = torch.nn.Parameter(torch.zeros(1000, 1))
    users = torch.randn(3, 4, requires_grad=True)
    loss = SampledSoftmaxLoss(1000, 10, "uniform")(users, table, bias, torch.tensor([1, 2, 3]))
    loss.backward()
    assert table.grad.is_sparse and bias.grad.is_sparse
    assert table.grad.coalesce()._nnz() <= 13
    assert users.grad.shape == (3, 4) and torch.isfinite(users.grad).all()


def test_full_softmax_is_cross_entropy_of_all_logits():
    users, table, bias = _tables()
    targets = torch.tensor([0, 5])
    expected = F.cross_entropy(users @ table.T + bias.T, targets)
    torch.testing.assert_close(FullSoftmaxLoss(6)(users, table, bias, targets), expected)
    torch.testing.assert_close(FullSoftmaxLoss(6)(users, table, bias[:, 0], targets), expected)


def test_in_batch_loss_by_hand_with_duplicates_and_log_q():
    users, table, bias = _tables(batch=3)
    counts = torch.tensor([1.0, 3.0, 0.0, 7.0, 0.0, 0.0])
    log_q = torch.log((counts + 1) / (counts + 1).sum())
    targets = torch.tensor([1, 3, 1])  # examples 0 and 2 share their target
    loss = InBatchSoftmaxLoss(6, counts)(users, table, bias, targets)
    expected = 0.0
    for i in range(3):
        logits = {j: float(users[i] @ table[targets[j]] + bias[targets[j], 0] - log_q[targets[j]]) for j in range(3)}
        negatives = [logits[j] for j in range(3) if j == i or int(targets[j]) != int(targets[i])]
        expected += -logits[i] + math.log(sum(math.exp(v) for v in negatives))
    torch.testing.assert_close(loss, torch.tensor(expected / 3))
    plain = InBatchSoftmaxLoss(6, proposal="uniform")(users, table, bias, targets)
    assert torch.isfinite(plain) and not torch.isclose(plain, loss)


def test_shape_errors_are_named():
    users, table, bias = _tables()
    with pytest.raises(ValueError, match="targets must have shape"):
        FullSoftmaxLoss(6)(users, table, bias, torch.tensor([1]))
    with pytest.raises(ValueError, match="item_bias must have shape"):
        InBatchSoftmaxLoss(6, proposal="uniform")(users, table, bias[:3], torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="built for 7"):
        SampledSoftmaxLoss(7, 2, "uniform")(users, table, bias, torch.tensor([1, 2]))


def test_catalogue_losses_are_registered_and_built_by_name():
    assert catalogue_losses() == ["full_softmax", "in_batch_softmax", "sampled_softmax"]
    counts = torch.arange(6.0)
    sampled = create_catalogue_loss("sampled_softmax", 6, counts, sparse_gradients=False, num_samples=4)
    assert isinstance(sampled, SampledSoftmaxLoss) and sampled.registry_name == "sampled_softmax"
    assert (sampled.num_items, sampled.num_samples, sampled.sparse_gradients) == (6, 4, False)
    torch.testing.assert_close(sampled.log_q, proposal_log_probs(6, "unigram", counts))
    # counts go only where the arguments need them: a uniform proposal and the full softmax take none
    assert create_catalogue_loss("in_batch_softmax", 6, proposal="uniform").log_q is None
    assert isinstance(create_catalogue_loss("full_softmax", 6, counts), FullSoftmaxLoss)
    with pytest.raises(ValueError, match="needs item counts"):
        create_catalogue_loss("in_batch_softmax", 6)
    with pytest.raises(ValueError, match=r"'info_nce' does not score an item catalogue; catalogue losses: \["):
        create_catalogue_loss("info_nce", 6)
    with pytest.raises(KeyError, match="unknown loss 'full'"):
        create_catalogue_loss("full", 6)


def _masked_cross_entropy(loss, users, table, bias, targets, negatives):
    """The sampled softmax written out per target: (B, 1 + S) logits, hits masked to -inf, cross-entropy."""
    ids = torch.cat([targets, negatives])
    logits = users @ table[ids].T + bias[ids].squeeze(1) - loss.log_expected_count(ids)
    target_logits, sample_logits = (
        logits[torch.arange(len(targets)), torch.arange(len(targets))],
        logits[:, -len(negatives) :],
    )
    if loss.remove_accidental_hits:
        sample_logits = sample_logits.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    full = torch.cat([target_logits[:, None], sample_logits], 1)
    return F.cross_entropy(full, torch.zeros(len(targets), dtype=torch.long))


@pytest.mark.parametrize("remove_hits", [True, False])
def test_sampled_loss_per_user_matches_the_per_target_cross_entropy(remove_hits):
    # Three users with 3, 1 and 2 targets; target 2 is drawn three times, target 4 once, target 0 never.
    users, table, bias = _tables(num_items=8, dim=4, batch=3, seed=3)
    user_index = torch.tensor([0, 0, 0, 1, 2, 2])
    targets = torch.tensor([2, 4, 0, 2, 7, 4])
    negatives = torch.tensor([2, 5, 2, 4, 1, 2, 6])
    loss = SampledSoftmaxLoss(8, 7, "uniform", remove_accidental_hits=remove_hits)
    leaves = [t.clone().requires_grad_() for t in (users, table, bias)]
    grouped = loss(leaves[0], leaves[1], leaves[2], targets, negatives=negatives, user_index=user_index)
    grouped.backward()
    expanded = [t.clone().requires_grad_() for t in (users, table, bias)]
    reference = _masked_cross_entropy(loss, expanded[0][user_index], expanded[1], expanded[2], targets, negatives)
    reference.backward()
    torch.testing.assert_close(grouped, reference)
    for ours, theirs in zip(leaves, expanded, strict=True):
        torch.testing.assert_close(ours.grad.to_dense(), theirs.grad)  # the table's and bias's are sparse
    per_target = loss(users[user_index], table, bias, targets, negatives=negatives)  # no user_index: one each
    torch.testing.assert_close(per_target, reference.detach())


def test_a_target_that_is_every_sample_has_zero_loss():
    users, table, bias = _tables(num_items=5, dim=3, batch=1)
    loss = SampledSoftmaxLoss(5, 4, "uniform")
    value = loss(users, table, bias, torch.tensor([3]), negatives=torch.tensor([3, 3, 3, 3]))
    torch.testing.assert_close(value, torch.tensor(0.0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["full_softmax", "in_batch_softmax"])
def test_other_losses_take_one_vector_per_user(name):
    users, table, bias = _tables(num_items=8, dim=4, batch=3, seed=4)
    user_index, targets = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([1, 5, 2, 5, 7])
    loss = create_catalogue_loss(name, 8, proposal="uniform") if name == "in_batch_softmax" else FullSoftmaxLoss(8)
    torch.testing.assert_close(
        loss(users, table, bias, targets, user_index=user_index), loss(users[user_index], table, bias, targets)
    )
    with pytest.raises(ValueError, match="same shape"):
        loss(users, table, bias, targets, user_index=user_index[:2])
