"""benchmarks/sparse_train.py runs every candidate on a tiny table and prints one JSON line each (no timing
is checked: only that the lines are there and well formed)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sparse_train.py"
FIELDS = {"candidate", "ids", "threads", "m_lookups_per_s", "ms_per_step", "distinct_rows_per_step"}


def test_sparse_train_benchmark_prints_one_line_per_candidate_and_setting():
    command = [sys.executable, str(SCRIPT), "--rows", "2000", "--bags", "4", "--bag-size", "16", "--rounds", "1"]
    command += ["--steps", "2", "--distinct-batches", "2", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    measured = [line for line in lines if "note" not in line]
    assert {(line["candidate"], line["ids"]) for line in lines} >= {
        (name, ids)
        for name in ("lazy_adam", "lazy_adam_before", "rowwise_adagrad", "torch_sgd", "forward_only")
        for ids in ("zipf", "uniform")
    }
    for line in measured:
        assert FIELDS <= set(line) and line["m_lookups_per_s"] > 0 and line["threads"] == 1
        assert len(line["load_average_1min"]) == 1
