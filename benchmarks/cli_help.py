"""Time `jointembed --help` (must answer in under 2 s) and `import jointembed`; print one JSON line.

Usage: python benchmarks/cli_help.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    script = shutil.which("jointembed") or str(__import__("pathlib").Path(sys.executable).parent / "jointembed")
    figures = {
        "help_s": round(_time([script, "--help"], args.repeats), 3),
        "import_s": round(_time([sys.executable, "-c", "import jointembed"], args.repeats), 3),
        "fit_help_s": round(_time([script, "fit", "--help"], 1), 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
