"""MovieLens recipes under a global time split (train before a date, test after), against EASE and popularity.

Issue 19's guard against settings tuned to ml-100k's per-user leave-last-out split: the same recipes, unchanged
but for the data path and ``--data.init_args.protocol global_time``, run through ``recommend_seeds.py`` (one
fresh ``jointembed fit`` per recipe and seed, one thread, paired per-user intervals against each baseline).
The results file adds the split itself: its cut times and how many users each stage evaluates and leaves out.

    python benchmarks/recommend_timesplit.py --path /path/to/ml-100k
    python benchmarks/recommend_timesplit.py --path /path/to/ml-100k --seeds 0 --time_split 0.7 0.85

About 2 minutes a seed for the two default recipes, one run at a time, on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from jointembed.data.interactions import global_time_split
from jointembed.data.movielens import read_movielens
from jointembed.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]


def _split_figures(path: str, time_split: list[float]) -> dict[str, int]:
    """The cuts and stage sizes, as the data module computes them (deduplicated MovieLens watches)."""
    split = global_time_split(read_movielens(path).deduplicate(), *time_split)
    counts = {k: v for k, v in vars(split).items() if isinstance(v, int)}
    return counts | {
        "train_watches": split.train.nnz,
        "val_watches": split.val.nnz,
        "test_watches": split.test.nnz,
        "val_users": int(split.val_users.size),
        "test_users": int(split.test_users.size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True, help="the MovieLens folder")
    parser.add_argument("--time_split", nargs=2, type=float, default=[0.8, 0.9], help="validation and test cuts")
    parser.add_argument("--recipes", nargs="+", default=["movielens", "movielens_sasrec"])
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "recommend_timesplit.json"))
    args, override = parser.parse_known_args()  # the rest goes to fit, as in recommend_seeds.py
    cuts = f"[{args.time_split[0]}, {args.time_split[1]}]"
    command = [sys.executable, str(REPO / "benchmarks" / "recommend_seeds.py"), "--path", args.path,
               "--recipes", *args.recipes, "--seeds", *args.seeds, "--jobs", "1", "--out", args.out,
               "--data.init_args.protocol", "global_time", "--data.init_args.time_split", cuts, *override]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    figures = json.loads(Path(args.out).read_text())
    figures = {
        "protocol": "global_time",
        "time_split": args.time_split,
        "fit_settings": override,
        "split": _split_figures(args.path, args.time_split),
    } | figures
    atomic_write_json(args.out, figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
