import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("faiss")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "search.py"
FIELDS = {
    "backend",
    "setting",
    "size",
    "queries",
    "threads",
    "build_s",
    "build_extra_mb",
    "search_peak_extra_mb",
    "queries_per_s",
    "queries_per_s_hits",
    "recall_at_10",
    "target",
    "meets_target",
    "load_average_start",
    "load_average_end",
}


def test_search_benchmark_prints_one_line_per_setting():
    command = [sys.executable, str(SCRIPT), "--size", "5000", "--queries", "50", "--rounds", "1", "--min-seconds", "0"]
    command += ["--backends", "exact,flat,hnsw,ivf_flat", "--ef-search", "16,64", "--nlist", "16", "--nprobe", "16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["backend"], line["setting"].get("ef_search")) for line in lines] == [
        ("exact", None),
        ("flat", None),
        ("hnsw", 16),
        ("hnsw", 64),
        ("ivf_flat", None),
    ]
    for line in lines:
        assert FIELDS <= set(line), FIELDS - set(line)
        assert line["size"] == 5000 and line["queries"] == 50 and line["threads"] == 1
        assert line["queries_per_s"] > 0 and 0 <= line["recall_at_10"] <= 1
    by_backend = {line["backend"]: line for line in lines}
    assert by_backend["exact"]["recall_at_10"] == 1.0 and by_backend["flat"]["recall_at_10"] == 1.0
    assert by_backend["ivf_flat"]["recall_at_10"] == 1.0  # every list probed: exhaustive
    assert isinstance(by_backend["exact"]["meets_target"], bool)
    assert by_backend["flat"]["target"] is None
