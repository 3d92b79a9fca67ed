"""Smoke test of benchmarks/recommend_timesplit.py: one short run (one epoch, one seed, one recipe) under the global
time split gives one JSON line with the split's sizes, the recipe's metrics and its comparison with the baselines."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "recommend_timesplit.py"
ML100K = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens" / "ml-100k"


@pytest.mark.slow
@pytest.mark.skipif(not ML100K.is_dir(), reason=f"MovieLens 100K is not at {ML100K}")
def test_recommend_timesplit_writes_the_split_and_the_comparisons(tmp_path: Path) -> None:
    out = tmp_path / "timesplit.json"
    command = [sys.executable, str(SCRIPT), "--path", str(ML100K), "--seeds", "0", "--recipes", "movielens",
               "--out", str(out), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "5"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures == json.loads(out.read_text())
    assert figures["protocol"] == "global_time" and figures["time_split"] == [0.8, 0.9]
    assert figures["split"]["test_users"] == 90 and figures["split"]["test_users_without_input"] == 76
    recipe = figures["seeds"]["0"]["movielens"]
    assert 0 <= recipe["ndcg@10"] <= recipe["hr@10"] <= 1
    for baseline in ("ease", "popularity"):
        comparison = recipe[f"vs_{baseline}"]["hr@10"]
        assert comparison["low"] <= comparison["difference"] <= comparison["high"] and 0 < comparison["p_value"] <= 1
