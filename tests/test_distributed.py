"""Two gloo processes on CPU each hold half of a global batch; the gathered contrastive loss must equal the
single-process loss on the whole batch, and the gradients must follow the DDP convention.

Convention (see jointembed/distributed.py): every process computes the same global loss; the gather's backward
sums the gradient over processes, so a process's local embeddings get ``world_size ×`` the single-process
gradient of their rows, and DDP's *average* of parameter gradients equals the single-process gradient.
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from distributed_fixture import SHARDS, TASK_SHARDS, embedding_batch, grads, make_task, task_batch, worker

from jointembed.distributed import gather_no_grad, gather_with_grad, is_distributed, world_size
from jointembed.losses.info_nce import InfoNCELoss
from jointembed.tasks.contrastive import positives_from_labels

WORLD = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_not_initialised_returns_the_input() -> None:
    x = torch.randn(3, 2)
    assert not is_distributed() and world_size() == 1
    assert gather_with_grad(x) is x and gather_no_grad(x) is x


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_processes_match_the_single_process_loss_and_gradients(tmp_path: Path) -> None:
    mp.spawn(worker, args=(WORLD, _free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"{r}.pt") for r in range(WORLD)]

    # embedding level: uneven shards (4 + 2 rows), labels shared across processes
    a, b, labels = embedding_batch()
    a.requires_grad_(), b.requires_grad_()
    loss_fn = InfoNCELoss(init_scale=5.0)
    loss = loss_fn(a, b, positives_from_labels(labels))
    loss.backward()
    for r, result in enumerate(results):
        assert torch.equal(result["labels"], labels)
        torch.testing.assert_close(result["loss"], loss.detach())
        torch.testing.assert_close(result["grad_a"], WORLD * a.grad[SHARDS[r]])
        torch.testing.assert_close(result["grad_b"], WORLD * b.grad[SHARDS[r]])
        torch.testing.assert_close(result["grad_scale"], loss_fn.log_scale.grad)  # same global loss everywhere

    # task level: missing modalities and labels; DDP averages the parameter gradients over processes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        task = make_task()
        full = task.training_step(task_batch(slice(0, 8)), 0)
    full.backward()
    for result in results:
        torch.testing.assert_close(result["task_loss"], full.detach())
        assert float(result["zero_loss"]) == 0.0
    assert TASK_SHARDS == [slice(0, 4), slice(4, 8)]
    for name, grad in grads(task).items():
        averaged = sum(result["task_grads"][name] for result in results) / WORLD
        torch.testing.assert_close(averaged, grad, msg=lambda m, name=name: f"gradient of {name}: {m}")
    assert grads(task)["model.encoders.text.head.mlp.0.weight"].abs().sum() > 0  # text only on rank 0
