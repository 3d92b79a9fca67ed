"""The search index at a million vectors: build time, memory, queries/s and Recall@10 of each backend.

Data: ``--size`` (1,000,000) random-but-clustered unit vectors of D = 64: ``--clusters`` (2,000) Gaussian
centres on the unit sphere, each point a centre plus N(0, ``--noise``²) per coordinate (0.1: a point's cosine to
its centre is about 0.78, to a point of its own cluster about 0.6, to another cluster's about 0), normalised;
``--queries`` (1,000) drawn the same way (fresh noise, not copies of database points). Seeded.

Per backend, through :class:`~jointembed.search.index.EmbeddingIndex` (what users run):

- build: ``index.add`` of all rows with integer keys, timed; the resident memory it adds (``build_extra_mb``:
  the index's copy of the vectors, its keys and the backend's structure) and its peak above the start;
- search: the queries as one batch through ``search_positions`` (``queries_per_s``) and through ``search``,
  which also makes the ``Hit`` lists (``queries_per_s_hits``); best of ``--rounds``, every candidate once per
  round (interleaved, so a change in machine load hits all alike); ``search_peak_extra_mb`` is the resident
  memory a batch adds at its peak (the exact backend's score blocks);
- ``recall_at_10``: the share of the exact top 10 that the backend returns; the exact top 10 is scored in
  float64 apart from every backend, so the exact torch and flat lines check themselves (1.0 unless a float32
  near-tie at rank 10 swaps).

HNSW (``M`` = 32) is built once and searched at each ``--ef-search`` value; IVF-flat and IVF-PQ (nlist 1024,
PQ 16×8) at each ``--nprobe``. One JSON line per backend and setting, each with the thread count and the load
average at the start and the end of the run. Memory figures read ``/proc/self/status`` (Linux; ``null``
elsewhere).

Targets on a 2-core machine, one thread: exact torch at least FAISS flat's queries/s; HNSW at least 5,000
queries/s at Recall@10 >= 0.95 at some efSearch (``meets_target`` on those lines). The default run took 9 minutes
on 2 cores with one thread (6 of them the HNSW build) and 5 with ``--threads 2``; ``--size 100000`` about 2:

    python benchmarks/search.py [--threads 1] [--size 1000000] [--queries 1000] [--backends exact,flat,hnsw]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from jointembed.search.index import EmbeddingIndex

K = 10
HNSW_QPS, HNSW_RECALL = 5000.0, 0.95
CHUNK = 65536  # rows generated at a time: temporaries stay a few MB


def _clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> np.ndarray:
    """``(n, D)`` float32 unit rows: a random centre each plus Gaussian noise, generated in chunks."""
    out = np.empty((n, centres.shape[1]), np.float32)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        block = rng.standard_normal((rows, centres.shape[1]), dtype=np.float32)
        block *= np.float32(noise)
        block += centres[rng.integers(0, len(centres), rows)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + rows] = block
    return out


def _status_mb(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in MB, or ``None`` where there is none."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def _measured(fn: Callable[[], Any]) -> tuple[Any, float, float | None, float | None]:
    """``fn()``'s result, seconds, resident MB it left behind and its peak resident MB above the start (the
    kernel's high-water mark is reset first through /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        peak_resets = True
    except OSError:
        peak_resets = False
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    after, peak = _status_mb("VmRSS"), _status_mb("VmHWM")
    if before is None or after is None:
        return result, seconds, None, None
    return result, seconds, after - before, (peak - before if peak_resets and peak is not None else None)


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _build(backend: str, options: dict[str, Any], vectors: np.ndarray) -> dict[str, Any]:
    """An index of ``vectors`` on ``backend``, with its build time and memory."""

    def build() -> EmbeddingIndex:
        index = EmbeddingIndex(vectors.shape[1], backend, options)
        index.add(vectors, range(len(vectors)), "vector")
        return index

    index, seconds, extra, peak = _measured(build)
    return {
        "index": index,
        "build_s": round(seconds, 2),
        "build_extra_mb": _mb(extra),
        "build_peak_extra_mb": _mb(peak),
    }


def _candidates(args: argparse.Namespace, vectors: np.ndarray) -> list[dict[str, Any]]:
    """One entry per backend and search setting; the settings of one backend share its build."""
    out = []
    for backend in args.backends:
        if backend == "hnsw":
            options = {"M": args.hnsw_m, "ef_construction": args.ef_construction}
            built = _build(backend, options, vectors)
            for ef in args.ef_search:
                setting = {**options, "ef_search": ef}
                out.append({**built, "backend": backend, "setting": setting, "knob": ("ef_search", ef)})
        elif backend in ("ivf_flat", "ivf_pq"):
            options = {"nlist": args.nlist, **({"m": 16, "nbits": 8} if backend == "ivf_pq" else {})}
            built = _build(backend, options, vectors)
            for nprobe in args.nprobe:
                setting = {**options, "nprobe": nprobe}
                out.append({**built, "backend": backend, "setting": setting, "knob": ("nprobe", nprobe)})
        else:
            out.append({**_build(backend, {}, vectors), "backend": backend, "setting": {}, "knob": None})
        print(f"built {backend} in {out[-1]['build_s']} s", file=sys.stderr, flush=True)
    return out


def _select(candidate: dict[str, Any]) -> EmbeddingIndex:
    """The candidate's index with its search knob (efSearch, nprobe) set: the backend reads it at each search."""
    index = candidate["index"]
    if candidate["knob"] is not None:
        name, value = candidate["knob"]
        index.backend.options[name] = value
    return index


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top k among the k found (``(q, k)`` positions each)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _truth(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """``(q, k)`` positions of the true top k by cosine, scored in float64 (independent of every backend)."""
    q = torch.from_numpy(queries).double()
    best_s = torch.full((len(q), k), float("-inf"), dtype=torch.float64)
    best_i = torch.full((len(q), k), -1, dtype=torch.long)
    for start in range(0, len(vectors), CHUNK // 4):
        block = q @ torch.from_numpy(vectors[start : start + CHUNK // 4]).double().T
        s, i = block.topk(min(k, block.shape[1]), dim=1)
        merged_s, merged_i = torch.cat([best_s, s], 1), torch.cat([best_i, i + start], 1)
        order = merged_s.topk(k, dim=1).indices
        best_s, best_i = merged_s.gather(1, order), merged_i.gather(1, order)
    return best_i.numpy()


def _timed(fn: Callable[[], Any], min_s: float = 0.25) -> float:
    """Seconds per call of ``fn``, calling it until ``min_s`` have passed (a fast batch alone is too short to time
    on a shared machine)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls, elapsed = calls + 1, time.perf_counter() - start
        if elapsed >= min_s:
            return elapsed / calls


def _search_all(
    candidates: list[dict[str, Any]], queries: np.ndarray, truth: np.ndarray, rounds: int, min_s: float
) -> None:
    """Recall and peak memory from one warm-up search of each candidate, then ``rounds`` interleaved timings."""
    for candidate in candidates:
        index = _select(candidate)
        (_, positions), _, _, peak = _measured(lambda index=index: index.search_positions(queries, K))
        candidate["recall_at_10"] = round(_recall(positions, truth), 4)
        candidate["search_peak_extra_mb"] = _mb(peak)
        candidate["times"], candidate["times_hits"] = [], []
    for _ in range(rounds):
        for candidate in candidates:
            index = _select(candidate)
            candidate["times"].append(_timed(lambda index=index: index.search_positions(queries, K), min_s))
            candidate["times_hits"].append(_timed(lambda index=index: index.search(queries, K), min_s))


def _target(candidate: dict[str, Any], candidates: list[dict[str, Any]]) -> tuple[str | None, bool | None]:
    """The issue's target for this line and whether it is met (``None``: no target, or nothing to compare)."""
    if candidate["backend"] == "exact":
        flat = [c for c in candidates if c["backend"] == "flat"]
        met = candidate["queries_per_s"] >= flat[0]["queries_per_s"] if flat else None
        return "queries_per_s >= flat's", met
    if candidate["backend"] == "hnsw":
        met = candidate["queries_per_s"] >= HNSW_QPS and candidate["recall_at_10"] >= HNSW_RECALL
        return f"queries_per_s >= {HNSW_QPS:.0f} and recall_at_10 >= {HNSW_RECALL}", met
    return None, None


def _args() -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(part) for part in text.split(",")]

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="database vectors")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.1, help="per-coordinate noise around a unit centre")
    parser.add_argument("--threads", type=int, default=1, help="torch and FAISS (OpenMP) threads")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best counts")
    parser.add_argument("--min-seconds", type=float, default=0.25, help="a timing repeats a batch for this long")
    parser.add_argument("--backends", type=lambda text: text.split(","), default="exact,flat,hnsw,ivf_flat,ivf_pq")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", type=ints, default="16,32,64,128,256")
    parser.add_argument("--nlist", type=int, default=1024, help="IVF lists")
    parser.add_argument("--nprobe", type=ints, default="8,32", help="IVF lists searched")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = _args()
    started, load_start = time.perf_counter(), os.getloadavg()
    torch.set_num_threads(args.threads)
    if any(backend != "exact" for backend in args.backends):
        import faiss

        faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = _clustered(rng, centres, args.size, args.noise)
    queries = _clustered(rng, centres, args.queries, args.noise)
    truth = _truth(queries, vectors, K)
    candidates = _candidates(args, vectors)
    _search_all(candidates, queries, truth, args.rounds, args.min_seconds)
    for candidate in candidates:
        candidate["queries_per_s"] = round(args.queries / min(candidate["times"]), 1)
        candidate["queries_per_s_hits"] = round(args.queries / min(candidate["times_hits"]), 1)
    common = {"size": args.size, "dim": args.dim, "queries": args.queries, "k": K, "threads": args.threads}
    load_end, wall = os.getloadavg(), round(time.perf_counter() - started, 1)
    for candidate in candidates:
        target, met = _target(candidate, candidates)
        figures = {"backend": candidate["backend"], "setting": candidate["setting"], **common}
        for name in ("build_s", "build_extra_mb", "build_peak_extra_mb", "search_peak_extra_mb"):
            figures[name] = candidate[name]
        for name in ("queries_per_s", "queries_per_s_hits", "recall_at_10"):
            figures[name] = candidate[name]
        figures.update(target=target, meets_target=met, run_s=wall)
        figures.update(
            load_average_start=[round(x, 2) for x in load_start], load_average_end=[round(x, 2) for x in load_end]
        )
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
