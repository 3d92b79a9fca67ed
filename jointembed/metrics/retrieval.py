"""Cross-modal retrieval and zero-shot classification metrics over embeddings in one shared space.

Conventions:

- Scores are dot products; pass L2-normalised embeddings to rank by cosine similarity.
- A gallery item is *relevant* to a query when it is the query's paired item (the same example: same index when
  no ids are given, else the same id), or, when labels are given, when it has the query's label (label ``-1`` is
  unknown and never matches).
- ``R@k`` (recall at k): the share of queries with at least one relevant item among the k best-scored gallery
  items. ``MRR``: the mean over queries of ``1 / rank`` of the best-ranked relevant item.
- Ranks are pessimistic under ties: a relevant item is ranked below every irrelevant item with an equal score,
  so a collapsed space (all scores equal) scores low, never perfect.
- Non-finite scores (NaN or infinite embeddings: a diverged model) count as the worst score, and a zero-shot
  prediction from a non-finite embedding is wrong: divergence can never look like success.
- Queries without any relevant gallery item are left out of the averages; ``num_queries`` says how many counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["retrieval_metrics", "relevant_ranks", "zero_shot_accuracy", "class_embeddings"]


def _check_matrix(name: str, x: torch.Tensor) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D tensor (n, D), got shape {tuple(x.shape)}")


def _check_vector(name: str, x: torch.Tensor | None, n: int) -> None:
    if x is not None and (x.ndim != 1 or x.shape[0] != n):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(x.shape)}")


def relevant_ranks(
    query: torch.Tensor,
    gallery: torch.Tensor,
    query_labels: torch.Tensor | None = None,
    gallery_labels: torch.Tensor | None = None,
    query_ids: torch.Tensor | None = None,
    gallery_ids: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """``(n,)`` 1-based rank of the best-ranked relevant gallery item for every query (0 when none is relevant).

    Args:
        query: ``(n, D)`` query embeddings.
        gallery: ``(m, D)`` gallery embeddings.
        query_labels: ``(n,)`` int labels (``-1`` unknown), or None.
        gallery_labels: ``(m,)`` int labels, given together with ``query_labels``.
        query_ids: ``(n,)`` example ids pairing queries with gallery items; None pairs query ``i`` with gallery
            item ``i`` (then ``n`` must equal ``m``).
        gallery_ids: ``(m,)`` example ids, given together with ``query_ids``.
        chunk_size: Queries scored at once, bounding memory to ``chunk_size * m`` scores.
    """
    _check_matrix("query", query)
    _check_matrix("gallery", gallery)
    n, m = query.shape[0], gallery.shape[0]
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query has dimension {query.shape[1]} but gallery has {gallery.shape[1]}")
    if (query_labels is None) != (gallery_labels is None):
        raise ValueError("give both query_labels and gallery_labels, or neither")
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("give both query_ids and gallery_ids, or neither")
    if query_ids is None:
        if n != m:
            raise ValueError(f"without ids, query i is paired with gallery item i: need n == m, got {n} and {m}")
        query_ids, gallery_ids = torch.arange(n), torch.arange(m)
    for name, x, size in (
        ("query_labels", query_labels, n),
        ("gallery_labels", gallery_labels, m),
        ("query_ids", query_ids, n),
        ("gallery_ids", gallery_ids, m),
    ):
        _check_vector(name, x, size)
    device = query.device
    ranks = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        scores = query[start:stop] @ gallery.T
        scores = torch.where(torch.isfinite(scores), scores, float("-inf"))
        relevant = query_ids[start:stop, None].to(device) == gallery_ids[None, :].to(device)
        if query_labels is not None:
            q_lab = query_labels[start:stop, None].to(device)
            relevant |= (q_lab == gallery_labels[None, :].to(device)) & (q_lab >= 0)
        best = scores.masked_fill(~relevant, float("-inf")).max(dim=1).values
        above = ((scores >= best[:, None]) & ~relevant).sum(dim=1)
        ranks.append(torch.where(relevant.any(dim=1), above + 1, torch.zeros_like(above)))
    return torch.cat(ranks).cpu() if ranks else torch.zeros(0, dtype=torch.long)


def retrieval_metrics(
    query: torch.Tensor,
    gallery: torch.Tensor,
    query_labels: torch.Tensor | None = None,
    gallery_labels: torch.Tensor | None = None,
    query_ids: torch.Tensor | None = None,
    gallery_ids: torch.Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@k and MRR of retrieving gallery items for each query (conventions in the module docstring).

    Args:
        query: ``(n, D)`` query embeddings.
        gallery: ``(m, D)`` gallery embeddings.
        query_labels: ``(n,)`` int labels (``-1`` unknown): same-label gallery items are hits too.
        gallery_labels: ``(m,)`` int labels.
        query_ids: ``(n,)`` example ids; None pairs query ``i`` with gallery item ``i``.
        gallery_ids: ``(m,)`` example ids.
        ks: Cut-offs for ``R@k``.

    Returns:
        ``{"R@1": ..., "R@5": ..., "R@10": ..., "MRR": ..., "num_queries": ...}``.

    Raises:
        ValueError: Malformed inputs, ``k < 1``, or no query has a relevant gallery item.
    """
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    ranks = relevant_ranks(query, gallery, query_labels, gallery_labels, query_ids, gallery_ids)
    ranks = ranks[ranks > 0].double()
    if ranks.numel() == 0:
        raise ValueError(f"none of the {query.shape[0]} queries has a relevant item among {gallery.shape[0]}")
    metrics = {f"R@{k}": float((ranks <= k).double().mean()) for k in ks}
    metrics["MRR"] = float((1.0 / ranks).mean())
    metrics["num_queries"] = float(ranks.numel())
    return metrics


def class_embeddings(prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """``(C, D)`` unit class vectors: the mean of each class's prompt embeddings ``(C, P, D)``, renormalised
    (a ``(C, D)`` input is only renormalised)."""
    if prompt_embeddings.ndim == 3:
        prompt_embeddings = F.normalize(prompt_embeddings, dim=-1).mean(dim=1)
    elif prompt_embeddings.ndim != 2:
        raise ValueError(f"prompt_embeddings must be (C, P, D) or (C, D), got shape {tuple(prompt_embeddings.shape)}")
    return F.normalize(prompt_embeddings, dim=-1)


def zero_shot_accuracy(embeddings: torch.Tensor, labels: torch.Tensor, prompt_embeddings: torch.Tensor) -> float:
    """Accuracy of classifying each embedding as the class whose (averaged) prompt embedding is most similar.

    Args:
        embeddings: ``(n, D)`` embeddings to classify.
        labels: ``(n,)`` true class indices into the prompts; ``-1`` (unknown) rows are left out.
        prompt_embeddings: ``(C, P, D)`` P prompt embeddings per class (averaged, then renormalised) or ``(C, D)``.

    Raises:
        ValueError: Mismatched shapes, a label ``>= C``, or no labelled row.
    """
    _check_matrix("embeddings", embeddings)
    _check_vector("labels", labels, embeddings.shape[0])
    classes = class_embeddings(prompt_embeddings).to(embeddings.device, embeddings.dtype)
    if classes.shape[1] != embeddings.shape[1]:
        raise ValueError(f"prompts have dimension {classes.shape[1]} but embeddings have {embeddings.shape[1]}")
    labels = labels.to(embeddings.device)
    known = labels >= 0
    if not bool(known.any()):
        raise ValueError("zero-shot accuracy needs at least one labelled example (all labels are -1)")
    if int(labels.max()) >= classes.shape[0]:
        raise ValueError(f"label {int(labels.max())} has no prompt: only {classes.shape[0]} classes were given")
    scores = embeddings[known] @ classes.T
    predicted = scores.argmax(dim=1).masked_fill(~torch.isfinite(scores).all(dim=1), -1)  # non-finite: wrong
    return float((predicted == labels[known]).double().mean())
