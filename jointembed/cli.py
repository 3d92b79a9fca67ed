"""The ``jointembed`` command line.

The top level answers ``--help`` and ``--version`` without importing torch or Lightning (importing Lightning
alone takes seconds), and hands each subcommand to the module that implements it. The training subcommands
(fit / validate / test / predict) are Lightning's own ``LightningCLI``, so ``--config``, ``--print_config``
and command-line overrides behave exactly as Lightning users expect.

Before a subcommand imports torch, the thread settings are chosen for a machine that may be busy with other work
(:mod:`jointembed.threads`: as many threads as cores are free, waiting threads sleeping), unless the user set
them; one line on stderr says what was chosen.

An error in the user's input (a missing file, an impossible setting such as ``--model.init_args.lr -1``, a bad
checkpoint) ends every subcommand the same way: ``jointembed <command>: error: <message>`` on stderr, exit code 1
(``JOINTEMBED_TRACEBACK=1`` shows the traceback); see :func:`jointembed.commands.common.user_error_message`.
An unknown option or a value of the wrong type is reported by the argument parser with its usage line (exit 2).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["main", "COMMANDS"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line description and the ``module:function`` that runs it with the argv tail."""

    summary: str
    target: str


_LIGHTNING = "jointembed.lightning_cli:run"

COMMANDS: dict[str, Command] = {
    "fit": Command("Train a model from a recipe (then test it when the data has a test split).", _LIGHTNING),
    "validate": Command("Run the validation loop of a recipe on a checkpoint.", _LIGHTNING),
    "test": Command("Run the test loop of a recipe and write test_metrics.json.", _LIGHTNING),
    "predict": Command("Run the predict loop of a recipe on a checkpoint.", _LIGHTNING),
    "embed": Command(
        "Embed files, manifests and texts with a trained model, into an index or .npy files.",
        "jointembed.commands.embed:run",
    ),
    "search": Command(
        "Find the index entries nearest a text, recording, image or IDs.", "jointembed.commands.search:run"
    ),
    "export": Command(
        "Draw an embedding space: TensorBoard projector files and a 2-D map PNG.", "jointembed.commands.export:run"
    ),
    "crossval": Command("Fit and test a recipe once per fold; print mean ± std.", "jointembed.commands.crossval:run"),
    "tune": Command(
        "Search a recipe's settings on validation with Optuna; write the best recipe.", "jointembed.commands.tune:run"
    ),
}

_USAGE = """\
usage: jointembed [-h] [--version] {commands} ...

jointembed: learn embeddings of sparse IDs, text, images and audio with PyTorch Lightning.

commands:
{table}

Run 'jointembed COMMAND --help' for a command's options, for example:
  jointembed fit --config recipes/digits.yaml
  jointembed fit --config recipes/digits.yaml --print_config
  jointembed embed --model runs/digits_multimodal/version_0/pretrained \\
      --manifest datasets/digits_four_ways/test.jsonl --index digits-index
  jointembed search --model runs/digits_multimodal/version_0/pretrained --index digits-index --text seven
"""


def format_help() -> str:
    """The top-level help text (built without importing torch)."""
    width = max(len(name) for name in COMMANDS)
    table = "\n".join(f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items())
    return _USAGE.format(commands="{" + ",".join(COMMANDS) + "}", table=table)


def _choose_threads(args: Sequence[str]) -> None:
    """Set torch's threads for a machine that may be busy (see :mod:`jointembed.threads`) and say so in one line.

    Only before torch is loaded: OpenMP reads its settings once, at start, and a process that imported torch
    before calling :func:`main` has made its own choice. Nothing is said for ``--help`` or ``--print_config``.
    """
    if "torch" in sys.modules:
        return
    from jointembed.threads import apply_thread_defaults

    choice = apply_thread_defaults()
    if not any(arg in ("-h", "--help") or arg.startswith("--print_config") for arg in args):
        print(choice.describe(), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jointembed`` script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(format_help(), end="")
        return 0 if args else 2
    if args[0] == "--version":
        from jointembed import __version__

        print(f"jointembed {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(format_help(), end="", file=sys.stderr)
        print(f"\njointembed: error: unknown command {args[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    _choose_threads(args)
    module_name, func_name = command.target.split(":")
    run = getattr(importlib.import_module(module_name), func_name)
    from jointembed.commands.common import run_reporting_errors

    return run_reporting_errors(args[0], run, args)
