"""A recommender's catalogue as a search index: its items' vectors in an :class:`EmbeddingIndex`, so that
``recommend`` and ``similar_items`` over a million items can use exact search or HNSW.

Two indexes serve the two questions, because they compare different things:

- ``similar``: cosine similarity between rows of the output item table (what ``similar_items`` ranks by);
- ``recommend``: the model's own score ``u · W[j] + b[j]``, kept exact as an inner product by appending the item
  bias to each item vector and a 1 to each user vector (``[W[j], b[j]] · [u, 1]``).

Entries are keyed by the items' raw keys, with ``title`` (and any item metadata) as metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from jointembed.errors import ModelMismatchError
from jointembed.search.index import EmbeddingIndex

__all__ = ["Purpose", "catalogue_index", "catalogue_info", "item_vectors", "check_catalogue_index", "search_items"]

Purpose = Literal["similar", "recommend"]


def item_vectors(model: Any, purpose: Purpose) -> np.ndarray:
    """``(N, d)`` item rows (``similar``) or ``(N, d + 1)`` rows with the item bias appended (``recommend``)."""
    table = model.item_table.detach().float().cpu()
    if purpose == "recommend":
        table = torch.cat([table, model.item_bias.detach().float().cpu()], dim=1)
    elif purpose != "similar":
        raise ValueError(f"purpose must be 'similar' or 'recommend', got {purpose!r}")
    return table.numpy()


def catalogue_info(model: Any, purpose: Purpose) -> dict[str, Any]:
    """What a catalogue index records of its recommender: the weights' fingerprint, the purpose, the dimension."""
    from jointembed.pretrained import model_fingerprint

    dim = int(model.item_table.shape[1]) + (purpose == "recommend")
    return {"fingerprint": model_fingerprint(model), "name": f"recommender items ({purpose})", "dim": dim,
            "fields": [purpose]}  # fmt: skip


def catalogue_index(
    recommender: Any,
    purpose: Purpose,
    backend: str = "exact",
    backend_options: Mapping[str, Any] | None = None,
) -> EmbeddingIndex:
    """An index of every item of a :class:`~jointembed.PretrainedRecommender` for one purpose.

    Args:
        recommender: The recommender with its catalogue.
        purpose: ``similar`` (cosine between items) or ``recommend`` (the model's score of a user for an item).
        backend: ``exact``, or a FAISS backend (``hnsw``, ``flat``, ``ivf_flat``, ``ivf_pq``).
        backend_options: The backend's settings, e.g. ``{"M": 32, "ef_search": 64}``.

    Returns:
        An index keyed by raw item key, metadata ``title`` (and the catalogue's item metadata columns).
    """
    model = recommender.model
    vectors = item_vectors(model, purpose)
    metric = "dot" if purpose == "recommend" else "cosine"
    if metric == "cosine":
        vectors = vectors.copy()
        zero = np.linalg.norm(vectors, axis=1) == 0
        vectors[zero, 0] = 1e-12  # an item whose row is all zeros (never trained) still gets an entry
    index = EmbeddingIndex(vectors.shape[1], backend, backend_options, metric, catalogue_info(model, purpose))
    titles = recommender.item_titles or [None] * len(vectors)
    columns = recommender.item_metadata or {}
    metadata = []
    for i, title in enumerate(titles):
        meta = {"title": title} if title is not None else {}
        meta.update({name: values[i] for name, values in columns.items()})
        metadata.append(meta)
    index.add(vectors, recommender.item_keys, "item", metadata)
    return index


def check_catalogue_index(index: EmbeddingIndex, model: Any, purpose: Purpose) -> None:
    """Refuse an index of another recommender or made for the other purpose.

    Raises:
        ModelMismatchError: The message says which.
    """
    recorded = index.model or {}
    if recorded.get("fields") != [purpose]:
        made = (recorded.get("fields") or ["?"])[0]
        raise ModelMismatchError(
            f"this index was made for {made!r}, not {purpose!r}: use catalogue_index(..., {purpose!r})"
        )
    index.check_model(catalogue_info(model, purpose))


def search_items(
    index: EmbeddingIndex, queries: np.ndarray, k: int, exclude: Sequence[Sequence[Any]] | None = None
) -> list[list[tuple[Any, float]]]:
    """The ``k`` best ``(key, score)`` per query, leaving out each query's ``exclude`` keys (its history, or the
    item itself): ``k`` plus the longest exclusion list are fetched, then filtered."""
    extra = max((len(keys) for keys in exclude), default=0) if exclude is not None else 0
    fetch = min(k + extra, max(len(index), 1))
    scores, positions = index.search_positions(np.ascontiguousarray(queries, dtype=np.float32), fetch)
    results = []
    for row, (row_s, row_p) in enumerate(zip(scores, positions, strict=True)):
        skip = set(exclude[row]) if exclude is not None else set()
        found = [(index.key_at(int(p)), float(s)) for s, p in zip(row_s, row_p, strict=True) if p >= 0]
        results.append([(key, s) for key, s in found if key not in skip][:k])
    return results
