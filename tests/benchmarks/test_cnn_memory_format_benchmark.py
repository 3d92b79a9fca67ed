import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cnn_memory_format.py"


def test_cnn_memory_format_benchmark_prints_one_line_per_encoder() -> None:
    command = [sys.executable, str(SCRIPT), "--batch-size", "4", "--rounds", "1"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["encoder"] for line in lines] == ["audio_cnn", "cnn_image_16px", "cnn_image_64px"]
    for line in lines:
        assert line["batch_size"] == 4 and line["threads"] == 1 and line["forward_speedup"] > 0
        assert line["max_abs_output_diff"] < 1e-5 and line["max_abs_grad_diff"] == 0.0
        assert 0 <= line["max_pool_share_channels_last"] <= 1 and line["batch_norm_error_contiguous"] < 1e-5
