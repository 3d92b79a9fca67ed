"""Serving a recommender over a million movies: one user at a time and batches of users, exact and approximate.

Data: a :class:`~jointembed.models.recommender.Recommender` with ``--items`` (1,000,000) movie vectors of each
``--dims`` width (32, 64) and a bias per movie, set like a trained model's: clustered directions (``--clusters``
Gaussian centres on the sphere plus N(0, 0.1²) noise per coordinate, as in ``benchmarks/search.py``), log-normal
norms, N(0, 0.5²) biases. Users are drawn the same way, each with 20 watched movies that must not come back. Seeded.

Candidates, each answering the top ``k`` = 10 unwatched movies by the model's score ``u · W[j] + b[j]``:

- ``row_top_k``: the previous exact path, whole rows of scores a few users at a time
  (:func:`~jointembed.metrics.ranking.chunked_top_k`; 16 users per block at a million movies);
- ``blocked_top_k``: :func:`~jointembed.search.backends.exact_top_k` (with the bias and the watched movies) by
  users × movies blocks that stay in cache, each reduced to a top k only for the users it can improve;
- ``top_k``: ``Recommender.top_k`` now: up to ``SCAN_QUERIES`` (16) users in one numba pass over the movies that
  scores each row as it streams by and keeps each user's best k (:mod:`jointembed.kernels.numba_top_k`), more
  users by blocks as ``blocked_top_k``;
- ``flat`` and ``hnsw`` (FAISS, ``M`` = 32, efSearch ``--ef-search``): ``PretrainedRecommender.catalogue_index
  ("recommend", backend)`` searched by :func:`~jointembed.search.catalogue.search_items`, exactly what
  ``recommend(..., index=)`` runs after the user vectors (the bias as an extra dimension, ``k`` + 20 fetched and
  the watched ones dropped).

Figures per candidate and width: milliseconds per single user (``--single-users`` users one by one), users per
second in one batch of ``--batch-users``, best of ``--rounds`` with every candidate once per round (interleaved, so
a change in machine load hits all alike), one thread; ``recall_at_10`` against ``blocked_top_k`` (whose ids are
checked equal to ``row_top_k``'s and, one user at a time, to ``top_k``'s: ``same_ids_as_blocked_top_k``,
``single_same_ids_as_blocked_top_k``); the index build time. One JSON line per candidate
and width, with the load average at the start and end.

    python benchmarks/recommend_serving.py [--items 1000000] [--dims 32,64] [--backends flat,hnsw]

The HNSW builds dominate: 15-17 minutes per width with one thread on a 2-core machine at load 6-15 (40 minutes
in all); ``--backends flat`` skips them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from jointembed.metrics.ranking import budget_rows, chunked_top_k
from jointembed.models.pretrained_recommender import PretrainedRecommender
from jointembed.models.recommender import Recommender
from jointembed.search import backends
from jointembed.search.catalogue import search_items
from jointembed.sparse import SparseBatch

K, WATCHED = 10, 20


def _clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float = 0.1) -> np.ndarray:
    """``(n, D)`` float32 rows: a random centre each plus Gaussian noise, normalised, times a log-normal norm."""
    out = np.empty((n, centres.shape[1]), np.float32)
    for start in range(0, n, 65536):
        rows = min(65536, n - start)
        block = centres[rng.integers(0, len(centres), rows)] + noise * rng.standard_normal(
            (rows, centres.shape[1]), dtype=np.float32
        )
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + rows] = block * rng.lognormal(0.0, 0.25, (rows, 1)).astype(np.float32)
    return out


def _model(items: int, dim: int, clusters: int, rng: np.random.Generator) -> Recommender:
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    model = Recommender(items, embedding_dim=dim, hidden_sizes=(), sparse=False, tie_output_embeddings=True)
    with torch.no_grad():
        model.item_table.copy_(torch.from_numpy(_clustered(rng, centres, items)))
        model.output_bias.copy_(torch.from_numpy(rng.normal(0.0, 0.5, (items, 1)).astype(np.float32)))
    model.centres = centres  # users are drawn around the same centres
    return model.eval()


def _row_top_k(model: Recommender, users: torch.Tensor, seen: SparseBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous ``Recommender.top_k``: whole rows of logits, :func:`budget_rows` users at a time."""
    scores_of = lambda rows: model.logits(users[rows])  # noqa: E731
    return chunked_top_k(scores_of, len(users), K, seen, chunk_size=budget_rows(model.num_items))


def _bags(seen: torch.Tensor, rows: np.ndarray) -> SparseBatch:
    """The watched movies ``(n, WATCHED)`` of the users at ``rows`` as bags."""
    return SparseBatch.from_tensors(seen[rows].reshape(-1), lengths=torch.full((len(rows),), WATCHED))


def _blocked(model: Recommender, users: torch.Tensor, seen: SparseBatch) -> torch.Tensor:
    """``Recommender.top_k`` with blocks of matrix products for any number of users (no numba scan)."""
    scan_queries, backends.SCAN_QUERIES = backends.SCAN_QUERIES, 0
    try:
        return model.top_k(users, K, seen)[0]
    finally:
        backends.SCAN_QUERIES = scan_queries


def _candidates(
    model: Recommender, users: torch.Tensor, seen: torch.Tensor, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Each candidate as ``batch(rows)`` answering the users at ``rows`` (ids ``(n, K)``), with its build time."""
    out: dict[str, dict[str, Any]] = {
        "row_top_k": {"batch": lambda rows: _row_top_k(model, users[rows], _bags(seen, rows))[0]},
        "blocked_top_k": {"batch": lambda rows: _blocked(model, users[rows], _bags(seen, rows))},
        "top_k": {"batch": lambda rows: model.top_k(users[rows], K, _bags(seen, rows))[0]},
    }
    recommender = PretrainedRecommender(model)
    queries = torch.cat([users, torch.ones(len(users), 1)], dim=1).numpy()
    watched = seen.tolist()  # the catalogue's keys are the item IDs
    for backend in args.backends:
        options = {"M": 32, "ef_search": args.ef_search} if backend == "hnsw" else {}
        start = time.perf_counter()
        index = recommender.catalogue_index("recommend", backend, options)
        build_s = round(time.perf_counter() - start, 1)
        print(f"built {backend} (d = {model.embedding_dim}) in {build_s} s", file=sys.stderr, flush=True)

        def search(rows: np.ndarray, index=index) -> torch.Tensor:
            found = search_items(index, queries[rows], K, [watched[r] for r in rows])
            return torch.tensor([[key for key, _ in row] + [-1] * (K - len(row)) for row in found])

        out[backend] = {"batch": search, "build_s": build_s, "setting": options}
    return out


def _best_times(candidates: dict[str, dict[str, Any]], singles: np.ndarray, batch: np.ndarray, rounds: int) -> None:
    """``single_s`` (per user, one at a time) and ``batch_s`` (the whole batch), best of interleaved rounds."""
    for candidate in candidates.values():
        candidate["single_s"], candidate["batch_s"] = [], []
    with torch.no_grad():
        for _ in range(rounds):
            for candidate in candidates.values():
                answer = candidate["batch"]
                one_by_one = _timed(lambda answer=answer: [answer(singles[i : i + 1]) for i in range(len(singles))])
                candidate["single_s"].append(one_by_one / len(singles))
                candidate["batch_s"].append(_timed(lambda answer=answer: answer(batch)))


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    hits = sum(len(set(f.tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / int((truth >= 0).sum())


def _run_width(dim: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    model = _model(args.items, dim, args.clusters, rng)
    users_np = _clustered(rng, model.centres, args.batch_users) * np.float32(3.0)
    users = torch.from_numpy(users_np)
    seen = torch.from_numpy(rng.integers(0, args.items, (args.batch_users, WATCHED)))
    candidates = _candidates(model, users, seen, args)
    all_rows, singles = np.arange(args.batch_users), np.arange(min(args.single_users, args.batch_users))
    with torch.no_grad():
        truth = candidates["blocked_top_k"]["batch"](all_rows)
        found = {name: c["batch"](all_rows) for name, c in candidates.items()}
        one_by_one = torch.cat([candidates["top_k"]["batch"](singles[i : i + 1]) for i in range(len(singles))])
    _best_times(candidates, singles, all_rows, args.rounds)
    base = candidates["row_top_k"]
    lines = []
    for name, c in candidates.items():
        single, batch = min(c["single_s"]), min(c["batch_s"])
        line = {"candidate": name, "setting": c.get("setting", {}), "items": args.items, "dim": dim, "k": K}
        line.update(single_users=len(singles), single_ms_per_user=round(single * 1e3, 2))
        line.update(batch_users=args.batch_users, batch_users_per_s=round(args.batch_users / batch, 1))
        line.update(single_speedup_vs_row_top_k=round(min(base["single_s"]) / single, 2))
        line.update(batch_speedup_vs_row_top_k=round(min(base["batch_s"]) / batch, 2))
        line.update(recall_at_10=round(_recall(found[name], truth), 4), build_s=c.get("build_s"))
        lines.append(line)
    lines[0]["same_ids_as_blocked_top_k"] = bool(torch.equal(found["row_top_k"], truth))
    lines[2]["single_same_ids_as_blocked_top_k"] = bool(torch.equal(one_by_one, truth[singles]))
    if "flat" in candidates:
        flat = candidates["flat"]
        for line, c in zip(lines, candidates.values(), strict=True):
            line["single_vs_flat"] = round(min(flat["single_s"]) / min(c["single_s"]), 2)
            line["batch_vs_flat"] = round(min(flat["batch_s"]) / min(c["batch_s"]), 2)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dims", type=lambda text: [int(d) for d in text.split(",")], default="32,64")
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--single-users", type=int, default=100, help="users answered one at a time")
    parser.add_argument("--batch-users", type=int, default=1000, help="users answered in one batch")
    parser.add_argument("--backends", type=lambda text: [b for b in text.split(",") if b], default="flat,hnsw")
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch and FAISS (OpenMP) threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.backends:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    for dim in args.dims:
        load_start = os.getloadavg()
        lines = _run_width(dim, args)
        load_end = os.getloadavg()
        for line in lines:
            line.update(threads=args.threads, load_average_start=[round(x, 2) for x in load_start])
            line["load_average_end"] = [round(x, 2) for x in load_end]
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
