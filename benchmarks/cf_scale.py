"""Movie recommendation at the motivating scale: 1,000,000 movies × 500,000 users on CPU.

Generates the movie world (pool factor 16, the ``issue`` preset), trains the embedding network (one epoch by
default: every training user once, a random 20% of their watches as targets predicted together from the rest,
sampled softmax with log-Q correction, LazyAdam on sparse gradients), then ranks the full catalogue for a sample
of held-out users (never seen in training, scored from a fold-in part of their history) and prints one JSON
line: watch events, examples/s, seconds per epoch and where they went (``epoch_breakdown_s``: data, forward,
loss, backward, optimiser, other), peak resident memory, Recall@10 of the model and of the popularity baseline,
and how well the learned movie embeddings recover the two named true aspects (R² of a linear probe on the
20,000 most-watched movies).

Targets (issue 3): an epoch under 10 minutes and peak memory under 6 GB on 2 CPU cores; recall well above
popularity (issue 12: an epoch under 30 s on an idle machine at the same recall and memory). Usage (about 4
minutes on 2 cores, 3 of them generating the world; ``--movies 20000 --users 10000 --held-out-fraction 0.2``
for a quick check; ``--targets-per-user 2`` for one target per example; ``--optimizer rowwise_adagrad --lr 0.1
--dense-lr 0.01`` for row-wise Adagrad; ``JOINTEMBED_NUMBA=0`` for the torch paths):

    python benchmarks/cf_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import lightning.pytorch as pl
import numpy as np
import torch

from jointembed.data.recommendation import MovieWorldDataModule
from jointembed.kernels import numba_available
from jointembed.losses.sampled_softmax import catalogue_losses
from jointembed.metrics.probe import linear_probe_r2
from jointembed.models.recommender import Recommender
from jointembed.tasks.recommendation import RecommendationTask


class EpochBreakdown(pl.Callback):
    """Where the training time goes, summed over the epoch: ``data`` (the loader making the next batch),
    ``forward`` (the model), ``loss`` (the catalogue loss's forward, e.g. sampled softmax), ``backward``,
    ``optimiser`` (the optimiser's step) and ``other`` (logging and Lightning's bookkeeping)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(("data", "forward", "loss", "backward", "optimiser", "other"), 0.0)
        self._mark = 0.0
        self._hooks: list = []

    def _lap(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] += now - self._mark
        self._mark = now

    def on_train_epoch_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        if not self._hooks:  # the loss exists once the data is bound
            self._hooks = [
                task.loss_fn.register_forward_pre_hook(lambda *_: self._lap("forward")),
                task.loss_fn.register_forward_hook(lambda *_: self._lap("loss")),
            ]
        self._mark = time.perf_counter()

    def on_train_batch_start(self, *_) -> None:
        self._lap("data")

    def on_before_backward(self, *_) -> None:
        self._lap("other")

    def on_after_backward(self, *_) -> None:
        self._lap("backward")

    def on_before_optimizer_step(self, *_) -> None:
        self._lap("other")

    def on_train_batch_end(self, *_) -> None:
        self._lap("optimiser")

    def on_train_end(self, *_) -> None:
        for hook in self._hooks:
            hook.remove()


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movies", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--mean-watches", type=float, default=50.0)
    parser.add_argument("--pool-factor", type=int, default=16, help="candidates per watch in the generator")
    parser.add_argument("--temperature", type=float, default=1.0, help="taste temperature of the generator")
    parser.add_argument("--held-out-fraction", type=float, default=0.01, help="share of users held out for test")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--target-fraction", type=float, default=0.2, help="share of each user's watches as targets")
    parser.add_argument("--targets-per-user", type=int, default=None, help="one-target examples instead, N per user")
    parser.add_argument("--batch-size", type=int, default=256, help="users (or examples) per step")
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--max-history", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate of the embedding tables")
    parser.add_argument("--dense-lr", type=float, default=1e-3, help="learning rate of the tower")
    parser.add_argument("--optimizer", choices=["lazy_adam", "rowwise_adagrad"], default="lazy_adam")
    parser.add_argument("--embedding-dim", type=int, default=None, help="default: suggest_embedding_dim(movies)")
    parser.add_argument("--hidden", type=int, nargs="*", default=[64], help="hidden layer widths of the tower")
    parser.add_argument("--combiner", choices=["sum", "mean", "sqrtn"], default="sqrtn")
    parser.add_argument("--loss", choices=catalogue_losses(), default="sampled_softmax")
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = _args()
    load_start = os.getloadavg()[0]
    pl.seed_everything(args.seed, verbose=False)
    start = time.perf_counter()
    data = MovieWorldDataModule(
        num_movies=args.movies,
        num_users=args.users,
        mean_watches=args.mean_watches,
        pool_factor=args.pool_factor,
        temperature=args.temperature,
        protocol="held_out_users",
        held_out_fraction=args.held_out_fraction,
        batch_size=args.batch_size,
        targets_per_user=args.targets_per_user,
        target_fraction=None if args.targets_per_user else args.target_fraction,
        max_history=args.max_history,
        max_eval_users=args.eval_users,
        seed=args.seed,
    )
    data.setup("fit")
    generate_s = time.perf_counter() - start
    model = Recommender(
        args.movies, args.embedding_dim, hidden_sizes=tuple(args.hidden), combiner=args.combiner, sparse=True
    )
    loss_config = {"num_samples": args.num_samples} if args.loss == "sampled_softmax" else {}
    task = RecommendationTask(
        model,
        loss=args.loss,
        loss_config=loss_config,
        lr=args.lr,
        dense_lr=args.dense_lr,
        optimizer=args.optimizer,
    )
    breakdown = EpochBreakdown()
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[breakdown],
    )
    dataset = data.train_dataloader().dataset
    examples = len(dataset)
    targets = dataset.num_targets() if hasattr(dataset, "num_targets") else examples
    start = time.perf_counter()
    trainer.fit(task, datamodule=data)
    epoch_s = (time.perf_counter() - start) / args.epochs

    split = data.split
    start = time.perf_counter()
    [result] = trainer.test(task, datamodule=data, verbose=False)
    eval_s = time.perf_counter() - start

    most_watched = np.argsort(-data.item_counts)[: min(20_000, args.movies)]
    learned = model.item_embeddings()[torch.from_numpy(most_watched)].numpy()
    r2 = linear_probe_r2(learned, data.world.movie_aspects[most_watched, :2])
    figures = {
        "movies": args.movies,
        "users": args.users,
        "watch_events": len(data.interactions),
        "train_examples_per_epoch": examples,
        "train_targets_per_epoch": targets,
        "embedding_dim": model.embedding_dim,
        "generate_and_split_s": round(generate_s, 1),
        "epoch_s": round(epoch_s, 1),
        "epoch_breakdown_s": {part: round(t / args.epochs, 1) for part, t in breakdown.seconds.items()},
        "optimizer": args.optimizer,
        "examples_per_s": round(examples / epoch_s),
        "targets_per_s": round(targets / epoch_s),
        "eval_users": int(split.test_users.size),
        "eval_s": round(eval_s, 1),
        "recall@10": round(result["test/recall@10"], 4),
        "ndcg@10": round(result["test/ndcg@10"], 4),
        "popularity_recall@10": round(result["test/baseline_popularity/recall@10"], 4),
        "probe_r2_children_adult": round(float(r2[0]), 3),
        "probe_r2_blockbuster_arthouse": round(float(r2[1]), 3),
        "peak_rss_gb": round(_peak_rss_gb(), 2),
        "threads": torch.get_num_threads(),
        "numba": numba_available(),
        "load_average_1min": [round(x, 2) for x in (load_start, os.getloadavg()[0])],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
