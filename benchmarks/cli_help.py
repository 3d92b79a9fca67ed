"""Time `jointembed --help` (must answer in under 2 s), `import jointembed` and `jointembed fit --help`, with the
floor of the last (`import lightning.pytorch`: LightningCLI needs it) and the load average; print one JSON line.

Usage: python benchmarks/cli_help.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
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
    load_start = os.getloadavg()[0]
    script = shutil.which("jointembed") or str(__import__("pathlib").Path(sys.executable).parent / "jointembed")
    figures = {
        "load_average_start": round(load_start, 2),
        "help_s": round(_time([script, "--help"], args.repeats), 3),
        "import_s": round(_time([sys.executable, "-c", "import jointembed"], args.repeats), 3),
        "fit_help_s": round(_time([script, "fit", "--help"], args.repeats), 2),
        "lightning_import_s": round(_time([sys.executable, "-c", "import lightning.pytorch"], args.repeats), 2),
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
