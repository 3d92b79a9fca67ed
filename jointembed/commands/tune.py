"""``jointembed tune``: search a recipe's settings on its validation split with Optuna and write the best recipe.

Each trial fits the recipe with values drawn from a search space (:mod:`jointembed.tuning`), without testing it,
and scores it by the best of a validation metric over its epochs; Optuna's pruner may stop a trial after any
validation epoch. Trials are kept in an Optuna study in a database (SQLite in the working folder by default, or
any RDB URL, e.g. PostgreSQL for a cluster), so a search can be resumed, extended, or run by several processes:
``--jobs N`` runs N worker processes on this machine, each with its share of the trials and of the threads.
The best recipe (the study's best values merged into the recipe) is written as YAML and printed with its value.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jointembed.commands.common import FitPassThroughParser, run_command

__all__ = ["Search", "build_parser", "storage_for", "optimize", "best_recipe_text", "run"]

EXAMPLES = """\
  jointembed tune --config recipes/movielens.yaml --space recipes/tune/movielens.yaml --trials 10 \\
      --data.init_args.path /path/to/ml-100k
  jointembed tune --config recipes/housing.yaml --space my_space.yaml --trials 40 --jobs 2 \\
      --storage postgresql://user@host/studies --study-name housing-a --out housing_best.yaml
  (any other option is passed to each trial's fit, e.g. --trainer.max_epochs 5)
"""


@dataclass(frozen=True)
class Search:
    """What every worker of one search needs (sent to worker processes, so plain data only).

    Attributes:
        recipe: The recipe, merged over its bases.
        space: The searched settings.
        overrides: Command-line options given to every trial's fit after the recipe.
        metric: The validation metric scored.
        direction: ``"maximize"`` or ``"minimize"``.
        storage: The study's database URL.
        study_name: The study's name in it.
        pruner: ``"median"`` or ``"none"``.
        seed: The sampler's seed (worker ``i`` of a search that found ``n`` trials in the study uses
            ``seed + 1000 * i + n``, so parallel workers draw differently and a fresh study repeats).
    """

    recipe: dict[str, Any]
    space: tuple[Any, ...]
    overrides: tuple[str, ...]
    metric: str
    direction: str
    storage: str
    study_name: str
    pruner: str = "median"
    seed: int = 0


def build_parser() -> argparse.ArgumentParser:
    """The command's own options (``jointembed tune --help``); the others go to each trial's ``fit``."""
    parser = FitPassThroughParser(
        "tune",
        "Search a recipe's settings on its validation split with Optuna (the test split is never looked at), "
        "pruning poor trials after any validation epoch, and write the best recipe as a YAML file.",
        EXAMPLES,
    )
    parser.add_argument("--config", required=True, help="The recipe (as for jointembed fit).")
    parser.add_argument("--space", required=True, help="YAML file: dotted recipe keys -> distributions.")
    parser.add_argument("--trials", type=int, default=20, help="Trials to run now (default: %(default)s).")
    parser.add_argument(
        "--metric", default=None, help="Validation metric to score (default: the recipe's checkpoint monitor)."
    )
    parser.add_argument(
        "--direction", choices=("maximize", "minimize"), default=None, help="Default: the checkpoint's mode."
    )
    parser.add_argument(
        "--storage",
        default="sqlite:///tune.db",
        help="Optuna storage: an RDB URL, or a file path for SQLite (default: %(default)s, the working folder).",
    )
    parser.add_argument("--study-name", "--study_name", default=None, help="Default: the recipe's file name.")
    parser.add_argument("--jobs", type=int, default=1, help="Worker processes (default: %(default)s).")
    parser.add_argument("--out", default=None, help="Best recipe to write (default: <study name>_best.yaml).")
    parser.add_argument("--pruner", choices=("median", "none"), default="median", help="Default: %(default)s.")
    parser.add_argument("--seed", type=int, default=0, help="The sampler's seed (default: %(default)s).")
    return parser


def storage_for(url: str) -> Any:
    """The Optuna storage for ``url``: an RDB URL, or a file path taken as SQLite. SQLite waits up to a minute
    for a lock, as parallel workers write to the same file."""
    from jointembed.tuning import require_optuna

    optuna = require_optuna()
    url = url if "://" in url else f"sqlite:///{url}"
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def _pruner(name: str) -> Any:
    from jointembed.tuning import require_optuna

    optuna = require_optuna()
    return optuna.pruners.NopPruner() if name == "none" else optuna.pruners.MedianPruner()


def _safe_name(name: str) -> str:
    """``name`` as a file or folder name (a study name may hold slashes)."""
    return re.sub(r"[^\w.-]+", "_", name)


def _label(study_name: str, number: int) -> str:
    return f"tune_{_safe_name(study_name)}_trial_{number}"


def optimize(search: Search, trials: int, worker: int = 0, jobs: int = 1, pruner: Any = None) -> None:
    """Run ``trials`` trials of ``search``'s study in this process (one worker of ``jobs``).

    Args:
        search: The search.
        trials: How many trials this worker runs.
        worker: This worker's index (it changes the sampler's seed).
        jobs: How many workers share the machine: each takes its share of torch's threads.
        pruner: An Optuna pruner to use instead of ``search.pruner`` (tests).
    """
    import torch

    from jointembed import lightning_cli
    from jointembed.callbacks import TrainingDivergedError
    from jointembed.tuning import require_optuna, run_trial

    optuna = require_optuna()
    lightning_cli.quiet_lightning()
    # each trial's recipe goes to LightningCLI as args while sys.argv holds the tune command: not a mistake here
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
    torch.set_num_threads(max(1, torch.get_num_threads() // jobs))
    storage = storage_for(search.storage)
    found = len(optuna.load_study(study_name=search.study_name, storage=storage).trials)
    study = optuna.load_study(
        study_name=search.study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=search.seed + 1000 * worker + found),
        pruner=pruner if pruner is not None else _pruner(search.pruner),
    )

    def objective(trial: Any) -> float:
        label = _label(search.study_name, trial.number)
        return run_trial(trial, search.recipe, search.space, search.overrides, search.metric, search.direction, label)

    # a diverging trial (a learning rate far too high) is a failed trial, not the end of the search
    study.optimize(objective, n_trials=trials, catch=(TrainingDivergedError,))


def _run_workers(search: Search, trials: int, jobs: int) -> None:
    """``trials`` split among ``jobs`` processes (spawned: a forked copy of a process holding torch's threads can
    hang); a worker's error is raised here."""
    shares = [n for n in (trials // jobs + (i < trials % jobs) for i in range(jobs)) if n]
    if len(shares) == 1:
        optimize(search, shares[0])
        return
    with ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(optimize, search, n, i, len(shares)) for i, n in enumerate(shares)]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _objective(args: argparse.Namespace, recipe: dict[str, Any]) -> tuple[str, str]:
    """The metric and direction: as given, else those of the recipe's checkpoint (or early stopping) monitor."""
    from jointembed.tuning import monitored_metric

    monitored = monitored_metric(recipe)
    metric = args.metric or (monitored[0] if monitored else None)
    if metric is None:
        raise ValueError(f"{args.config} monitors no metric: name the validation metric with --metric (val/...)")
    if metric.startswith("test"):
        raise ValueError(f"--metric {metric}: settings are chosen on the validation split; the test is never run")
    direction = args.direction or (monitored[1] if monitored and monitored[0] == metric else None)
    if direction is None:
        raise ValueError(f"--metric {metric} is not the recipe's monitor: give --direction maximize or minimize")
    return metric, direction


def best_recipe_text(recipe: dict[str, Any], values: dict[str, Any], header: Sequence[str]) -> str:
    """The recipe with ``values`` (dotted keys) merged in, as YAML under ``header``'s comment lines."""
    import yaml

    from jointembed.tuning import merge_values

    body = yaml.safe_dump(merge_values(recipe, values), sort_keys=False, allow_unicode=True)
    return "".join(f"# {line}\n" for line in header) + body


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy reads (a plain SQLite path): nothing to hide
        return url


def _report(args: argparse.Namespace, search: Search, study: Any, before: int) -> int:
    from jointembed.io import atomic_write_text
    from jointembed.tuning import require_optuna

    states = require_optuna().trial.TrialState
    new = study.trials[before:]
    names = {states.COMPLETE: "complete", states.PRUNED: "pruned", states.FAIL: "failed"}
    counts = {name: sum(t.state == state for t in new) for state, name in names.items()}
    print(f"\nstudy {search.study_name}: {len(new)} trials now ({', '.join(f'{n} {s}' for s, n in counts.items())}), "
          f"{len(study.trials)} in all")  # fmt: skip
    if not any(t.state == states.COMPLETE for t in study.trials):
        raise ValueError(f"study {search.study_name}: no trial completed, so there is no best recipe")
    best = study.best_trial
    values = {p.key: p.decode(best.params[p.key]) for p in search.space if p.key in best.params}
    out = Path(args.out or f"{_safe_name(search.study_name)}_best.yaml")
    command = " ".join(["jointembed fit --config", str(out), *search.overrides])
    header = [
        f"The best of {len(study.trials)} trials of jointembed tune (study {search.study_name!r} in "
        f"{_safe_url(search.storage)}, recipe {args.config}):",
        f"{search.metric} = {best.value:.6g} on the validation split ({search.direction}, trial {best.number}, "
        "the best over its validation epochs). Searched:",
        *(f"  {key}: {value!r}" for key, value in values.items()),
        command,
    ]
    atomic_write_text(out, best_recipe_text(search.recipe, values, header))
    print(f"best {search.metric} = {best.value:.4g} (trial {best.number}, {search.direction}):")
    print("\n".join(f"  {key}: {value!r}" for key, value in values.items()))
    print(f"best recipe written to {out}\n  {command}")
    return 0


def _body(args: argparse.Namespace) -> int:
    from jointembed.tuning import check_keys, load_recipe, load_space, require_optuna

    optuna = require_optuna()
    if args.trials < 1 or args.jobs < 1:
        raise ValueError(f"--trials and --jobs must be at least 1, got {args.trials} and {args.jobs}")
    recipe = load_recipe(args.config)
    space = load_space(args.space)
    check_keys(recipe, [p.key for p in space], args.config)
    metric, direction = _objective(args, recipe)
    search = Search(
        recipe, space, tuple(args.fit_args), metric, direction, args.storage,
        args.study_name or Path(args.config).stem, args.pruner, args.seed,
    )  # fmt: skip
    storage = storage_for(search.storage)
    study = optuna.create_study(study_name=search.study_name, storage=storage, direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ValueError(f"study {search.study_name} was created to {study.direction.name.lower()}: name another")
    before = len(study.trials)
    _run_workers(search, args.trials, args.jobs)
    return _report(args, search, optuna.load_study(study_name=search.study_name, storage=storage), before)


def run(argv: Sequence[str]) -> int:
    """Entry point: ``argv`` starts with ``"tune"``; options not of this command go to each trial's fit."""
    return run_command("tune", _body, build_parser(), argv)
