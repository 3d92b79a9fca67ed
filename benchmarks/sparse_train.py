"""Training speed of a large sparse embedding table: jointembed's optimisers against torch's and FBGEMM's.

One training step embeds 256 bags of 320 IDs (82k lookups) from a 1,000,000 × 32 table (``SparseEmbedding``,
mean combiner, sparse gradients), takes a dot product with a fixed target as the loss, backpropagates and
steps the optimiser. IDs are Zipf-distributed (a = 1.2 over the ranks of the whole table, ranks shuffled over
the IDs: ~12k distinct rows a step) or uniform (~79k distinct). Candidates, each on its own copy of the table:

- ``lazy_adam``, ``rowwise_adagrad``: ``SparseEmbedding`` (whose gradient holds one row per distinct ID, by a
  numba kernel) with :class:`~jointembed.optim.LazyAdam` / :class:`~jointembed.optim.RowWiseAdagrad` (numba);
- ``lazy_adam_torch``, ``rowwise_adagrad_torch``: the same without numba, i.e. the fallback: autograd's
  per-lookup gradient and the optimisers' torch path;
- ``lazy_adam_before``: ``SparseEmbedding`` and LazyAdam as they were before the numba kernels;
- ``torch_sgd``, ``torch_sparse_adam``: ``nn.EmbeddingBag(mode="mean", sparse=True)`` with ``torch.optim.SGD``
  and ``torch.optim.SparseAdam``; ``torch_dense_adam_fused``: the same bag with dense gradients and
  ``torch.optim.Adam(fused=True)``;
- ``fbgemm_tbe_rowwise_adagrad``: FBGEMM's fused table-batched embedding (forward, backward and row-wise
  Adagrad in its own kernels), when ``fbgemm_gpu`` imports (``pip install fbgemm-gpu-cpu``; not a dependency);
- ``forward_only``: the ``nn.EmbeddingBag`` forward without gradients, an upper bound for any training step.

All candidates run interleaved in one process (a change in machine load hits all alike): each round times
``--steps`` steps of every candidate, in an order rotated from round to round; the best round counts. One JSON
line per candidate, ID distribution and thread count: lookups per second, milliseconds per step, and the load
average while it ran.

Usage (~3 minutes on 2 cores; ``--rows 100000 --rounds 2`` for a quick check)::

    python benchmarks/sparse_train.py [--threads 1 2] [--ids zipf uniform] [--rounds 5] [--steps 10]
    python benchmarks/sparse_train.py --profile lazy_adam   # where a candidate's step time goes
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from jointembed.nn import SparseEmbedding
from jointembed.optim import LazyAdam, RowWiseAdagrad
from jointembed.sparse import SparseBatch

Step = Callable[[SparseBatch], None]
CANDIDATES = (
    "lazy_adam",
    "lazy_adam_torch",
    "lazy_adam_before",
    "rowwise_adagrad",
    "rowwise_adagrad_torch",
    "torch_sgd",
    "torch_sparse_adam",
    "torch_dense_adam_fused",
    "fbgemm_tbe_rowwise_adagrad",
    "forward_only",
)


class SparseEmbeddingPlain(SparseEmbedding):
    """SparseEmbedding without numba: autograd's gradient of one row per lookup (the fallback path)."""

    def _merges_gradient(self, weights: torch.Tensor | None) -> bool:
        return False


class SparseEmbeddingBefore(SparseEmbedding):
    """SparseEmbedding's forward as it was before the numba kernels, kept to measure the change."""

    def forward(self, batch: SparseBatch) -> torch.Tensor:
        values, offsets = batch.values, batch.offsets
        self._check_ids(batch)
        weights = torch.ones(values.shape, dtype=self.weight.dtype, device=values.device)
        out = self.bag(values, offsets, per_sample_weights=weights)
        denom = torch.zeros(len(batch), dtype=out.dtype, device=out.device).index_add_(0, batch.bag_ids(), weights)
        return out / torch.where(denom == 0, torch.ones_like(denom), denom).unsqueeze(1)


class LazyAdamBefore(LazyAdam):
    """LazyAdam with the sparse update it had before the numba kernel, kept to measure the change."""

    def _sparse_step(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        lr, step = group["lr"], state["step"]
        rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
        values = grad._values()
        row_grad = values.new_zeros((rows.numel(), *values.shape[1:])).index_add_(0, inverse, values)
        exp_avg = state["exp_avg"].index_select(0, rows).lerp_(row_grad, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(row_grad, row_grad, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        update = exp_avg.div_(exp_avg_sq.div_(1 - beta2**step).sqrt_().add_(group["eps"]))
        param.index_add_(0, rows, update.mul_(-lr / (1 - beta1**step)))


def zipf_ids(rng: np.random.Generator, count: int, rows: int, exponent: float) -> np.ndarray:
    """``count`` IDs whose popularity ranks follow Zipf's law over ``rows`` ranks, ranks shuffled over IDs."""
    cdf = np.cumsum(np.arange(1, rows + 1, dtype=np.float64) ** -exponent)
    ranks = np.searchsorted(cdf / cdf[-1], rng.random(count))
    return rng.permutation(rows)[np.minimum(ranks, rows - 1)]


def make_batches(kind: str, args: argparse.Namespace) -> list[SparseBatch]:
    rng = np.random.default_rng(args.seed)
    offsets = torch.arange(args.bags) * args.bag_size
    batches = []
    for _ in range(args.distinct_batches):
        count = args.bags * args.bag_size
        ids = zipf_ids(rng, count, args.rows, args.zipf) if kind == "zipf" else rng.integers(0, args.rows, count)
        batches.append(SparseBatch(torch.from_numpy(ids), offsets))
    return batches


def _train_step(table: torch.nn.Module, optimizer: torch.optim.Optimizer, target: torch.Tensor) -> Step:
    def step(batch: SparseBatch) -> None:
        (table(batch) * target).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


class TorchBag(torch.nn.Module):
    """``nn.EmbeddingBag(mode="mean")`` on a SparseBatch: the table as a torch user writes it."""

    def __init__(self, rows: int, dim: int, sparse: bool) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(rows, dim, mode="mean", sparse=sparse)
        torch.nn.init.normal_(self.bag.weight, std=dim**-0.5)

    def forward(self, batch: SparseBatch) -> torch.Tensor:
        return self.bag(batch.values, batch.offsets)


def _fbgemm_step(args: argparse.Namespace, target: torch.Tensor) -> Step:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation, PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
        ComputeDevice,
        SplitTableBatchedEmbeddingBagsCodegen,
    )

    tbe = SplitTableBatchedEmbeddingBagsCodegen(
        [(args.rows, args.dim, EmbeddingLocation.HOST, ComputeDevice.CPU)],
        optimizer=EmbOptimType.EXACT_ROWWISE_ADAGRAD,
        learning_rate=0.01,
        eps=1e-8,
        pooling_mode=PoolingMode.MEAN,
    )
    ends = torch.tensor([args.bags * args.bag_size])

    def step(batch: SparseBatch) -> None:
        (tbe(batch.values, torch.cat([batch.offsets, ends])) * target).sum().backward()

    return step


def _forward_only(table: TorchBag) -> Step:
    def step(batch: SparseBatch) -> None:
        with torch.no_grad():
            table(batch)

    return step


def candidates(args: argparse.Namespace) -> tuple[dict[str, Step], dict[str, str]]:
    """Every chosen candidate's step function, and a note for each one skipped."""
    chosen = set(args.candidates or CANDIDATES)
    target = torch.randn(args.bags, args.dim, generator=torch.Generator().manual_seed(args.seed))
    stacks = {
        "lazy_adam": (SparseEmbedding, lambda p: LazyAdam(p, lr=1e-3, backend="numba")),
        "lazy_adam_torch": (SparseEmbeddingPlain, lambda p: LazyAdam(p, lr=1e-3, backend="torch")),
        "lazy_adam_before": (SparseEmbeddingBefore, lambda p: LazyAdamBefore(p, lr=1e-3)),
        "rowwise_adagrad": (SparseEmbedding, lambda p: RowWiseAdagrad(p, lr=0.01, backend="numba")),
        "rowwise_adagrad_torch": (SparseEmbeddingPlain, lambda p: RowWiseAdagrad(p, lr=0.01, backend="torch")),
    }
    torch_stacks = {
        "torch_sgd": (True, lambda p: torch.optim.SGD(p, lr=0.1)),
        "torch_sparse_adam": (True, lambda p: torch.optim.SparseAdam(list(p), lr=1e-3)),
        "torch_dense_adam_fused": (False, lambda p: torch.optim.Adam(p, lr=1e-3, fused=True)),
    }
    steps: dict[str, Step] = {}
    skipped: dict[str, str] = {}
    for name in CANDIDATES:
        if name not in chosen:
            continue
        torch.manual_seed(args.seed)
        if name in stacks:
            module, make = stacks[name]
            table = module(args.rows, args.dim, combiner="mean", sparse=True)
            steps[name] = _train_step(table, make(table.parameters()), target)
        elif name in torch_stacks:
            sparse, make = torch_stacks[name]
            table = TorchBag(args.rows, args.dim, sparse)
            steps[name] = _train_step(table, make(table.parameters()), target)
        elif name == "fbgemm_tbe_rowwise_adagrad":
            try:
                steps[name] = _fbgemm_step(args, target)
            except ImportError as error:
                skipped[name] = f"skipped: fbgemm_gpu does not import ({error})"
        else:
            steps[name] = _forward_only(TorchBag(args.rows, args.dim, sparse=True))
    return steps, skipped


def measure(steps: dict[str, Step], batches: list[SparseBatch], args: argparse.Namespace) -> dict[str, dict]:
    """Best-of-rounds seconds per step of every candidate, interleaved; plus the load while each ran."""
    for step in steps.values():  # warm up: first-touch of the state, numba compilation, allocator
        for batch in batches[:2]:
            step(batch)
    best = dict.fromkeys(steps, float("inf"))
    loads: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_ in range(args.rounds):
        # Rotate the order each round: a candidate run right after one that sweeps the caches (or the whole
        # table) starts cold, and the best round should not depend on a fixed neighbour.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            step = steps[name]
            start = time.perf_counter()
            for i in range(args.steps):
                step(batches[i % len(batches)])
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
            loads[name].append(os.getloadavg()[0])
    return {name: {"seconds": best[name], "load": loads[name]} for name in steps}


def profile(steps: dict[str, Step], batches: list[SparseBatch], args: argparse.Namespace) -> None:
    """Print the operators that take a candidate's step time (torch.profiler, self CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for name, step in steps.items():
        for batch in batches[:2]:
            step(batch)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(args.steps):
                step(batches[i % len(batches)])
        print(f"== {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--bags", type=int, default=256)
    parser.add_argument("--bag-size", type=int, default=320)
    parser.add_argument("--zipf", type=float, default=1.2, help="exponent of the Zipf IDs")
    parser.add_argument("--ids", nargs="+", choices=["zipf", "uniform"], default=["zipf", "uniform"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per candidate and round")
    parser.add_argument("--distinct-batches", type=int, default=8)
    parser.add_argument("--candidates", nargs="*", choices=CANDIDATES, help="run only these (default: all)")
    parser.add_argument("--profile", nargs="*", choices=CANDIDATES, help="profile these instead of timing")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = _args()
    if args.profile is not None:
        args.candidates = args.profile or None
    steps, skipped = candidates(args)
    lookups = args.bags * args.bag_size
    for kind in args.ids:
        batches = make_batches(kind, args)
        distinct = float(np.mean([b.values.unique().numel() for b in batches]))
        for threads in args.threads:
            torch.set_num_threads(threads)
            if args.profile is not None:
                profile(steps, batches, args)
                continue
            results = measure(steps, batches, args)
            for name, result in results.items():
                figures = {
                    "candidate": name,
                    "ids": kind,
                    "threads": threads,
                    "m_lookups_per_s": round(lookups / result["seconds"] / 1e6, 2),
                    "ms_per_step": round(result["seconds"] * 1e3, 2),
                    "distinct_rows_per_step": round(distinct),
                    "load_average_1min": [round(x, 2) for x in result["load"]],
                }
                print(json.dumps(figures), flush=True)
            for name, note in skipped.items():
                print(json.dumps({"candidate": name, "ids": kind, "threads": threads, "note": note}), flush=True)


if __name__ == "__main__":
    main()
