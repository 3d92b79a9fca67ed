"""Softmax losses over an item catalogue: full, sampled (with log-Q correction) and in-batch negatives.

Each loss takes the user vectors ``(B, d)``, the item table ``(N, d)``, the item bias (``(N, 1)`` or ``(N,)``, or
``None``) and the target item of each example ``(B,)`` (never the model), and returns the mean cross-entropy of
the target among the items scored. The score of item ``j`` for user ``u`` is ``u · W[j] + b[j]``. When a user
has several targets, pass each user's vector once, ``(U, d)``, with ``user_index`` ``(B,)`` giving each target's
user: the full and sampled softmax then score the catalogue (or the samples) once per user, not per target.

- ``full_softmax`` (:class:`FullSoftmaxLoss`) scores every item: exact, but ``O(B · N)``; for catalogues up to
  ~100k items.
- ``sampled_softmax`` (:class:`SampledSoftmaxLoss`) scores the target and ``S`` negatives drawn from a proposal
  ``Q`` shared by the batch, and subtracts ``log(S · Q(j))`` (the expected number of times ``j`` is drawn) from
  every logit, which makes the sampled softmax's gradient a consistent estimate of the full softmax's (Jean et
  al. 2015; Bengio & Senécal 2008). Only ``B + S`` rows of the table get a gradient, so they can be sparse.
- ``in_batch_softmax`` (:class:`InBatchSoftmaxLoss`) uses the other examples' targets as negatives, corrected by
  each item's popularity under the ``unigram`` proposal (Yi et al. 2019): popular items are over-represented
  among in-batch negatives, and the correction stops the model from learning to push them down.

They are registered in :mod:`jointembed.registry` like the contrastive losses, so a task chooses one by name
with its constructor arguments (``loss: sampled_softmax``, ``loss_config: {num_samples: 500}``);
:func:`create_catalogue_loss` adds what the data decides (catalogue size, item counts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jointembed.registry import create_loss, get_loss_class, list_losses, register_loss

__all__ = [
    "CatalogueLoss",
    "FullSoftmaxLoss",
    "SampledSoftmaxLoss",
    "InBatchSoftmaxLoss",
    "proposal_log_probs",
    "create_catalogue_loss",
    "catalogue_losses",
]

Proposal = Literal["uniform", "unigram"]


def proposal_log_probs(
    num_items: int,
    proposal: Proposal = "unigram",
    counts: torch.Tensor | None = None,
    alpha: float = 0.75,
    smoothing: float = 1.0,
) -> torch.Tensor:
    """``(N,)`` log-probabilities of a proposal distribution over the items.

    Args:
        num_items: Catalogue size N.
        proposal: ``uniform`` (``1/N`` each) or ``unigram`` (``∝ (counts + smoothing) ** alpha``).
        counts: ``(N,)`` non-negative item counts (e.g. training interactions); required for ``unigram``.
        alpha: Exponent flattening the unigram distribution (0.75 as in word2vec; 1 is the raw frequency).
        smoothing: Added to every count so that an unseen item has a non-zero probability (and a finite
            correction).

    Raises:
        ValueError: Unknown proposal, missing or malformed counts, or ``alpha``/``smoothing`` out of range.
    """
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    if proposal == "uniform":
        return torch.full((num_items,), -math.log(num_items))
    if proposal != "unigram":
        raise ValueError(f"proposal must be 'uniform' or 'unigram', got {proposal!r}")
    if counts is None:
        raise ValueError("proposal='unigram' needs item counts: pass counts=(num_items,) tensor, or use 'uniform'")
    counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if counts.numel() != num_items:
        raise ValueError(f"counts has {counts.numel()} entries but num_items={num_items}")
    if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
        raise ValueError("counts must be finite and non-negative")
    if alpha < 0 or smoothing < 0:
        raise ValueError(f"alpha and smoothing must be >= 0, got alpha={alpha}, smoothing={smoothing}")
    weights = (counts + smoothing) ** alpha
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("all proposal weights are zero: give positive counts or smoothing > 0")
    return (weights / total).log().float()


def _gather_rows(
    ids: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None, sparse: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows ``table[ids]`` ``(M, d)`` and ``bias[ids]`` ``(M,)``, through ``F.embedding`` so that the gradient
    reaching the full tables can be sparse (``index_select`` would produce a dense ``(N, d)`` gradient).

    A sparse gradient cannot flow back through a reshape, so only an ``(N, 1)`` bias gets one; an ``(N,)`` bias
    gets a dense gradient.
    """
    rows = F.embedding(ids, table, sparse=sparse)
    if bias is None:
        return rows, None
    if bias.dim() == 2:
        return rows, F.embedding(ids, bias, sparse=sparse).squeeze(1)
    return rows, bias[ids]


def _check_bias(item_bias: torch.Tensor | None, num_items: int) -> None:
    if item_bias is not None and item_bias.shape not in ((num_items,), (num_items, 1)):
        raise ValueError(f"item_bias must have shape ({num_items},) or ({num_items}, 1), got {tuple(item_bias.shape)}")


def _hit_counts(negatives: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B,)`` how many times each target was drawn among the ``(S,)`` negatives (its accidental hits)."""
    drawn = torch.sort(negatives).values
    return torch.searchsorted(drawn, targets, right=True) - torch.searchsorted(drawn, targets)


def _per_target(user_vectors: torch.Tensor, user_index: torch.Tensor | None) -> torch.Tensor:
    """``(B, d)`` each target's user vector: ``user_vectors`` itself, or its rows ``user_index``."""
    return user_vectors if user_index is None else user_vectors[user_index]


class CatalogueLoss(nn.Module):
    """Base of the softmax losses over an item catalogue (what
    :class:`~jointembed.tasks.recommendation.RecommendationTask` trains with).

    ``forward(user_vectors (B, d), item_table (N, d), item_bias (N,) / (N, 1) or None, targets (B,),
    user_index=None) -> scalar``; with ``user_index`` ``(B,)``, ``user_vectors`` is ``(U, d)`` and target ``i``
    belongs to user ``user_index[i]``.
    Every subclass is registered and takes ``num_items`` and ``sparse_gradients`` first, plus ``counts`` (the
    ``(N,)`` training count of each item) when :meth:`needs_counts` says its arguments need them; use
    :func:`create_catalogue_loss` to build one by name.

    Args:
        num_items: Catalogue size N; the item table must have N rows.
        sparse_gradients: Gather the rows a loss scores so that the table and bias get sparse gradients (for
            tables stepped by a sparse optimiser); a loss that scores every row gives a dense gradient anyway.
    """

    def __init__(self, num_items: int, sparse_gradients: bool = True) -> None:
        super().__init__()
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items must be an integer >= 1, got {num_items!r}")
        self.num_items = num_items
        self.sparse_gradients = sparse_gradients

    @classmethod
    def needs_counts(cls, config: Mapping[str, Any]) -> bool:
        """Whether a loss built with constructor arguments ``config`` (besides ``num_items``) needs ``counts``."""
        return False

    def check_inputs(
        self,
        user_vectors: torch.Tensor,
        item_table: torch.Tensor,
        item_bias: torch.Tensor | None,
        targets: torch.Tensor,
        user_index: torch.Tensor | None = None,
    ) -> None:
        """Raise a ``ValueError`` naming the first argument of ``forward`` whose shape does not fit."""
        if user_vectors.dim() != 2 or item_table.dim() != 2 or user_vectors.shape[1] != item_table.shape[1]:
            raise ValueError(
                f"need user_vectors (B, d) and item_table (N, d), got {tuple(user_vectors.shape)} and "
                f"{tuple(item_table.shape)}"
            )
        if item_table.shape[0] != self.num_items:
            raise ValueError(f"item_table has {item_table.shape[0]} rows but the loss was built for {self.num_items}")
        if user_index is None and targets.shape != (user_vectors.shape[0],):
            raise ValueError(f"targets must have shape ({user_vectors.shape[0]},), got {tuple(targets.shape)}")
        if user_index is not None and (targets.dim() != 1 or user_index.shape != targets.shape):
            raise ValueError(
                f"targets and user_index must have the same shape (B,), got {tuple(targets.shape)} and "
                f"{tuple(user_index.shape)}"
            )
        _check_bias(item_bias, item_table.shape[0])

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}"


@register_loss("full_softmax")
class FullSoftmaxLoss(CatalogueLoss):
    """Cross-entropy of the softmax over the whole catalogue.

    The table's gradient is dense (every row gets one), whatever ``sparse_gradients`` says.

    Args:
        num_items: Catalogue size N.
        sparse_gradients: Accepted like every catalogue loss's; it changes nothing here.
    """

    def __init__(self, num_items: int, sparse_gradients: bool = True) -> None:
        super().__init__(num_items, sparse_gradients)

    def forward(
        self,
        user_vectors: torch.Tensor,
        item_table: torch.Tensor,
        item_bias: torch.Tensor | None,
        targets: torch.Tensor,
        user_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy of ``targets`` ``(B,)`` over all N logits; shapes as :class:`CatalogueLoss`."""
        self.check_inputs(user_vectors, item_table, item_bias, targets, user_index)
        logits = user_vectors @ item_table.T
        if item_bias is not None:
            logits = logits + item_bias.reshape(-1)
        if user_index is None:
            return F.cross_entropy(logits, targets)
        return -logits.log_softmax(1)[user_index, targets].mean()  # each user's softmax once


@register_loss("sampled_softmax")
class SampledSoftmaxLoss(CatalogueLoss):
    """Softmax over the target and ``num_samples`` negatives drawn from a proposal ``Q``, with log-Q correction.

    Each step draws ``S = num_samples`` item IDs with replacement from ``Q``, shared by the whole batch. The
    logit of item ``j`` (target or sample) becomes ``u · W[j] + b[j] - log(S · Q(j))``. With
    ``remove_accidental_hits`` a sample equal to the example's own target is masked to ``-inf`` (it would
    otherwise count the positive as a negative). The loss is the cross-entropy with the target at index 0.

    Its value is not the full-softmax loss: for large ``S`` it approaches ``full + log(S · Q(target))``,
    a constant per target, so the gradients agree while the numbers differ.

    Args:
        num_items: Catalogue size N.
        num_samples: Negatives per step S.
        proposal: ``uniform`` or ``unigram`` (``∝ (counts + 1) ** alpha``).
        counts: ``(N,)`` training counts of each item; required for ``unigram``.
        alpha: Unigram exponent.
        remove_accidental_hits: Mask samples that equal the example's target.
        sparse_gradients: Gather the target and sampled rows so that the table and bias get sparse gradients
            (for ``SparseEmbedding``-style tables stepped by a sparse optimiser).
    """

    def __init__(
        self,
        num_items: int,
        num_samples: int = 1000,
        proposal: Proposal = "unigram",
        counts: torch.Tensor | None = None,
        alpha: float = 0.75,
        remove_accidental_hits: bool = True,
        sparse_gradients: bool = True,
    ) -> None:
        super().__init__(num_items, sparse_gradients)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.proposal = proposal
        self.remove_accidental_hits = remove_accidental_hits
        log_q = proposal_log_probs(num_items, proposal, counts, alpha)
        # Buffers rebuilt from the counts each run, not state: non-persistent keeps checkpoints independent of them.
        self.register_buffer("log_q", log_q, persistent=False)
        self.register_buffer("cdf", torch.cumsum(log_q.double().exp(), 0).float(), persistent=False)

    @classmethod
    def needs_counts(cls, config: Mapping[str, Any]) -> bool:
        """A ``unigram`` proposal (the default) is built from the item counts."""
        return config.get("proposal", "unigram") == "unigram"

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num_samples,)`` int64 item IDs drawn with replacement from the proposal."""
        device = self.cdf.device
        if self.proposal == "uniform":
            return torch.randint(self.num_items, (self.num_samples,), device=device, generator=generator)
        # Inverse-CDF sampling: O(S log N) per step where torch.multinomial would rebuild the CDF (O(N)) each call.
        u = torch.rand(self.num_samples, device=device, generator=generator) * self.cdf[-1]
        return torch.searchsorted(self.cdf, u, right=True).clamp_(max=self.num_items - 1)

    def log_expected_count(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``log(S · Q(j))`` for each ID: the log-Q correction subtracted from item ``j``'s logit."""
        return self.log_q[item_ids] + math.log(self.num_samples)

    def forward(
        self,
        user_vectors: torch.Tensor,
        item_table: torch.Tensor,
        item_bias: torch.Tensor | None,
        targets: torch.Tensor,
        negatives: torch.Tensor | None = None,
        user_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean sampled-softmax loss.

        Each user's sampled logits are computed once, however many targets it has, and a target's accidental
        hits are taken out of its user's log-sum-exp in closed form (they all have the target's own logit), so
        no ``(B, S)`` matrix is built per target.

        Args:
            user_vectors: ``(B, d)``, or ``(U, d)`` with ``user_index``.
            item_table: ``(N, d)`` output item embeddings.
            item_bias: ``(N, 1)`` or ``(N,)`` per-item bias, or ``None``; pass the ``(N, 1)`` parameter itself
                for a sparse gradient.
            targets: ``(B,)`` int64 target item of each example.
            negatives: ``(S',)`` int64 IDs to use instead of sampling (tests, or a caller's own sampler); they are
                still corrected with ``log(S · Q(j))`` of this loss's ``S``.
            user_index: ``(B,)`` int64 row of ``user_vectors`` of each target's user, or ``None`` (one each).

        Returns:
            Scalar loss.
        """
        self.check_inputs(user_vectors, item_table, item_bias, targets, user_index)
        if negatives is None:
            negatives = self.sample()
        batch = targets.shape[0]
        rows, bias = _gather_rows(torch.cat([targets, negatives]), item_table, item_bias, self.sparse_gradients)
        target_offset = -self.log_expected_count(targets)
        sample_offset = -self.log_expected_count(negatives)
        if bias is not None:
            target_offset = target_offset + bias[:batch]
            sample_offset = sample_offset + bias[batch:]
        target_logits = (_per_target(user_vectors, user_index) * rows[:batch]).sum(1) + target_offset
        # (U, S) logits of each user's samples; a target's logit equals that of each of its own hits among them.
        user_lse = torch.logsumexp(torch.addmm(sample_offset, user_vectors, rows[batch:].T), dim=1)
        lse = _per_target(user_lse[:, None], user_index).squeeze(1)
        x = target_logits - lse
        if self.remove_accidental_hits:
            hits = _hit_counts(negatives, targets).to(x.dtype)
            # log(e^t + Σ_samples e^s - hits · e^t) - lse; the argument stays >= 1/S - 1 > -1.
            with_hits = torch.log1p((1 - hits) * torch.exp(x.clamp(max=0)))
            term = torch.where(hits > 0, with_hits, F.softplus(x))
        else:
            term = F.softplus(x)  # log(e^t + e^lse) - lse
        return (lse - target_logits + term).mean()

    def extra_repr(self) -> str:
        return f"num_items={self.num_items}, num_samples={self.num_samples}, proposal={self.proposal!r}"


@register_loss("in_batch_softmax")
class InBatchSoftmaxLoss(CatalogueLoss):
    """Softmax over the batch's targets: example ``i``'s negatives are the targets of the other examples.

    Logits are ``(B, B)``: ``u_i · W[t_j] + b[t_j] - log Q(t_j)``, where, with the ``unigram`` proposal, ``Q`` is
    the item's share of the training examples (``(counts + 1) / Σ``); the ``uniform`` proposal makes no correction
    (a constant ``log Q`` would not change the softmax). Another example with the same target item as ``i`` is
    masked to ``-inf`` in row ``i`` (it is the positive, not a negative). The loss is the cross-entropy with the
    diagonal as the targets.

    Args:
        num_items: Catalogue size N.
        counts: ``(N,)`` training counts of each item for the log-Q correction; required by ``unigram``.
        sparse_gradients: Gather the target rows so that the table and bias get sparse gradients.
        proposal: ``unigram`` corrects by popularity, ``uniform`` does not.
    """

    def __init__(
        self,
        num_items: int,
        counts: torch.Tensor | None = None,
        sparse_gradients: bool = True,
        proposal: Proposal = "unigram",
    ) -> None:
        super().__init__(num_items, sparse_gradients)
        self.proposal = proposal
        log_q = None if proposal == "uniform" else proposal_log_probs(num_items, proposal, counts, alpha=1.0)
        self.register_buffer("log_q", log_q, persistent=False)

    @classmethod
    def needs_counts(cls, config: Mapping[str, Any]) -> bool:
        """The ``unigram`` proposal (the default) corrects by the item counts."""
        return config.get("proposal", "unigram") == "unigram"

    def forward(
        self,
        user_vectors: torch.Tensor,
        item_table: torch.Tensor,
        item_bias: torch.Tensor | None,
        targets: torch.Tensor,
        user_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean in-batch softmax loss; shapes as :meth:`SampledSoftmaxLoss.forward`. Returns a scalar."""
        self.check_inputs(user_vectors, item_table, item_bias, targets, user_index)
        user_vectors = _per_target(user_vectors, user_index)
        rows, bias = _gather_rows(targets, item_table, item_bias, self.sparse_gradients)
        logits = user_vectors @ rows.T
        if bias is not None:
            logits = logits + bias
        if self.log_q is not None:
            logits = logits - self.log_q[targets]
        same = targets[None, :] == targets[:, None]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits, torch.arange(targets.shape[0], device=logits.device))


def catalogue_losses() -> list[str]:
    """Sorted names of the registered losses over an item catalogue (subclasses of :class:`CatalogueLoss`)."""
    return [name for name in list_losses() if issubclass(get_loss_class(name), CatalogueLoss)]


def create_catalogue_loss(
    name: str,
    num_items: int,
    counts: torch.Tensor | None = None,
    sparse_gradients: bool = True,
    **config: Any,
) -> CatalogueLoss:
    """Build the registered catalogue loss ``name`` from its own arguments ``config`` and the data's facts.

    Args:
        name: A name from :func:`catalogue_losses` (``full_softmax``, ``sampled_softmax``, ``in_batch_softmax``).
        num_items: Catalogue size N.
        counts: ``(N,)`` training count of each item; passed on only when the loss's arguments need them.
        sparse_gradients: Whether the table and bias should get sparse gradients.
        **config: The loss's own constructor arguments (e.g. ``num_samples``, ``proposal``).

    Raises:
        KeyError: No loss has that name (the message lists the registered ones).
        ValueError: The loss is not a catalogue loss, or it needs ``counts`` and none were given.
    """
    cls = get_loss_class(name)
    if not issubclass(cls, CatalogueLoss):
        raise ValueError(f"loss {name!r} does not score an item catalogue; catalogue losses: {catalogue_losses()}")
    kwargs: dict[str, Any] = {"num_items": num_items, "sparse_gradients": sparse_gradients, **config}
    if cls.needs_counts(config):
        if counts is None:
            raise ValueError(f"loss {name!r} with {dict(config)} needs item counts: pass counts=(num_items,) tensor")
        kwargs["counts"] = counts
    return create_loss(name, **kwargs)
