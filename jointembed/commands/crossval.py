"""``jointembed crossval``: k-fold cross-validation of a recipe, each fold a normal ``jointembed fit``.

For every fold in ``--folds`` the recipe is fitted with ``--<fold-key> <fold>`` (by default
``data.init_args.test_fold``, which :class:`~jointembed.data.class_folders.ClassFolderDataModule` holds out for
testing) plus any other overrides given, and tested as ``fit`` tests (the run's ``test_metrics.json``). The
command then prints, per test metric, each fold's value and the mean ± standard deviation over folds (sample
standard deviation, n − 1), and writes it all as JSON, rewritten after every fold so a stopped run keeps the
folds it finished. Each fold's wall-clock and CPU time and the load average are recorded beside its metrics,
so a run on a busy machine can be told from a slow one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jointembed.commands.common import FitPassThroughParser, UserError, run_command

__all__ = ["build_parser", "run", "parse_folds", "summarise", "format_table"]

EXAMPLES = """\
  jointembed crossval --config recipes/esc10.yaml --folds 1,2,3,4,5 --data.init_args.path /path/to/ESC-10
  jointembed crossval --config recipes/esc10.yaml --folds 1-5 --data.init_args.path /path/to/ESC-10 \\
      --metrics 'test/zeroshot_audio,test/R@1_text->audio' --output esc10_crossval.json
  (any other option is passed to each fold's fit, e.g. --trainer.max_epochs 5)
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's own options (``jointembed crossval --help``); the others go to each fold's ``fit``."""
    parser = FitPassThroughParser(
        "crossval",
        "Cross-validate a recipe: fit and test it once per fold (the fold held out for testing), then print and "
        "write each test metric per fold with its mean and standard deviation.",
        EXAMPLES,
    )
    parser.add_argument("--config", required=True, help="The recipe (as for jointembed fit).")
    parser.add_argument("--folds", required=True, help="Folds to hold out in turn: '1,2,3,4,5' or '1-5'.")
    parser.add_argument(
        "--fold-key",
        "--fold_key",
        default="data.init_args.test_fold",
        help="The recipe setting that selects the held-out fold (default: %(default)s).",
    )
    parser.add_argument(
        "--metrics", default=None, help="Comma-separated test metrics to report (default: every scalar one)."
    )
    parser.add_argument(
        "--output",
        default=None,
        help="JSON file to write (default: crossval_<first fold's run>.json beside the folds' run folders).",
    )
    return parser


def parse_folds(text: str) -> list[int]:
    """``"1,2,3"`` or ``"1-5"`` (or a mix, ``"1-3,5"``) → the folds, in the order given.

    Raises:
        UserError: Not a list of non-negative integers, or a fold given twice.
    """
    folds: list[int] = []
    for part in text.split(","):
        bounds = part.strip().split("-")
        if not all(b.strip().isdigit() for b in bounds) or len(bounds) > 2:
            raise UserError(f"--folds {text!r}: {part.strip()!r} is not a fold number or a range like 1-5")
        low, high = int(bounds[0]), int(bounds[-1])
        folds.extend(range(low, high + 1))
    if len(set(folds)) != len(folds) or not folds:
        raise UserError(f"--folds {text!r}: give each fold once")
    return folds


def summarise(per_fold: Sequence[dict[str, Any]], metrics: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``{metric: {"values": [...], "mean": m, "std": s}}`` over folds (sample std, 0 for one fold).

    Args:
        per_fold: Each fold's test metrics.
        metrics: The metrics to summarise, in order; ``None`` for every scalar metric of the first fold.

    Raises:
        UserError: A metric asked for is missing from a fold (the message lists the fold's metrics).
    """
    names = metrics or [k for k, v in per_fold[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for name in names:
        values = []
        for i, fold in enumerate(per_fold):
            if not isinstance(fold.get(name), (int, float)):
                scalar = sorted(k for k, v in fold.items() if isinstance(v, (int, float)))
                raise UserError(f"metric {name!r} is not among fold {i + 1}'s test metrics: {', '.join(scalar)}")
            values.append(float(fold[name]))
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[name] = {"values": values, "mean": statistics.fmean(values), "std": std}
    return out


def format_table(folds: Sequence[int], summary: dict[str, dict[str, Any]]) -> str:
    """Rows: metrics; columns: each fold's value, then mean ± std."""
    width = max([len(name) for name in summary] + [6])
    header = f"{'metric':<{width}} " + " ".join(f"{'fold ' + str(f):>7}" for f in folds) + "   mean ± std"
    lines = [header]
    for name, row in summary.items():
        cells = " ".join(f"{v:>7.3f}" for v in row["values"])
        lines.append(f"{name:<{width}} {cells}   {row['mean']:.3f} ± {row['std']:.3f}")
    return "\n".join(lines)


def _fold_args(args: argparse.Namespace, extra: Sequence[str], fold: int) -> list[str]:
    return ["--config", args.config, *extra, f"--{args.fold_key}={fold}"]


def _cli(argv: Sequence[str], run: bool) -> Any:
    """A :class:`~jointembed.lightning_cli.JointEmbedCLI` on ``argv`` (recipes with a ``base`` merged first), built as
    ``jointembed fit`` builds it; with ``run`` it fits (then tests) before returning."""
    from jointembed import lightning_cli

    return lightning_cli.build_cli((["fit"] if run else []) + list(argv), run=run)


def _check_folds(args: argparse.Namespace, extra: Sequence[str], folds: Sequence[int]) -> None:
    """Before any training: every fold asked for exists, where the data module says which do (``folds``).

    Raises:
        UserError: A fold that no example is in (the message names it and the folds there are).
    """
    cli = _cli(_fold_args(args, extra, folds[0]), run=False)
    present = getattr(cli.datamodule, "folds", None)
    if present is None:
        return
    missing = [f for f in folds if f not in present]
    if missing:
        where = getattr(cli.datamodule, "hparams", {}).get("path") or "the data"
        raise UserError(f"{where}: fold(s) {missing} asked for, but the folds there are {list(present)}")


def _fit_fold(args: argparse.Namespace, extra: Sequence[str], fold: int) -> dict[str, Any]:
    """Fit and test one fold; its metrics, run folder, time and load."""
    load_start, wall, cpu = os.getloadavg(), time.perf_counter(), _cpu_seconds()
    cli = _cli(_fold_args(args, extra, fold), run=True)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    log_dir = Path(cli.trainer.log_dir or cli.trainer.default_root_dir)
    metrics_file = log_dir / "test_metrics.json"
    if not metrics_file.is_file():
        raise UserError(
            f"fold {fold}: the run wrote no test metrics ({metrics_file}); --fold-key {args.fold_key} must select "
            "the held-out test split of the recipe's data"
        )
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    return {
        "fold": fold,
        "run": str(log_dir),
        "metrics": metrics,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
    }


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (DataLoader workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _body(args: argparse.Namespace) -> int:
    from jointembed.io import atomic_write_json

    extra = list(args.fit_args)
    folds = parse_folds(args.folds)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    _check_folds(args, extra, folds)
    results: list[dict[str, Any]] = []
    output: Path | None = Path(args.output) if args.output else None
    for fold in folds:
        results.append(_fit_fold(args, extra, fold))
        if output is None:
            output = Path(results[0]["run"]).parent / f"crossval_{Path(results[0]['run']).name}.json"
        summary = summarise([r["metrics"] for r in results], metrics)
        report = {
            "config": args.config,
            "overrides": list(extra),
            "fold_key": args.fold_key,
            "folds": folds,
            "complete": len(results) == len(folds),
            "summary": summary,
            "std": "sample standard deviation over folds (n - 1)",
            "wall_seconds": round(sum(r["wall_seconds"] for r in results), 1),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in results), 1),
            "per_fold": results,
        }
        atomic_write_json(output, _finite(report))
    print(f"\ncross-validation of {args.config}, {len(folds)} folds (mean ± sample std):")
    print(format_table(folds, summary))
    print(f"time: {report['wall_seconds']:.0f} s wall, {report['cpu_seconds']:.0f} s CPU")
    print(f"written to {output}")
    return 0


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become strings, as test_metrics.json writes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run(argv: Sequence[str]) -> int:
    """Entry point: ``argv`` starts with ``"crossval"``; options not of this command go to each fold's fit."""
    return run_command("crossval", _body, build_parser(), argv)
