"""The training subcommands (fit / validate / test / predict): Lightning's ``LightningCLI`` over jointembed.

Any ``LightningModule`` and ``LightningDataModule`` can be named in a recipe with ``class_path``/``init_args``;
the package's own tasks and data modules are imported here so that their short class names work too.
After ``fit`` the model is tested when the data module has a test split, and every test run writes its metrics
to ``test_metrics.json`` in the run's log directory. ``predict`` writes its outputs as shards through an
:class:`~jointembed.embedding_writer.EmbeddingWriter` (``<log_dir>/predictions`` unless a prediction writer is
configured), keeping none in memory.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.model_helpers import is_overridden

from jointembed.callbacks import DivergenceGuard, RandomStateCheckpoint
from jointembed.checkpoint_io import check_checkpoint_path, newest_loadable, use_safe_checkpoint_io
from jointembed.embedding_writer import EmbeddingWriter
from jointembed.io import atomic_write_json
from jointembed.pretrained import ExportsPretrained, read_lightning_checkpoint
from jointembed.recipe_files import resolve_recipe

__all__ = ["JointEmbedCLI", "run", "write_test_metrics", "resume_in_last_run", "format_metrics"]


@runtime_checkable
class BindsData(Protocol):
    """A task that prepares itself and its data module together before a run (e.g. the contrastive task binds
    the data to its model's input units and sizes ID tables from the data)."""

    def bind_data(self, datamodule: LightningDataModule) -> None: ...


@runtime_checkable
class RestoresInputs(Protocol):
    """A task whose checkpoints carry its fitted input units (e.g. an ID vocabulary), to be taken before the data
    is bound when predicting with one."""

    def restore_inputs(self, checkpoint_path: str) -> None: ...


class JointEmbedCLI(LightningCLI):
    """``LightningCLI`` that binds the data to the task before every run, stops a fit whose loss is not finite
    (:class:`~jointembed.callbacks.DivergenceGuard`), tests after fitting, writes ``test_metrics.json`` after
    every test run and the pretrained folder after fitting, and writes predict outputs as shards."""

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` before anything reads it: a local file (read weights-only, its hyper-parameters
        naming only this package's classes and no package, see :mod:`jointembed.trust`) or ``last``; then let
        Lightning apply the checkpoint's hyper-parameters as usual.

        Raises:
            CheckpointError: A URL, a missing file, a file that is not weights-only, or a foreign class path.
        """
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is None or path == "last":
            return
        read_lightning_checkpoint(check_checkpoint_path(path))
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Lightning's trainer, writing and reading checkpoints through
        :class:`~jointembed.checkpoint_io.SafeCheckpointIO`."""
        trainer = super().instantiate_trainer(**kwargs)
        use_safe_checkpoint_io(trainer)
        return trainer

    def _checkpoint_for_evaluation(self) -> None:
        # validate/test/predict: 'last' is the newest checkpoint of this recipe's runs that loads
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            config["ckpt_path"] = str(newest_loadable(_run_checkpoints(_logger_root(self.trainer)), "the runs"))
        if "weights_only" in config:
            config["weights_only"] = True

    def _bind(self) -> None:
        # Before the trainer starts: callbacks such as EMAWeightAveraging copy the model in their own setup,
        # which runs before the LightningModule's, so the model must have its final shape by then.
        if isinstance(self.model, BindsData) and self.datamodule is not None:
            self.model.bind_data(self.datamodule)

    def prepare_fit(self) -> None:
        """What every fit needs before the trainer starts (``fit`` and each ``tune`` trial): the data bound to the
        task, and the guards against divergence and for resuming the random state."""
        self._bind()
        for guard in (DivergenceGuard, RandomStateCheckpoint):
            if not any(isinstance(c, guard) for c in self.trainer.callbacks):
                self.trainer.callbacks.append(guard())

    def before_fit(self) -> None:
        self.prepare_fit()
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            config["ckpt_path"] = str(resume_in_last_run(self.trainer))
        if "weights_only" in config:
            config["weights_only"] = True

    def _restore_inputs(self) -> None:
        # Evaluating or predicting with a checkpoint: its fitted units (an ID vocabulary) are the ones its weights
        # were trained with; fitting them anew on whatever splits the data has would look IDs up differently.
        self._checkpoint_for_evaluation()
        checkpoint = self.config_init[self.subcommand].get("ckpt_path")
        if isinstance(self.model, RestoresInputs) and checkpoint and Path(checkpoint).is_file():
            self.model.restore_inputs(checkpoint)

    def before_predict(self) -> None:
        """Take the checkpoint's input units, bind the data, add the default prediction writer when none is
        configured, and keep no predictions in memory (the writer has them)."""
        config = self.config_init[self.subcommand]
        self._restore_inputs()
        self._bind()
        if not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(EmbeddingWriter())
        if config.get("return_predictions") is None:
            config["return_predictions"] = False

    def after_fit(self) -> None:
        """Test the trained model (the best checkpoint by the monitored metric, else the final weights) if the
        data has a test split, then write the tested weights as a pretrained folder (``<log_dir>/pretrained``)
        when the task can export one, and end with where the checkpoint, metrics and folder are."""
        if self.trainer.interrupted:
            return
        metrics, written = None, []
        callback = self.trainer.checkpoint_callback
        # "best" only means something when the checkpoints are ranked by a monitored metric; otherwise the
        # final in-memory weights are the trained model (with weight averaging, the averaged ones).
        ranked = callback is not None and getattr(callback, "monitor", None) is not None
        if _has_test_split(self.model, self.datamodule):
            ckpt = "best" if ranked and getattr(callback, "best_model_path", "") else None
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
            path, metrics = write_test_metrics(self.trainer, self.model)
            self._print_metrics("test", metrics)
            written.append(f"test metrics written to {path}")
        if isinstance(self.model, ExportsPretrained) and self.trainer.is_global_zero:
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "pretrained"
            self.model.export_pretrained(folder, metrics)
            written.append(f"pretrained model written to {folder}")
        if self.trainer.is_global_zero:
            print("\n".join([*_checkpoint_lines(callback, ranked), *written]))

    def before_validate(self) -> None:
        self._restore_inputs()
        self._bind()
        self._take_verbose()

    def after_validate(self) -> None:
        """Print the validation metrics, rounded (Lightning's own table is turned off in ``before_validate``)."""
        self._print_metrics("validation", {k: float(v) for k, v in self.trainer.callback_metrics.items()})

    def before_test(self) -> None:
        self._restore_inputs()
        self._bind()
        self._take_verbose()

    def after_test(self) -> None:
        """Print the test metrics, rounded, and write them as JSON next to the run's logs."""
        path, metrics = write_test_metrics(self.trainer, self.model)
        self._print_metrics("test", metrics)
        if self.trainer.is_global_zero:
            print(f"test metrics written to {path}")

    def _take_verbose(self) -> None:
        # Lightning prints its metrics table with every digit of float32 (0.15676482021808624); the CLI prints
        # its own, rounded, when ``--verbose`` is on, and so turns Lightning's off.
        config = self.config_init[self.subcommand]
        self._verbose = bool(config.get("verbose", True))
        config["verbose"] = False

    def _print_metrics(self, stage: str, metrics: dict[str, Any]) -> None:
        if getattr(self, "_verbose", True) and self.trainer.is_global_zero and metrics:
            print(f"{stage} metrics:\n{format_metrics(metrics, shutil.get_terminal_size((100, 24)).columns)}")


def resume_in_last_run(trainer: Any) -> Path:
    """For ``--ckpt_path last``: the newest checkpoint among the runs of this recipe's logger folder that loads
    (a truncated one is skipped and named on stderr), with the logger pointed at that run's version folder so the
    resumed run logs and checkpoints there.

    Lightning's own ``"last"`` looks only in the new run's folder, which a CSV logger has already numbered anew,
    so it finds nothing and trains from scratch; its CSV writer also deletes an existing ``metrics.csv``, which
    is kept here.

    Raises:
        FileNotFoundError: No run of this recipe has a checkpoint (the message names the folder).
        CheckpointError: None of them loads (each is named with its reason).
    """
    root = _logger_root(trainer)
    logger = trainer.logger
    checkpoint = newest_loadable(_run_checkpoints(root), f"{root} (version_*/checkpoints/*.ckpt)")
    run = checkpoint.parents[1]
    metrics = run / "metrics.csv"
    kept = metrics.read_text(encoding="utf-8") if metrics.is_file() else None
    logger._version = int(run.name[8:])
    writer = logger.experiment  # creating the writer deletes metrics.csv: put it back and append to it
    if kept:
        metrics.write_text(kept, encoding="utf-8")
        writer.metrics_keys = kept.splitlines()[0].split(",")
    return checkpoint


def _logger_root(trainer: Any) -> Path:
    logger = trainer.logger
    if not isinstance(logger, CSVLogger):
        raise ValueError("--ckpt_path last needs the recipe's CSVLogger to find the last run; pass a .ckpt path")
    return Path(logger.root_dir)


def _run_checkpoints(root: Path) -> list[Path]:
    """Every checkpoint of the runs under a logger's root folder (``version_<n>/checkpoints/*.ckpt``)."""
    return [p for p in root.glob("version_*/checkpoints/*.ckpt") if p.parents[1].name[8:].isdigit() and p.is_file()]


def write_test_metrics(trainer: Any, model: LightningModule) -> tuple[Path, dict[str, Any]]:
    """Write the ``test*`` entries of ``trainer.callback_metrics`` (plus ``model.extra_test_metrics()`` when the
    model defines it, for non-scalar results such as a confusion matrix) to ``<log_dir>/test_metrics.json``.

    Returns:
        The file's path and the metrics written.
    """
    metrics: dict[str, Any] = {}
    for key, value in trainer.callback_metrics.items():
        if key.startswith("test"):
            number = float(value)
            metrics[key] = number if math.isfinite(number) else str(number)
    extra = getattr(model, "extra_test_metrics", None)
    if callable(extra):
        metrics.update(extra())
    log_dir = trainer.log_dir or trainer.default_root_dir
    return atomic_write_json(Path(log_dir) / "test_metrics.json", metrics), metrics


def format_metrics(metrics: Mapping[str, Any], width: int = 100) -> str:
    """Scalar metrics, each to 4 significant digits, in as few lines as fit in ``width`` characters: a table with a
    row per name up to its last ``/`` and a column per last part (``test/warm/hr@10`` is row ``test/warm``, column
    ``hr@10``) where that fits, else ``name  value`` cells sorted by name down several columns. Non-scalar
    entries (a confusion matrix) are left to ``test_metrics.json``."""
    cells = {name: _format_number(value) for name, value in sorted(metrics.items()) if _is_number(value)}
    if not cells:
        return ""
    table = _pivot(cells)
    if max(len(line) for line in table) <= width:
        return "\n".join(table)
    name_width = max(len(name) for name in cells)
    value_width = max(len(value) for value in cells.values())
    gap = "   "
    columns = max(1, (width + len(gap)) // (name_width + 2 + value_width + len(gap)))
    items = list(cells.items())
    rows = math.ceil(len(items) / columns)
    lines = (
        gap.join(f"{name:<{name_width}}  {value:>{value_width}}" for name, value in items[r::rows]) for r in range(rows)
    )
    return "\n".join(line.rstrip() for line in lines)


def _pivot(cells: Mapping[str, str]) -> list[str]:
    rows: dict[str, dict[str, str]] = {}
    for name, value in cells.items():
        row, _, column = name.rpartition("/")
        rows.setdefault(row, {})[column] = value
    columns = list(dict.fromkeys(column for values in rows.values() for column in values))
    row_width = max(len(row) for row in rows)
    widths = {c: max(len(c), *(len(values.get(c, "-")) for values in rows.values())) for c in columns}
    lines = [" " * row_width + "".join(f"  {column:>{widths[column]}}" for column in columns)]
    for row, values in sorted(rows.items()):
        lines.append(f"{row:<{row_width}}" + "".join(f"  {values.get(c, '-'):>{widths[c]}}" for c in columns))
    return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, str) and value in ("nan", "inf", "-inf"))


def _format_number(value: float | str) -> str:
    if isinstance(value, str) or not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.1f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _checkpoint_lines(callback: Any, ranked: bool) -> list[str]:
    """Where the fit left its checkpoint: the best by the monitored metric, else the last one written."""
    if callback is None:
        return []
    if ranked and getattr(callback, "best_model_path", ""):
        return [f"best checkpoint (by {callback.monitor}) written to {callback.best_model_path}"]
    path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    return [f"checkpoint written to {path}"] if path else []


class _DropTips(logging.Filter):
    """Drops Lightning's "💡 Tip:" lines, which advertise its cloud services on every run and have no setting to
    turn them off (Lightning-AI/pytorch-lightning#21294)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Keep what ``fit`` prints to what the run did: no advertisements, and no deprecation warning that
    Lightning's own code raises on every run whatever the recipe (its data loader wrapper builds a torch
    ``LeafSpec``, deprecated since torch 2.10; Lightning-AI/pytorch-lightning#21326), which a user cannot act on."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


def _has_test_split(model: LightningModule, datamodule: LightningDataModule | None) -> bool:
    if not is_overridden("test_step", model):
        return False
    return datamodule is not None and is_overridden("test_dataloader", datamodule)


def _import_package_components() -> None:
    """Import the package's tasks and data modules so recipes may name them by class name alone."""
    import importlib
    import pkgutil

    import jointembed

    for sub in ("tasks", "data"):
        try:
            package = importlib.import_module(f"jointembed.{sub}")
        except ModuleNotFoundError as err:
            if err.name != f"jointembed.{sub}":
                raise
            continue
        for info in pkgutil.iter_modules(package.__path__, prefix=f"{jointembed.__name__}.{sub}."):
            importlib.import_module(info.name)


def _resolve_bases(argv: Sequence[str], folder: Path) -> list[str]:
    """``argv`` with each ``--config`` recipe that names a ``base`` replaced by its merged form, written to
    ``folder`` (see :mod:`jointembed.recipe_files`)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("--config", "-c") and i + 1 < len(out):
            index, value, prefix = i + 1, out[i + 1], ""
        elif arg.startswith("--config="):
            index, value, prefix = i, arg.split("=", 1)[1], "--config="
        else:
            continue
        if not value.endswith((".yaml", ".yml")) or not Path(value).is_file():
            continue
        merged = resolve_recipe(value)
        if merged is not None:
            target = folder / f"{i}_{Path(value).name}"
            target.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
            out[index] = prefix + str(target)
    return out


def run(argv: Sequence[str]) -> int:
    """Run one training subcommand; ``argv`` starts with the subcommand (``["fit", "--config", "x.yaml"]``)."""
    quiet_lightning()
    # a bare --help names no class: no need to import them all
    bare_help = list(argv[1:]) in (["--help"], ["-h"])
    build_cli(argv, from_console=list(argv) == sys.argv[1:], import_components=not bare_help)
    return 0


def build_cli(
    args: Sequence[str], run: bool = True, from_console: bool = False, import_components: bool = True
) -> JointEmbedCLI:
    """The Lightning CLI as ``jointembed`` builds it, recipes with a ``base`` merged first; with ``run`` ``args``
    start with the subcommand and it runs before returning, else they are only the options (nothing runs).

    Args:
        args: The command line after ``jointembed``.
        run: Run the subcommand.
        from_console: ``args`` are the process's own ``sys.argv[1:]`` (LightningCLI then reads ``sys.argv``
            itself: passing ``args`` too makes it warn).
        import_components: Import the package's tasks and data modules first, so a recipe may name them by
            class name alone (skip it only where no class is named, e.g. for a bare ``--help``).
    """
    if import_components:
        _import_package_components()
    with tempfile.TemporaryDirectory(prefix="jointembed-recipe-") as folder:
        resolved = _resolve_bases(list(args), Path(folder))
        saved_argv = sys.argv
        if from_console:
            sys.argv = [sys.argv[0], *resolved]
        try:
            return JointEmbedCLI(
                LightningModule,
                LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                seed_everything_default=0,
                save_config_kwargs={"overwrite": True},
                args=None if from_console else resolved,
                run=run,
            )
        finally:
            sys.argv = saved_argv
