"""Worker processes for tests/test_distributed.py (in an importable module, as spawned processes need).

Each worker joins a gloo group, computes a contrastive loss on its shard of one global batch with the
embeddings gathered from every process, runs backward and saves the loss and gradients for the parent to check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from multimodal_fixture import cluster_model, make_batch

from jointembed.distributed import gather_no_grad, gather_with_grad
from jointembed.losses.info_nce import InfoNCELoss
from jointembed.tasks.contrastive import ContrastiveTask, positives_from_labels

# Global batch of the embedding-level check, and each rank's (uneven) share of its rows.
SHARDS = [slice(0, 4), slice(4, 6)]
# Global batch of the task-level check: 8 examples, some modalities missing (rank 1 has no text at all), labels
# shared across ranks.
TASK_PRESENT = {"a": [1, 1, 0, 1, 1, 1, 1, 0], "b": [1, 0, 1, 1, 1, 1, 0, 1], "text": [1, 1, 1, 0, 0, 0, 0, 0]}
TASK_LABELS = [0, 1, 2, 0, 2, 1, -1, 0]
TASK_SHARDS = [slice(0, 4), slice(4, 8)]


def embedding_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit embeddings ``a``, ``b`` ``(6, 4)`` and labels ``(6,)`` (two examples share label 1)."""
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    return a, b, torch.tensor([0, 1, 2, 1, 3, 4])


def task_features() -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    text = [f"word{i} shared" for i in range(8)]
    return {"a": torch.randn(8, 4, generator=g), "b": torch.randn(8, 5, generator=g), "text": text}


def make_task() -> ContrastiveTask:
    torch.manual_seed(0)
    return ContrastiveTask(cluster_model(with_text=True), loss="info_nce")


def task_batch(rows: slice, present: dict[str, list[int]] = TASK_PRESENT) -> dict[str, Any]:
    features = task_features()
    return make_batch(
        {m: p[rows] for m, p in present.items()}, {m: f[rows] for m, f in features.items()}, TASK_LABELS[rows]
    )


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's gradient, zeros where none reached it (as DDP counts an unused parameter)."""
    return {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in module.named_parameters()}


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Run both checks on this rank and save ``{rank}.pt``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        a, b, labels = embedding_batch()
        local_a = a[SHARDS[rank]].clone().requires_grad_()
        local_b = b[SHARDS[rank]].clone().requires_grad_()
        loss_fn = InfoNCELoss(init_scale=5.0)
        gathered_labels = gather_no_grad(labels[SHARDS[rank]])
        loss = loss_fn(gather_with_grad(local_a), gather_with_grad(local_b), positives_from_labels(gathered_labels))
        loss.backward()
        task = make_task()
        task_loss = task.training_step(task_batch(TASK_SHARDS[rank]), 0)
        task_loss.backward()
        task_grads = grads(task)
        # no pair has two examples anywhere: a zero loss that still runs backward on every process
        task.zero_grad()
        lonely = {"a": [1] * 8, "b": [0] * 8, "text": [0] * 8}
        zero_loss = task.training_step(task_batch(TASK_SHARDS[rank], lonely), 0)
        zero_loss.backward()
        result = {
            "loss": loss.detach(),
            "grad_a": local_a.grad,
            "grad_b": local_b.grad,
            "grad_scale": loss_fn.log_scale.grad,
            "labels": gathered_labels,
            "task_loss": task_loss.detach(),
            "task_grads": task_grads,
            "zero_loss": zero_loss.detach(),
        }
        torch.save(result, Path(out_dir) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()
