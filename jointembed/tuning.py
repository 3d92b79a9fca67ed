"""Searching a recipe's settings on its validation split: the search space, its values merged into the recipe, and
one trial (a ``fit`` of the merged recipe reporting each validation epoch to Optuna, which may prune it).

A search space is a YAML mapping from dotted recipe keys to distributions::

    model.init_args.lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    model.init_args.model.init_args.embedding_dim: {type: int, low: 16, high: 64, step: 16}
    model.init_args.model.init_args.hidden_sizes: {type: categorical, choices: [[64], [128], [128, 64]]}

A key names a setting the recipe writes, or an argument of the class (or of the trainer) that the recipe's node
builds; a list item is named by its index (``trainer.callbacks.1.init_args.patience``). A trial is ``jointembed
fit`` without the test after it: the test split is never looked at. Its value is the best of the monitored
validation metric over the epochs it ran (what the recipe's ``ModelCheckpoint`` keeps when it monitors the same
metric), and that best-so-far value is what each validation epoch reports to the pruner.

Optuna is an extra (``pip install 'jointembed[tune]'``): only :func:`run_trial` and :class:`ValidationReporter`
need it, and they import it when called.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback

from jointembed.recipe_files import resolve_recipe

__all__ = [
    "Param",
    "parse_space",
    "load_space",
    "load_recipe",
    "check_keys",
    "merge_values",
    "monitored_metric",
    "require_optuna",
    "ValidationReporter",
    "run_trial",
]

_FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}


def require_optuna() -> Any:
    """The ``optuna`` module.

    Raises:
        ImportError: Optuna is not installed (the message says how to install the extra).
    """
    try:
        import optuna
    except ImportError as error:
        raise ImportError("jointembed tune needs Optuna: pip install 'jointembed[tune]'") from error
    return optuna


@dataclass(frozen=True)
class Param:
    """One searched setting: a dotted recipe key and the distribution its values are drawn from.

    Attributes:
        key: The dotted recipe key (``model.init_args.lr``), also the Optuna parameter's name.
        kind: ``"float"``, ``"int"`` or ``"categorical"``.
        low, high: The range (both included) of a float or int.
        log: Draw on a log scale.
        step: The spacing of the values (``None``: any float, or 1 for an int).
        choices: The values of a categorical; lists and mappings are allowed (a list of hidden sizes).
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def _encoded(self) -> bool:
        # Optuna's categorical holds None, bool, int, float and str: other choices are drawn as their JSON text
        return any(not isinstance(c, (type(None), bool, int, float, str)) for c in self.choices)

    def suggest(self, trial: Any) -> Any:
        """Draw this setting's value for an Optuna ``trial`` (the value as the recipe takes it)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self._encoded:
            return self.decode(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        return trial.suggest_categorical(self.key, list(self.choices))

    def decode(self, value: Any) -> Any:
        """The recipe value of an Optuna parameter value recorded for this setting (a study's ``best_params``)."""
        return json.loads(value) if self.kind == "categorical" and self._encoded else value


def parse_space(space: Any, source: str = "the search space") -> tuple[Param, ...]:
    """Check and read a search space (the mapping of the module docstring).

    Raises:
        ValueError: Not a non-empty mapping, or an entry that is not a valid distribution (the message names the
            file and the key, and says what would be valid).
    """
    if not isinstance(space, Mapping) or not space:
        raise ValueError(
            f"{source}: a search space is a mapping of dotted recipe keys to distributions, e.g. "
            "'model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}'"
        )
    return tuple(_parse_param(str(key), spec, source) for key, spec in space.items())


def _parse_param(key: str, spec: Any, source: str) -> Param:
    where = f"{source}: {key}"
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind not in _FIELDS:
        raise ValueError(f"{where}: give a mapping with type float, int or categorical, got {spec!r}")
    unknown = sorted(set(spec) - _FIELDS[kind] - {"type"})
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for type {kind}; allowed: {sorted(_FIELDS[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: choices must be a non-empty list, got {choices!r}")
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            raise ValueError(f"{where}: choices must differ from each other, got {choices!r}")
        return Param(key, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), spec.get("log", False)
    for name, value in (("low", low), ("high", high), ("step", step)):
        if (value is not None or name != "step") and (isinstance(value, bool) or not isinstance(value, number)):
            raise ValueError(f"{where}: {name} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    if not isinstance(log, bool):
        raise ValueError(f"{where}: log must be true or false, got {log!r}")
    if not low < high:
        raise ValueError(f"{where}: low must be below high, got low {low}, high {high}")
    if log and (low <= 0 or step is not None):
        raise ValueError(f"{where}: a log scale needs low > 0 and no step, got low {low}, step {step}")
    if step is not None and step <= 0:
        raise ValueError(f"{where}: step must be > 0, got {step}")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def load_space(path: str | Path) -> tuple[Param, ...]:
    """The search space in a YAML file.

    Raises:
        OSError: The file cannot be read.
        ValueError: It is not YAML, or not a valid space (see :func:`parse_space`).
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        space = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not a YAML search space: {error}") from error
    return parse_space(space, str(path))


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe at ``path`` as a mapping, merged over its chain of ``base`` recipes."""
    merged = resolve_recipe(path)
    if merged is not None:
        return merged
    recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping")
    return recipe


def _step(node: Any, part: str) -> Any:
    """The child ``part`` of a recipe node, or the ``_MISSING`` marker (an absent ``init_args`` is empty)."""
    if isinstance(node, Mapping):
        if part in node:
            return node[part]
        return {} if part == "init_args" and "class_path" in node else _MISSING
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return _MISSING


_MISSING = object()


def _accepted_arguments(recipe: Mapping[str, Any], parents: Sequence[str]) -> set[str] | None:
    """The arguments that the node at ``parents`` may be given: its class's constructor parameters when the node
    is a class's ``init_args`` (or the top-level ``trainer``), ``None`` where that class cannot be told."""
    if list(parents) == ["trainer"]:
        from lightning.pytorch import Trainer

        return set(inspect.signature(Trainer).parameters)
    if not parents or parents[-1] != "init_args":
        return set()
    owner = recipe
    for part in parents[:-1]:
        owner = _step(owner, part)
    module, _, name = str(owner.get("class_path", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None  # a short class name: the fit's own parser judges the key
    return set(inspect.signature(cls).parameters)


def check_keys(recipe: Mapping[str, Any], keys: Sequence[str], source: str = "the recipe") -> None:
    """Check that every dotted key names a setting of ``recipe``: one it writes, or an argument of the class (or
    the trainer) whose node it would go in.

    Raises:
        ValueError: A key that is not in the recipe (the message names the key and what is there).
    """
    for key in keys:
        parts, node = key.split("."), recipe
        for i, part in enumerate(parts):
            child = _step(node, part)
            if child is _MISSING and i == len(parts) - 1 and isinstance(node, Mapping):
                accepted = _accepted_arguments(recipe, parts[:-1])
                if accepted is None or part in accepted:
                    break
            if child is _MISSING:
                here = ".".join(parts[:i]) or "the top level"
                there = list(node) if isinstance(node, Mapping) else f"items 0-{len(node) - 1}" if node else []
                raise ValueError(f"search space key {key!r} is not in {source}: {here} has {there}")
            node = child


def merge_values(recipe: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``recipe`` with each dotted key of ``values`` set (keys checked by :func:`check_keys`)."""
    merged = copy.deepcopy(dict(recipe))
    for key, value in values.items():
        *parents, last = key.split(".")
        node: Any = merged
        for part in parents:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return merged


def monitored_metric(recipe: Mapping[str, Any]) -> tuple[str, str] | None:
    """The metric and direction (``"maximize"``/``"minimize"``) that the recipe's checkpoint or early-stopping
    callback monitors, or ``None`` when none does."""
    trainer = recipe.get("trainer") or {}
    for callback in trainer.get("callbacks") or [] if isinstance(trainer, Mapping) else []:
        args = callback.get("init_args") or {} if isinstance(callback, Mapping) else {}
        if args.get("monitor"):
            return str(args["monitor"]), "maximize" if args.get("mode", "min") == "max" else "minimize"
    return None


class ValidationReporter(Callback):
    """Reports the best value so far of ``metric`` to an Optuna trial after each validation epoch, and stops the
    fit with ``optuna.TrialPruned`` when the trial's pruner says so.

    optuna-integration's ``PyTorchLightningPruningCallback`` works with ``lightning`` 2.6, but only warns when the
    metric is never logged (a misspelt metric would search on nothing); here that is a named error at the first
    validation epoch, and the best value is kept for the trial's result.

    Args:
        trial: The Optuna trial.
        metric: The validation metric (``val/hr@10``).
        direction: ``"maximize"`` or ``"minimize"``.
    """

    def __init__(self, trial: Any, metric: str, direction: str) -> None:
        self.trial, self.metric, self.sign = trial, metric, 1.0 if direction == "maximize" else -1.0
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs = 0

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Report the best value so far; raise ``optuna.TrialPruned`` when the pruner prunes the trial.

        Raises:
            ValueError: The metric is not among what the validation logged (the message lists those).
        """
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if self.metric not in metrics:
            logged = sorted(k for k in metrics if not k.startswith("train"))
            raise ValueError(f"the task never logs {self.metric!r} on validation; it logs {logged}")
        value, epoch = float(metrics[self.metric]), trainer.current_epoch
        self.epochs += 1
        if math.isfinite(value) and (self.best is None or self.sign * value > self.sign * self.best):
            self.best, self.best_epoch = value, epoch
        if self.best is None:
            return
        self.trial.report(self.best, step=epoch)
        if self.trial.should_prune():
            raise require_optuna().TrialPruned(f"pruned after epoch {epoch}: best {self.metric} {self.best:.4g}")


def _trial_recipe(recipe: Mapping[str, Any], values: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The recipe a trial fits: the drawn values merged in, quiet, and logging to a folder of its own (a CSV or
    TensorBoard logger's ``version`` is the trial's label, so parallel trials never number the same folder)."""
    merged = merge_values(recipe, values)
    trainer = merged.setdefault("trainer", {})
    trainer.setdefault("enable_progress_bar", False)
    trainer.setdefault("enable_model_summary", False)
    logger = trainer.get("logger")
    if isinstance(logger, Mapping) and "class_path" in logger:
        logger.setdefault("init_args", {})["version"] = label
    return merged


def run_trial(
    trial: Any, recipe: Mapping[str, Any], space: Sequence[Param], overrides: Sequence[str], metric: str,
    direction: str, label: str,
) -> float:  # fmt: skip
    """Fit ``recipe`` with values drawn for ``trial`` (no test) and return the best validation ``metric``.

    The recipe is built as ``jointembed fit`` builds it (:func:`jointembed.lightning_cli.build_cli`, with
    ``overrides`` after it on the command line) and fitted as ``fit`` prepares it, without the test after.

    Raises:
        optuna.TrialPruned: The pruner stopped it.
        ValueError: The metric is never logged, or no validation epoch ran.
    """
    from jointembed import lightning_cli

    values = {param.key: param.suggest(trial) for param in space}
    with tempfile.TemporaryDirectory(prefix="jointembed-tune-") as folder:
        path = Path(folder) / "trial.yaml"
        path.write_text(yaml.safe_dump(_trial_recipe(recipe, values, label), sort_keys=False), encoding="utf-8")
        cli = lightning_cli.build_cli(["--config", str(path), *overrides], run=False)
    reporter = ValidationReporter(trial, metric, direction)
    trainer = cli.trainer
    cli.prepare_fit()  # as fit prepares (bound data, divergence guard), without the test fit's after_fit runs
    trainer.callbacks.append(reporter)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    trial.set_user_attr("run", str(trainer.log_dir or trainer.default_root_dir))
    trial.set_user_attr("epochs", reporter.epochs)
    if reporter.epochs == 0:
        raise ValueError(f"no validation epoch ran, so there is no {metric!r}: the recipe must validate")
    trial.set_user_attr("best_epoch", reporter.best_epoch)
    return math.nan if reporter.best is None else reporter.best  # nan: Optuna records a failed trial and goes on
