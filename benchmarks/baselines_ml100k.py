"""Popularity and EASE on MovieLens 100K under leave-last-out; prints one JSON line.

    python benchmarks/baselines_ml100k.py --path ../shared/data/movielens/ml-100k

Protocol: each user's last watch (by timestamp) is the test target, the one before it the validation target
(``temporal_split(n_val=1, n_test=1)``). Every rating counts as a watch. Items the user has already watched are
excluded and the rest of the full catalogue is ranked. EASE's λ is chosen by validation NDCG@10 with the model
fit on train; the test numbers come from models refit on train + validation (= the leave-last-out train set).
The λ sweep lists validation NDCG@10 and test NDCG@10 and HR@10 for every λ.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from jointembed.baselines import EASE, PopularityRecommender
from jointembed.data.interactions import Histories, temporal_split
from jointembed.data.movielens import read_movielens
from jointembed.metrics.ranking import evaluate_rankings


def evaluate(model, train: Histories, targets: Histories, k: int) -> dict[str, float]:
    """Fit on ``train``, rank the unseen catalogue for every user with a target, return the metrics at k."""
    users = np.flatnonzero(targets.lengths() > 0)
    top = model.fit(train).recommend(train, users, k=k, exclude_seen=True)
    metrics = evaluate_rankings(top, targets, train.num_items, users=users)
    return {name: round(value, 4) if isinstance(value, float) else value for name, value in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="folder holding ml-100k's u.data and u.item")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--l2", type=float, nargs="+", default=[50, 100, 200, 500, 1000], help="EASE λ values")
    args = parser.parse_args()
    start = time.perf_counter()
    data = read_movielens(args.path)
    train, val, test = temporal_split(data, n_val=1, n_test=1)
    train_val = train.concat_rows(val)
    k = args.k
    sweep = []
    for l2 in args.l2:
        val_metrics = evaluate(EASE(l2), train, val, k)
        test_metrics = evaluate(EASE(l2), train_val, test, k)
        sweep.append(
            {
                "l2": l2,
                f"val_ndcg@{k}": val_metrics[f"ndcg@{k}"],
                f"test_ndcg@{k}": test_metrics[f"ndcg@{k}"],
                f"test_hr@{k}": test_metrics[f"hr@{k}"],
            }
        )
    best = max(sweep, key=lambda row: row[f"val_ndcg@{k}"])["l2"]
    result = {
        "dataset": "ml-100k",
        "protocol": "leave-last-out, exclude seen, full catalogue",
        "events": len(data),
        "users": data.num_users,
        "items": data.num_items,
        "popularity": evaluate(PopularityRecommender(), train_val, test, k),
        "ease": {"l2": best, **evaluate(EASE(best), train_val, test, k)},
        "ease_sweep": sweep,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
