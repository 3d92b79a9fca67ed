"""What the ``embed``, ``search`` and ``export`` commands share: loading a model and an index with errors a
user can act on, and reporting failures as one line instead of a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ArgumentParser",
    "FitPassThroughParser",
    "UserError",
    "load_joint_model",
    "load_index",
    "run_command",
    "run_reporting_errors",
    "user_error_message",
]


class UserError(Exception):
    """A problem with the command's input, reported as ``jointembed <command>: error: <message>`` (exit 1)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the examples in the epilog kept as written."""

    def __init__(self, prog: str, description: str, examples: str) -> None:
        super().__init__(
            prog=f"jointembed {prog}",
            description=description,
            epilog="examples:\n" + examples,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )


class FitPassThroughParser(ArgumentParser):
    """A command's parser that keeps the options that are not its own, in order, as ``fit_args``: they go to each
    ``fit`` the command runs (a crossval fold, a tune trial)."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        known, rest = self.parse_known_args(args, namespace)
        known.fit_args = rest
        return known


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions by which jointembed (and Lightning, for a recipe) report bad input rather than a bug."""
    from jointembed.errors import CheckpointError, DataFormatError, IndexFileError, ModelMismatchError

    # named errors first; ValueError/KeyError/OSError/ImportError are how the library reports bad input too
    errors: list[type[BaseException]] = [UserError, CheckpointError, DataFormatError, IndexFileError,
                                         ModelMismatchError, ValueError, KeyError, OSError, ImportError]  # fmt: skip
    # Named errors of modules that only a training run imports: one not imported cannot have been raised, and
    # importing Lightning here would cost every failing command seconds.
    for module, name in (("jointembed.callbacks", "TrainingDivergedError"),
                         ("lightning.fabric.utilities.exceptions", "MisconfigurationException")):  # fmt: skip
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def _raised_by(error: BaseException, package: str) -> bool:
    """Whether the innermost frame of ``error``'s traceback is code of ``package``."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__", "").partition(".")[0] == package


def user_error_message(error: BaseException) -> str | None:
    """The one line that reports ``error`` if it is an error in the user's input, else ``None`` (a bug, whose
    traceback should be seen).

    jsonargparse wraps what a recipe's class raises when it is built (``lr must be > 0``) in its own
    ``ValueError`` ("Does not validate against any of the Union subtypes ..." with the whole configuration):
    the error it wraps is the one judged and reported, so a ``TypeError`` (a bug) in a constructor stays a bug.
    """
    while error.__cause__ is not None and _raised_by(error, "jsonargparse"):
        error = error.__cause__
    if not isinstance(error, _user_errors()):
        return None
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    return _without_worker_traceback(str(message))


def _without_worker_traceback(message: str) -> str:
    """An error raised in a DataLoader worker comes back with the worker's traceback as its message (torch's
    ``ExceptionWrapper``): keep the error's own message, the text after the traceback's last indented line."""
    if "\nOriginal Traceback (most recent call last):\n" not in message:
        return message
    lines = message.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("  "))
    name, colon, text = "\n".join(lines[last + 1 :]).strip().partition(": ")
    return text if colon and " " not in name else message


def run_reporting_errors(name: str, run: Callable[[Sequence[str]], int | None], argv: Sequence[str]) -> int:
    """``run(argv)``'s exit code; an error in the user's input (a bad file, a missing model, an impossible
    setting) prints ``jointembed <name>: error: <message>`` on stderr instead and returns 1. Any other exception
    (a bug) propagates with its traceback, as every exception does when ``JOINTEMBED_TRACEBACK=1`` is set."""
    try:
        return int(run(argv) or 0)
    except Exception as error:
        message = None if os.environ.get("JOINTEMBED_TRACEBACK") else user_error_message(error)
        if message is None:
            raise
        print(f"jointembed {name}: error: {message}", file=sys.stderr)
        return 1


def run_command(name: str, body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
                argv: Sequence[str]) -> int:  # fmt: skip
    """Parse ``argv`` (which starts with the command's name) and run ``body``. An error in the user's input
    is reported in one line by :func:`jointembed.cli.main` (:func:`run_reporting_errors`), for every command."""
    return body(parser.parse_args(list(argv)[1:]))


def load_joint_model(folder: str) -> Any:
    """A :class:`~jointembed.JointEmbeddingModel` from a pretrained folder, a ``.ckpt`` or a hub repo id."""
    from jointembed.models.joint import JointEmbeddingModel

    return JointEmbeddingModel.from_pretrained(folder)  # a missing path is a CheckpointError naming it


def load_index(folder: str, model: Any | None, name: str | None = None) -> Any:
    """The index at ``folder``, checked against ``model`` (the model that embeds the queries)."""
    from jointembed.search.index import EmbeddingIndex, model_info

    return EmbeddingIndex.load(folder, model=None if model is None else model_info(model, name))
