import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "recommend_serving.py"


def test_recommend_serving_benchmark_prints_one_line_per_candidate() -> None:
    backends = "flat,hnsw" if importlib.util.find_spec("faiss") is not None else ""
    command = [sys.executable, str(SCRIPT), "--items", "3000", "--dims", "8", "--clusters", "20"]
    command += ["--single-users", "3", "--batch-users", "40", "--rounds", "1", "--backends", backends]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    lines = {line["candidate"]: line for line in map(json.loads, result.stdout.splitlines())}
    assert list(lines) == ["row_top_k", "blocked_top_k", "top_k", *filter(None, backends.split(","))]
    assert lines["row_top_k"]["same_ids_as_blocked_top_k"] is True
    assert lines["top_k"]["single_same_ids_as_blocked_top_k"] is True  # the numba scan, one user at a time
    assert lines["blocked_top_k"]["recall_at_10"] == 1.0 and lines["top_k"]["recall_at_10"] == 1.0
    for line in lines.values():
        assert line["items"] == 3000 and line["dim"] == 8 and line["threads"] == 1
        assert line["single_ms_per_user"] > 0 and line["batch_users_per_s"] > 0 and 0 <= line["recall_at_10"] <= 1
    if backends:
        assert lines["flat"]["recall_at_10"] >= 0.99 and lines["hnsw"]["setting"] == {"M": 32, "ef_search": 64}
