"""Smoke test of benchmarks/recommend_seeds.py: two short runs (one epoch of each recipe, one seed) give one JSON
line with each recipe's metrics, its comparison with the baselines and the second recipe's with the first."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "recommend_seeds.py"
ML100K = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens" / "ml-100k"


@pytest.mark.slow
@pytest.mark.skipif(not ML100K.is_dir(), reason=f"MovieLens 100K is not at {ML100K}")
def test_recommend_seeds_writes_one_line_of_figures(tmp_path: Path) -> None:
    out = tmp_path / "seeds.json"
    command = [sys.executable, str(SCRIPT), "--path", str(ML100K), "--seeds", "0", "--out", str(out),
               "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "5"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures == json.loads(out.read_text())
    seed = figures["seeds"]["0"]
    assert sorted(seed) == ["movielens", "movielens_sasrec"]
    for recipe in seed.values():
        assert 0 <= recipe["hr@10"] <= 1 and 0 <= recipe["ndcg@10"] <= recipe["hr@10"]
        comparison = recipe["vs_ease"]["hr@10"]
        assert comparison["low"] <= comparison["difference"] <= comparison["high"] and 0 < comparison["p_value"] <= 1
    assert set(seed["movielens_sasrec"]["vs_movielens"]) == {"hr@10", "ndcg@10"}
