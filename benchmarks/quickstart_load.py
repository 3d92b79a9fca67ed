"""The quickstart on a machine that is not idle: one epoch of ``recipes/digits_multimodal.yaml`` (train, validate,
test, write the pretrained folder) with torch's default threads against the threads ``jointembed`` chooses, each
alone and beside busy processes (one spinning Python process per ``--busy``). Prints one JSON line per case and
number of busy processes: wall and CPU seconds (best of ``--rounds``, cases interleaved), the threads and OpenMP
wait policy the run had, the load average before and after, and the test R@1 (the same in every case).

Cases: ``torch`` runs the training subcommand without the console script's thread choice (torch's defaults: one
intra-op thread per core, OpenMP threads that spin while they wait); ``jointembed`` runs ``python -m jointembed``
as a user would; ``torch+NAME=VALUE+...`` is ``torch`` with environment variables set (e.g.
``torch+OMP_NUM_THREADS=1``, ``torch+OMP_WAIT_POLICY=PASSIVE``).

Usage: python benchmarks/quickstart_load.py [--cases torch jointembed] [--busy 0 2] [--rounds 1]
       [--limit-train-batches 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "digits_multimodal.yaml"
# The training subcommand without the console script's thread choice: what torch does by itself.
_TORCH_DEFAULTS = "import sys; from jointembed.lightning_cli import run; sys.exit(run(sys.argv[1:]))"
_CHOSEN = re.compile(r"jointembed: (\d+) intra-op threads?")


def _command(case: str) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment variables of one case (see the module docstring)."""
    name, *settings = case.split("+")
    env = dict(setting.split("=", 1) for setting in settings)
    if name == "jointembed" and not env:
        return [sys.executable, "-m", "jointembed"], env
    if name == "torch":
        return [sys.executable, "-c", _TORCH_DEFAULTS], env
    raise SystemExit(f"unknown case {case!r}: use torch, jointembed or torch+NAME=VALUE+...")


def _run(case: str, folder: Path, limit_train_batches: float) -> dict:
    """Run one epoch of the recipe in ``folder``; wall and CPU seconds (user + system), threads, test R@1."""
    command, extra_env = _command(case)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "GOMP_", "KMP_"))}
    env.update(extra_env)
    args = ["fit", "--config", str(RECIPE), "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.limit_train_batches", str(limit_train_batches)]
    start = time.perf_counter()
    child = subprocess.Popen(
        [*command, *args], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{case} failed:\n{output[-3000:]}")
    metrics = json.loads(max(folder.glob("runs/digits_multimodal/version_*/test_metrics.json")).read_text())
    chosen = _CHOSEN.search(output)
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "threads": int(chosen.group(1)) if chosen else int(extra_env.get("OMP_NUM_THREADS", os.cpu_count())),
        "wait_policy": "PASSIVE" if "PASSIVE" in output else extra_env.get("OMP_WAIT_POLICY", "default"),
        "test_R@1": round(metrics["test/R@1"], 4),
    }


def _spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["torch", "jointembed"])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, len(os.sched_getaffinity(0))])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--limit-train-batches", type=float, default=1.0, help="a fraction (<= 1.0) or a count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quickstart-load-") as tmp:
        for busy in args.busy:
            results: dict[str, list[dict]] = {case: [] for case in args.cases}
            spinners = _spinners(busy)
            try:
                for round_ in range(args.rounds):
                    for case in args.cases:  # interleaved, so a change in the machine's load hits every case
                        folder = Path(tmp) / f"{busy}-{round_}-{case}"
                        folder.mkdir()
                        (folder / "datasets").symlink_to(REPO / "datasets")
                        load_start = os.getloadavg()[0]
                        result = _run(case, folder, args.limit_train_batches)
                        result.update(load_start=round(load_start, 2), load_end=round(os.getloadavg()[0], 2))
                        results[case].append(result)
            finally:
                for spinner in spinners:
                    spinner.kill()
                    spinner.wait()
            for case, runs in results.items():
                best = min(runs, key=lambda r: r["wall_s"])
                line = {"case": case, "busy_processes": busy, **best, "wall_s_all": [r["wall_s"] for r in runs]}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
