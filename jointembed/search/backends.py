"""Nearest-neighbour backends of :class:`~jointembed.search.index.EmbeddingIndex`: exact search in torch and
FAISS's flat, HNSW and IVF indexes, chosen by name.

A backend sees only vectors at positions ``0..n-1`` (the index owns keys, metadata and deletions) and answers
``(scores, positions)`` for the top k of each query by inner product among the allowed positions. The index
normalises vectors for cosine similarity before they get here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from jointembed.kernels import load_numba_top_k, numba_available
from jointembed.sparse import SparseBatch

__all__ = [
    "Backend",
    "ExactBackend",
    "FaissBackend",
    "BACKENDS",
    "create_backend",
    "exact_top_k",
    "faiss_available",
]

#: Score block budget of exact search, in floats (4 MB): a block stays in cache and its buffer is reused, so no
#: fresh pages are mapped per block (64 MB blocks made the matrix products 3× slower at 1,000,000 vectors).
EXACT_BLOCK = 2**20
#: Queries per block of exact search.
EXACT_QUERIES = 128
#: Most rows per block, whatever the number of queries: a single query's scores stay in cache too.
EXACT_ROWS = 2**16
#: Up to this many queries, exact search is one numba pass over the rows (scoring and keeping the top k as each
#: row streams by) instead of blocks of matrix products.
SCAN_QUERIES = 16


class Backend(Protocol):
    """What the index needs of a nearest-neighbour structure over its vector rows."""

    name: str
    options: dict[str, Any]

    def add(self, vectors: np.ndarray) -> None:
        """Append ``(n, D)`` float32 rows at the next positions."""

    def rebuild(self, vectors: np.ndarray) -> None:
        """Forget everything and index ``(n, D)`` rows at positions ``0..n-1``."""

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(q, k)`` float32 scores and int64 positions, best first, ``-1``/``-inf`` where fewer than k are
        found; ``allowed`` is a ``(n,)`` bool mask of positions that may be returned (``None``: all)."""

    def to_bytes(self) -> bytes | None:
        """The structure serialised, or ``None`` when it is rebuilt from the vectors on load."""

    def load_bytes(self, data: bytes, vectors: np.ndarray) -> None:
        """Restore from :meth:`to_bytes` output (``vectors`` are the index's rows, for checks)."""


def exact_top_k(
    queries: torch.Tensor,
    vectors: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None = None,
    *,
    bias: torch.Tensor | None = None,
    seen: SparseBatch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product (plus an optional per-row bias), without ever holding the whole score matrix.

    Up to :data:`SCAN_QUERIES` queries (CPU, float32, numba installed): one pass over the rows scores each row
    against every query as it streams from memory and keeps each query's best k in a heap
    (:mod:`jointembed.kernels.numba_top_k`); one recommender user over 1,000,000 movies takes 5.2 ms at 32
    dimensions and 9.3 ms at 64, 0.90-0.93× the speed of FAISS's flat index, against 6.9 / 15.7 ms by blocks
    (``benchmarks/recommend_serving.py``, idle machine, one thread). More queries, or elsewhere: blocks of
    queries × rows (a ``(128, 8192)`` block, 4 MB, one reused buffer; at most 65,536 rows for fewer queries)
    that stay in cache, a query's running top k updated from a block only when the block's best score beats its
    k-th: 1,000 users over a million movies at 3.4-4.2× FAISS flat's speed and 5-7× that of scoring whole rows
    (:func:`jointembed.metrics.ranking.chunked_top_k`).

    Args:
        queries: ``(q, D)`` float32.
        vectors: ``(n, D)`` float32.
        k: Neighbours per query (``>= 1``); more than the allowed rows pads.
        allowed: ``(n,)`` bool mask of rows that may be returned, or ``None``.
        bias: ``(n,)`` added to every query's score of each row (a recommender's item bias), or ``None``.
        seen: ``q`` bags of rows never to return for that query (a user's history), or ``None``.

    Returns:
        ``scores (q, k)`` float32 and ``positions (q, k)`` int64 on the queries' device, best first;
        ``-inf``/``-1`` as padding. A score that is not finite (NaN or ±inf: a diverged model) is never returned.
    """
    n = vectors.shape[0]
    rows = None
    if allowed is not None and seen is None and int(allowed.sum()) < n // 4:  # few rows left: search a copy
        rows = allowed.nonzero().squeeze(1)
        vectors, allowed, n = vectors[rows], None, len(rows)
        bias = None if bias is None else bias[rows]
    q, device = queries.shape[0], queries.device
    if seen is not None and len(seen) != q:
        raise ValueError(f"seen has {len(seen)} bags but there are {q} queries")
    if n == 0 or q == 0:
        return _no_hits(q, k, device)
    top_k = _scan_top_k if q <= SCAN_QUERIES and _scans(queries, vectors) else _blocked_top_k
    best_s, best_i = top_k(queries, vectors, k, allowed, bias, seen)
    best_i = best_i.masked_fill(best_s == float("-inf"), -1)
    if rows is not None:
        best_i = torch.where(best_i >= 0, rows[best_i.clamp_min(0)], best_i)
    return best_s, best_i


def _scans(queries: torch.Tensor, vectors: torch.Tensor) -> bool:
    """Whether the numba scan applies: numba installed and both float32 on the CPU."""
    return (
        numba_available()
        and queries.device.type == "cpu"
        and vectors.device.type == "cpu"
        and queries.dtype == torch.float32
        and vectors.dtype == torch.float32
    )


def _scan_top_k(
    queries: torch.Tensor,
    vectors: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None,
    bias: torch.Tensor | None,
    seen: SparseBatch | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exact_top_k` for a few queries by :func:`jointembed.kernels.numba_top_k.scan_top_k`."""
    q = queries.shape[0]
    pairs = (torch.empty(0, dtype=torch.long),) * 2 if seen is None else _seen_by_row(seen, 0, q, queries.device)
    scores, rows = np.empty((q, k), np.float32), np.empty((q, k), np.int64)
    empty_f, empty_b = np.empty(0, np.float32), np.empty(0, np.bool_)
    load_numba_top_k().scan_top_k(
        queries.detach().contiguous().numpy(),
        vectors.detach().contiguous().numpy(),
        empty_f if bias is None else bias.detach().to(torch.float32).contiguous().numpy(),
        empty_b if allowed is None else allowed.contiguous().numpy(),
        *(p.to(torch.long).contiguous().numpy() for p in pairs),
        scores,
        rows,
    )
    return torch.from_numpy(scores), torch.from_numpy(rows)


def _blocked_top_k(
    queries: torch.Tensor,
    vectors: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None,
    bias: torch.Tensor | None,
    seen: SparseBatch | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exact_top_k` by blocks of matrix products."""
    n, q, device = vectors.shape[0], queries.shape[0], queries.device
    best_s, best_i = _no_hits(q, k, device)
    q_block = min(q, EXACT_QUERIES)
    db_block = max(k, min(EXACT_ROWS, EXACT_BLOCK // q_block))
    buffer = torch.empty(q_block * min(n, db_block), dtype=queries.dtype, device=device)
    for qs in range(0, q, q_block):
        qq = queries[qs : qs + q_block]
        excluded = None if seen is None else _seen_by_row(seen, qs, qs + len(qq), device)
        best_s[qs : qs + len(qq)], best_i[qs : qs + len(qq)] = _block_top_k(
            qq, vectors, k, buffer, db_block, bias, allowed, excluded
        )
    return best_s, best_i


def _no_hits(q: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, k)`` scores of ``-inf`` and positions of ``-1``: the padding of every answer."""
    return torch.full((q, k), float("-inf"), device=device), torch.full((q, k), -1, dtype=torch.long, device=device)


def _seen_by_row(seen: SparseBatch, start: int, stop: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The excluded ``(query in block, row)`` pairs of bags ``[start, stop)``, sorted by row."""
    lo = int(seen.offsets[start])
    hi = int(seen.offsets[stop]) if stop < len(seen) else seen.values.numel()
    items, order = seen.values[lo:hi].to(device).sort()
    return (seen.bag_ids()[lo:hi].to(device) - start)[order], items


def _block_top_k(
    queries: torch.Tensor,
    vectors: torch.Tensor,
    k: int,
    buffer: torch.Tensor,
    db_block: int,
    bias: torch.Tensor | None,
    allowed: torch.Tensor | None,
    excluded: tuple[torch.Tensor, ...] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k of one block of queries against every row, ``db_block`` rows at a time (scores in ``buffer``).

    Each query keeps its running top k; a block's top k (the costly step: about 1 ns per score, against 0.05 for
    a maximum) is taken only for the queries whose best score in the block beats their current k-th, which
    after the first blocks is a small share of them.
    """
    best_s, best_i = _no_hits(len(queries), k, queries.device)
    for start in range(0, len(vectors), db_block):
        part = vectors[start : start + db_block]
        block = buffer[: len(queries) * len(part)].view(len(queries), len(part))
        if bias is None:
            torch.mm(queries, part.T, out=block)
        else:
            torch.addmm(bias[start : start + len(part)], queries, part.T, out=block)
        block.nan_to_num_(nan=float("-inf"), posinf=float("-inf"), neginf=float("-inf"))
        if allowed is not None:
            block.masked_fill_(~allowed[start : start + len(part)], float("-inf"))
        if excluded is not None:
            query, item = excluded
            lo, hi = torch.searchsorted(item, torch.tensor([start, start + len(part)], device=item.device)).tolist()
            block[query[lo:hi], item[lo:hi] - start] = float("-inf")
        live = (block.amax(dim=1) > best_s[:, -1]).nonzero().squeeze(1)  # ties with the k-th cannot displace it
        if len(live) == 0:
            continue
        s, i = (block if len(live) == len(queries) else block[live]).topk(min(k, len(part)), dim=1)
        merged_s, merged_i = torch.cat([best_s[live], s], dim=1), torch.cat([best_i[live], i + start], dim=1)
        top = merged_s.topk(k, dim=1)
        best_s[live], best_i[live] = top.values, merged_i.gather(1, top.indices)
    return best_s, best_i


class ExactBackend:
    """Exact search with :func:`exact_top_k` over the index's own rows (no copy, no structure to build or
    save): the index hands it a function returning its current ``(n, D)`` rows (:meth:`attach`)."""

    name = "exact"

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self._rows: Callable[[], np.ndarray] | None = None

    def attach(self, rows: Callable[[], np.ndarray]) -> None:
        """Search the rows ``rows()`` returns (C-contiguous float32, read at each search)."""
        self._rows = rows

    def add(self, vectors: np.ndarray) -> None:
        """Nothing to do: the rows are read from the index."""

    def rebuild(self, vectors: np.ndarray) -> None:
        """Nothing to do: the rows are read from the index."""

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows() if self._rows is not None else np.zeros((0, queries.shape[1]), np.float32)
        if len(rows) == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        mask = None if allowed is None else torch.from_numpy(allowed)
        scores, ids = exact_top_k(torch.from_numpy(np.ascontiguousarray(queries)), torch.from_numpy(rows), k, mask)
        return scores.numpy(), ids.numpy()

    def to_bytes(self) -> None:
        return None

    def load_bytes(self, data: bytes, vectors: np.ndarray) -> None:
        """Nothing to restore: the rows are read from the index."""


@dataclass(frozen=True)
class _FaissKind:
    factory: str  # FAISS index_factory string, formatted with the options
    defaults: dict[str, Any]
    trained: bool  # needs training on the vectors before adding


_FAISS_KINDS: dict[str, _FaissKind] = {
    "flat": _FaissKind("Flat", {}, False),
    "hnsw": _FaissKind("HNSW{M},Flat", {"M": 32, "ef_construction": 200, "ef_search": 64}, False),
    "ivf_flat": _FaissKind("IVF{nlist},Flat", {"nlist": 1024, "nprobe": 16}, True),
    # "np": no polysemous training, which searches never use and which took 7x longer than the rest of training
    "ivf_pq": _FaissKind("IVF{nlist},PQ{m}x{nbits}np", {"nlist": 1024, "nprobe": 16, "m": 16, "nbits": 8}, True),
}


def faiss_available() -> bool:
    """Whether ``faiss`` imports (the ``faiss`` extra)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as error:
        raise ImportError('FAISS backends need faiss: pip install "jointembed[faiss]" (or use backend "exact")') from (
            error
        )
    return faiss


class FaissBackend:
    """A FAISS index by inner product: ``flat`` (exact), ``hnsw`` (graph; options ``M``, ``ef_construction``,
    ``ef_search``), ``ivf_flat`` / ``ivf_pq`` (inverted lists; ``nlist``, ``nprobe``, and for PQ ``m`` sub-vectors
    of ``nbits``). IVF kinds train their quantiser on the first vectors added (at least ``nlist`` of them).

    Deleted and filtered-out positions are excluded with FAISS's ID selectors at search time: HNSW cannot remove
    points, and excluding is cheaper than rebuilding a graph for each deletion.
    """

    def __init__(self, kind: str, dim: int, **options: Any) -> None:
        if kind not in _FAISS_KINDS:
            raise ValueError(f"unknown FAISS backend {kind!r}; choose from {', '.join(_FAISS_KINDS)}")
        spec = _FAISS_KINDS[kind]
        if unknown := sorted(set(options) - set(spec.defaults)):
            allowed = ", ".join(spec.defaults) or "none"
            raise ValueError(f"backend {kind!r} has no option(s) {unknown}; its options: {allowed}")
        self.name, self.dim, self._spec = kind, dim, spec
        self.options = {**spec.defaults, **options}
        for key, value in self.options.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"backend {kind!r} option {key} must be a positive integer, got {value!r}")
        if kind == "ivf_pq" and dim % self.options["m"]:
            raise ValueError(f"ivf_pq needs the dimension ({dim}) to be a multiple of m ({self.options['m']})")
        self.faiss = _faiss()
        self.index = self._new()

    def _new(self) -> Any:
        factory = self._spec.factory.format(**self.options)
        index = self.faiss.index_factory(self.dim, factory, self.faiss.METRIC_INNER_PRODUCT)
        if self.name == "hnsw":
            index.hnsw.efConstruction = self.options["ef_construction"]
        return index

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return
        if self._spec.trained and not self.index.is_trained:
            if len(vectors) < self.options["nlist"]:
                raise ValueError(
                    f"{self.name} with nlist={self.options['nlist']} needs at least that many vectors in its first "
                    f"add to train on, got {len(vectors)}: add more at once, lower nlist, or use 'flat'/'hnsw'"
                )
            self.index.train(vectors)
        self.index.add(vectors)

    def rebuild(self, vectors: np.ndarray) -> None:
        self.index = self._new()
        self.add(vectors)

    def _params(self, selector: Any) -> Any:
        f = self.faiss
        if self.name == "hnsw":
            return f.SearchParametersHNSW(sel=selector, efSearch=self.options["ef_search"])
        if self._spec.trained:
            return f.SearchParametersIVF(sel=selector, nprobe=self.options["nprobe"])
        return f.SearchParameters(sel=selector) if selector is not None else None

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.index.ntotal == 0:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        selector, bitmap = None, None
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")  # kept alive while FAISS reads it
            selector = self.faiss.IDSelectorBitmap(len(allowed), self.faiss.swig_ptr(bitmap))
        params = self._params(selector)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores, ids = self.index.search(queries, k, params=params) if params else self.index.search(queries, k)
        del bitmap
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids.astype(np.int64)

    def to_bytes(self) -> bytes:
        return self.faiss.serialize_index(self.index).tobytes()

    def load_bytes(self, data: bytes, vectors: np.ndarray) -> None:
        index = self.faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if index.d != self.dim or index.ntotal != len(vectors):
            raise ValueError(
                f"the FAISS index holds {index.ntotal} vectors of dimension {index.d}, "
                f"the index's rows are {len(vectors)} of dimension {self.dim}"
            )
        self.index = index


BACKENDS: tuple[str, ...] = ("exact", *_FAISS_KINDS)


def create_backend(name: str, dim: int, options: Mapping[str, Any] | None = None) -> Backend:
    """A backend by name (``exact``, ``flat``, ``hnsw``, ``ivf_flat``, ``ivf_pq``) for ``dim``-dim vectors.

    Raises:
        ValueError: An unknown name or option (the message lists the known ones).
        ImportError: A FAISS backend without ``faiss`` installed (the message says how to install it).
    """
    options = dict(options or {})
    if name == "exact":
        if options:
            raise ValueError(f"backend 'exact' takes no options, got {sorted(options)}")
        return ExactBackend()
    if name not in _FAISS_KINDS:
        raise ValueError(f"unknown search backend {name!r}; choose from {', '.join(BACKENDS)}")
    return FaissBackend(name, dim, **options)
