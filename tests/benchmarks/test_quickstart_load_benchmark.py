import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quickstart_load.py"


@pytest.mark.slow
def test_quickstart_load_benchmark_prints_one_line_per_case_and_busy_count() -> None:
    command = [sys.executable, str(SCRIPT), "--cases", "torch+OMP_NUM_THREADS=1", "jointembed", "--busy", "0", "1"]
    result = subprocess.run([*command, "--limit-train-batches", "2"], capture_output=True, text=True, check=True)
    lines = [json.loads(text) for text in result.stdout.splitlines()]
    assert [(line["case"], line["busy_processes"]) for line in lines] == [
        ("torch+OMP_NUM_THREADS=1", 0),
        ("jointembed", 0),
        ("torch+OMP_NUM_THREADS=1", 1),
        ("jointembed", 1),
    ]
    assert all(line["wall_s"] > 0 and line["cpu_s"] > 0 and len(line["wall_s_all"]) == 1 for line in lines)
    assert lines[0]["threads"] == 1 and lines[0]["wait_policy"] == "default"
    assert lines[1]["threads"] >= 1 and lines[1]["wait_policy"] == "PASSIVE"
    # one thread either way here: the same seeded run gives the same result
    if lines[1]["threads"] == 1:
        assert lines[0]["test_R@1"] == lines[1]["test_R@1"]
