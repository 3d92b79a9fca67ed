"""MovieLens recipes over several seeds, each against EASE and popularity and against each other, user by user.

Trains each recipe once per seed with ``jointembed fit`` (a fresh process, one thread, the recipe unchanged but
for the data path and the seed) and reads what the run wrote: ``test_metrics.json`` (the model's HR@10 and
NDCG@10, and its paired comparison with each baseline on the same users) and ``test_per_user.csv`` (from which
each later recipe is compared with the first, user by user). Prints one JSON line and writes it to ``--out``
(the results file the README quotes).

    python benchmarks/recommend_seeds.py --path /path/to/ml-100k
    python benchmarks/recommend_seeds.py --path /path/to/ml-100k --seeds 0 --recipes movielens --jobs 1
    python benchmarks/recommend_seeds.py --path /path/to/ml-100k --seeds 0 --trainer.max_epochs 1  # fit settings
    python benchmarks/recommend_seeds.py --path /path/to/ml-100k --recipes movielens_coldstart \
        --out benchmarks/results/coldstart_seeds.json   # the cold-start table's rows and comparisons, 8 minutes

About 10 minutes for the default (two recipes × three seeds, two runs at a time) on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from jointembed.io import atomic_write_json
from jointembed.metrics.significance import paired_comparison

REPO = Path(__file__).resolve().parents[1]
METRICS = ("hr@10", "ndcg@10")


def _fit(recipe: str, seed: int, path: str, folder: Path, override: list[str]) -> Path:
    """Run one recipe with one seed in ``folder`` (``override``: further command-line settings, for a smoke
    test); return its run folder."""
    folder.mkdir(parents=True)
    command = [sys.executable, "-m", "jointembed", "fit", "--config", str(REPO / "recipes" / f"{recipe}.yaml"),
               "--data.init_args.path", path, "--seed_everything", str(seed),
               "--trainer.enable_progress_bar", "false", *override]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{recipe} seed {seed} failed:\n{done.stderr[-3000:]}")
    (run,) = [p.parent for p in folder.glob("runs/*/version_*/test_metrics.json")]
    return run


def _per_user(run: Path) -> dict[str, np.ndarray]:
    with open(run / "test_per_user.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {column: np.array([float(row[column]) for row in rows]) for column in rows[0]}


def _rounded(comparison: Any) -> dict[str, float]:
    return {key: round(float(value), 4) for key, value in comparison._asdict().items() if key != "users"}


def _coldstart_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """A cold-start run: Recall@10 of every row of every segment, and the model's comparisons (Recall@10)."""
    result: dict[str, Any] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == "test_coldstart" and parts[3] == "recall@10":
            result.setdefault(parts[1], {})[parts[2]] = round(value, 4)
    for segment, rows in metrics.get("test_coldstart_vs", {}).items():
        for pair, comparison in rows.items():
            kept = {k: round(v, 4) for k, v in comparison["recall@10"].items() if k != "users"}
            result.setdefault(segment, {})[pair] = kept
    return result


def _summary(run: Path) -> dict[str, Any]:
    metrics = json.loads((run / "test_metrics.json").read_text())
    if "test_coldstart_vs" in metrics:
        return _coldstart_summary(metrics)
    result: dict[str, Any] = {metric: round(metrics[f"test/{metric}"], 4) for metric in METRICS}
    for baseline, comparisons in metrics["test/significance"].items():
        result[f"vs_{baseline}"] = {
            metric: {k: round(v, 4) for k, v in comparisons[metric].items() if k != "users"} for metric in METRICS
        }
        result[f"{baseline}_hr@10"] = round(metrics[f"test/baseline_{baseline}/hr@10"], 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True, help="the ml-100k folder")
    parser.add_argument("--recipes", nargs="+", default=["movielens", "movielens_sasrec"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one thread)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "recommend_seeds.json"))
    args, override = parser.parse_known_args()  # the rest goes to fit (e.g. a smoke test's --trainer.max_epochs 1)
    with tempfile.TemporaryDirectory(prefix="jointembed-seeds-") as tmp:
        jobs = [(recipe, seed) for seed in args.seeds for recipe in args.recipes]
        with ThreadPoolExecutor(args.jobs) as pool:
            folders = [Path(tmp) / f"{recipe}_{seed}" for recipe, seed in jobs]
            done = pool.map(lambda job, folder: _fit(*job, args.path, folder, override), jobs, folders)
            runs = dict(zip(jobs, done, strict=True))
        figures: dict[str, Any] = {"path": Path(args.path).name, "load": os.getloadavg()[0], "seeds": {}}
        first = args.recipes[0]
        for seed in args.seeds:
            figures["seeds"][seed] = {recipe: _summary(runs[recipe, seed]) for recipe in args.recipes}
            if not (runs[first, seed] / "test_per_user.csv").is_file():
                continue  # cold-start runs compare within their own table
            base = _per_user(runs[first, seed])
            for recipe in args.recipes[1:]:
                other = _per_user(runs[recipe, seed])
                assert (other["user"] == base["user"]).all(), "the runs' test users differ"
                figures["seeds"][seed][recipe][f"vs_{first}"] = {
                    metric: _rounded(paired_comparison(other[f"model_{metric}"], base[f"model_{metric}"]))
                    for metric in METRICS
                }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
