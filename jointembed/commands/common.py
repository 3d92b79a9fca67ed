"""What the ``embed``, ``search`` and ``export`` commands share: loading a model and an index with errors a
user can act on, and reporting failures as one line instead of a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ArgumentParser", "UserError", "load_joint_model", "load_index", "run_command"]


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


def _user_errors() -> tuple[type[BaseException], ...]:
    from jointembed.errors import CheckpointError, DataFormatError, IndexFileError, ModelMismatchError

    # named errors first; ValueError/KeyError/OSError/ImportError are how the library reports bad input too
    return (UserError, CheckpointError, DataFormatError, IndexFileError, ModelMismatchError, ValueError, KeyError,
            OSError, ImportError)  # fmt: skip


def run_command(name: str, body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
                argv: Sequence[str]) -> int:  # fmt: skip
    """Parse ``argv`` (which starts with the command's name) and run ``body``; an error in the user's input
    (a bad file, a missing model, a mismatched index) prints one line naming it and returns 1 (set
    ``JOINTEMBED_TRACEBACK=1`` for the traceback)."""
    args = parser.parse_args(list(argv)[1:])
    try:
        return body(args)
    except _user_errors() as error:
        if os.environ.get("JOINTEMBED_TRACEBACK"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"jointembed {name}: error: {message}", file=sys.stderr)
        return 1


def load_joint_model(folder: str) -> Any:
    """A :class:`~jointembed.JointEmbeddingModel` from a pretrained folder, a ``.ckpt`` or a hub repo id."""
    from jointembed.models.joint import JointEmbeddingModel

    return JointEmbeddingModel.from_pretrained(folder)  # a missing path is a CheckpointError naming it


def load_index(folder: str, model: Any | None, name: str | None = None) -> Any:
    """The index at ``folder``, checked against ``model`` (the model that embeds the queries)."""
    from jointembed.search.index import EmbeddingIndex, model_info

    return EmbeddingIndex.load(folder, model=None if model is None else model_info(model, name))
