"""Pretrained folders: one self-describing folder per trained model, written atomically, read strictly.

Every model that leaves a run (the joint embedding model, the recommender, the housing and digits networks) is
saved the same way (sentence-transformers' layout, safetensors weights):

- ``config.json``: ``{"format": <model kind>, "version": <int>, ...}``: registry names and constructor arguments,
  preprocessing settings, vocabularies; never a Python import path, never a path outside the folder;
- ``model.safetensors``: the weights (``state_dict`` keys);
- any extra files a part needs (a tokenizer, a vocabulary), inside the folder;
- ``README.md``: a model card (what it is, how to load it, the test metrics of the run that made it).

:func:`write_folder` builds the whole folder next to the destination and renames it into place, so a save that
is interrupted leaves the previous folder whole. :func:`read_config` and :func:`load_weights` raise
:class:`~jointembed.errors.CheckpointError` naming the file and the field or key. Loading never unpickles:
safetensors and JSON only (a Lightning ``.ckpt`` is read with ``torch.load(weights_only=True)``).

Every loader builds its model inside :func:`open_folder` (or :func:`open_checkpoint`), so the rules of
:mod:`jointembed.trust` hold while the parts are built: nothing the folder names is imported or fetched, and no
file outside it is read.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from jointembed.errors import CheckpointError
from jointembed.io import atomic_write_folder, recover_folder
from jointembed.trust import check_hyperparameters, loading

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CARD_NAME",
    "LoadReport",
    "ExportsPretrained",
    "write_folder",
    "read_config",
    "load_weights",
    "state_for_saving",
    "resolve_folder",
    "read_lightning_checkpoint",
    "open_folder",
    "open_checkpoint",
    "model_card",
    "model_fingerprint",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


class LoadReport(NamedTuple):
    """What a non-strict load skipped: keys the model has but the file lacks, and keys only the file has."""

    missing: list[str]
    unexpected: list[str]


@runtime_checkable
class ExportsPretrained(Protocol):
    """A training task whose trained model can be written as a pretrained folder (``jointembed fit`` calls it).

    ``export_pretrained(folder, metrics)`` writes the folder (with the test ``metrics`` in its model card) and
    returns its path.
    """

    def export_pretrained(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path: ...


def state_for_saving(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` as contiguous CPU tensors, each with its own storage (safetensors refuses shared
    memory, e.g. an encoder used by two fields or tied tables)."""
    return {key: value.detach().cpu().contiguous().clone() for key, value in module.state_dict().items()}


def model_fingerprint(module: nn.Module) -> str:
    """``"sha256:<hex>"`` of a model's weights (every ``state_dict`` entry: name, dtype, shape and bytes, in key
    order). Equal for a model and its copy loaded from a pretrained folder; a search index keeps it to tell
    which model made its vectors."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def write_folder(
    folder: str | os.PathLike,
    config: Mapping[str, Any] | Callable[[Path], Mapping[str, Any]],
    state: Mapping[str, torch.Tensor],
    extra: Callable[[Path], None] | None = None,
    card: str | None = None,
) -> Path:
    """Write a pretrained folder atomically: built in a temporary sibling folder, then renamed into place.

    Args:
        folder: Destination (created; an existing folder is replaced only once the new one is complete).
        config: The ``config.json`` content (JSON types; it must hold ``format`` and ``version``), or a function
            of the temporary folder that writes the parts' files there and returns the content.
        state: Weights for ``model.safetensors``.
        extra: Called with the temporary folder to write any further files (tokenizers, vocabularies).
        card: ``README.md`` text, or ``None`` for none.

    Returns:
        The destination folder.
    """

    def write(tmp: Path) -> None:
        if extra is not None:
            extra(tmp)
        content = config(tmp) if callable(config) else config
        if "format" not in content or "version" not in content:
            raise ValueError(f"a pretrained config needs 'format' and 'version', got keys {sorted(content)}")
        text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
        save_file(dict(state), str(tmp / WEIGHTS_NAME), metadata={"format": str(content["format"])})
        if card is not None:
            (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")  # last: a folder with a config is complete

    return atomic_write_folder(folder, write, marker=CONFIG_NAME)


def read_config(folder: str | os.PathLike, expected_format: str, supported_versions: tuple[int, ...]) -> dict:
    """Read and check ``folder/config.json``.

    Raises:
        CheckpointError: The folder or file is missing, not JSON, of another format (the message names both the
            found and the expected format), or of an unsupported version.
    """
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder (expected a pretrained folder with {CONFIG_NAME})")
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found (is this a folder written by save_pretrained?)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read JSON config: {error}") from error
    if not isinstance(config, dict) or config.get("format") != expected_format:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path}: field 'format' is {found!r}, expected {expected_format!r}")
    version = config.get("version")
    if version not in supported_versions:
        raise CheckpointError(
            f"{path}: field 'version' is {version!r}; this jointembed reads versions {list(supported_versions)} "
            "(a newer version needs a newer jointembed)"
        )
    return config


@contextlib.contextmanager
def open_folder(
    name_or_path: str | os.PathLike,
    expected_format: str,
    supported_versions: tuple[int, ...],
    cache_dir: str | None = None,
    fetched: bool = False,
) -> Iterator[tuple[Path, dict]]:
    """Open a pretrained folder to build its model: yields ``(folder, config)`` with the rules of
    :mod:`jointembed.trust` in force until the block ends (build the model and load its weights inside it).

    Args:
        name_or_path: The folder, or a hub repo id (fetched only because the caller named it, see
            :func:`resolve_folder`).
        expected_format: The ``format`` the config must have.
        supported_versions: The ``version`` values this reader accepts.
        cache_dir: Hugging Face cache folder for a hub repo id.
        fetched: ``name_or_path`` is what :func:`resolve_folder` gave for a hub repo id (a cache snapshot).

    Raises:
        CheckpointError: As :func:`read_config`, or a link inside the folder leads outside it.
    """
    folder = resolve_folder(name_or_path, cache_dir)
    # a hub download is a snapshot of the cache whose files link to the repo's blobs: links may lead there
    from_hub = fetched or folder != Path(name_or_path)
    with loading(folder / CONFIG_NAME, folder, folder.parents[1] if from_hub else None):  # links checked first
        yield folder, read_config(folder, expected_format, supported_versions)


@contextlib.contextmanager
def open_checkpoint(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Open a Lightning ``.ckpt`` to build a model from it: yields the checkpoint (read weights-only, its
    hyper-parameters checked) with the rules of :mod:`jointembed.trust` in force: a model config inside a
    checkpoint may name no file, package or hub repo.

    Raises:
        CheckpointError: As :func:`read_lightning_checkpoint`, or the hyper-parameters name a class outside
            this package or a package.
    """
    checkpoint = read_lightning_checkpoint(path)
    with loading(path, None):
        yield checkpoint


def load_weights(
    module: nn.Module,
    path: str | os.PathLike,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
    state: Mapping[str, torch.Tensor] | None = None,
) -> LoadReport:
    """Load a ``model.safetensors`` file (or an already read ``state``) into ``module``.

    Args:
        module: The model to fill.
        path: The weights file (named in errors even when ``state`` is given).
        strict: Require the keys to match exactly; otherwise load the common keys, warn and report the rest.
        map_location: Device the tensors are read onto.
        state: Tensors already read (e.g. from a Lightning checkpoint) instead of reading ``path``.

    Returns:
        The keys skipped (both empty when strict).

    Raises:
        CheckpointError: The file is missing, truncated or not safetensors; a shape differs (every mismatch is
            named); or, when strict, keys are missing or unexpected (one error listing both).
    """
    path = Path(path)
    if state is None:
        if not path.is_file():
            raise CheckpointError(f"{path}: weights file not found")
        try:
            state = load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as error:
            message = f"{path}: cannot read safetensors weights (truncated or not safetensors): {error}"
            raise CheckpointError(message) from error
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: weights do not match the model; missing keys: {missing}; unexpected keys: {unexpected}"
        )
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if shapes:
        raise CheckpointError(f"{path}: shape mismatch: {'; '.join(shapes)}")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    if missing or unexpected:
        warnings.warn(
            f"{path}: loaded with strict=False; skipped missing keys {missing} and unexpected keys {unexpected}",
            stacklevel=2,
        )
    return LoadReport(missing, unexpected)


def resolve_folder(name_or_path: str | os.PathLike, cache_dir: str | None = None) -> Path:
    """A local pretrained folder: the path itself, or a Hugging Face hub repo id resolved through ``huggingface_hub``.

    A hub id (``"owner/name"`` that is not a local path) is fetched with ``snapshot_download``; with
    ``HF_HUB_OFFLINE=1`` only the local cache is read.

    Raises:
        CheckpointError: The path does not exist and is not a repo id, or the hub (or its offline cache) has no
            such repo; the message says which.
    """
    path = Path(name_or_path)
    recover_folder(path)  # a save killed between its two renames left the previous folder in its backup
    if path.exists():
        return path
    text = str(name_or_path)
    if text.count("/") != 1 or text.startswith((".", "/", "~")) or os.sep in text.replace("/", ""):
        raise CheckpointError(f"{text}: no such file or folder (nor a Hugging Face hub repo id 'owner/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:  # pragma: no cover - huggingface_hub comes with transformers
        raise CheckpointError(f"{text}: not a local path, and huggingface_hub is not installed") from error
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(text, cache_dir=cache_dir, local_files_only=offline))
    except Exception as error:  # the hub raises many types (HTTP, offline, not found): report them as one
        where = "the local Hugging Face cache (HF_HUB_OFFLINE=1)" if offline else "the Hugging Face hub"
        raise CheckpointError(f"{text}: not a local path, and {where} has no such repo: {error}") from error


def read_lightning_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a Lightning ``.ckpt`` safely (``weights_only=True``: tensors and plain containers, no pickled code).

    Raises:
        CheckpointError: The file is missing, truncated, or holds objects that a weights-only load refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises UnpicklingError, RuntimeError, EOFError... for bad files
        reason = _load_failure(error)
        raise CheckpointError(f"{path}: cannot read the checkpoint safely (weights_only=True): {reason}") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    check_hyperparameters(checkpoint.get("hyper_parameters"), path)
    return checkpoint


def _load_failure(error: BaseException) -> str:
    """One line saying why ``torch.load`` failed: for a weights-only refusal the object it refused (its message
    spans a page of advice to unpickle anyway, which is exactly what must not be done with a stranger's file)."""
    text = str(error)
    match = re.search(r"Unsupported global: GLOBAL (\S+)|Unsupported operand \d+|WeightsUnpickler error: [^\n]*", text)
    if match and match.group(1):
        return f"it holds a pickled {match.group(1)} object, which is never unpickled"
    if match:
        return match.group(0)
    return (text.strip().splitlines() or [type(error).__name__])[0]


def model_card(
    title: str,
    summary: str,
    usage: str,
    metrics: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> str:
    """A short Markdown model card: what the model is, how to load it, its test metrics and provenance.

    Args:
        title: The card's heading.
        summary: One paragraph on what the model does.
        usage: A Python snippet that loads and uses the folder.
        metrics: Test metrics (``test_metrics.json`` of the run); scalars are tabled, the rest shown as JSON.
        details: Further facts (recipe, data, fields), one line each.
    """
    from jointembed import __version__

    lines = [f"# {title}", "", summary, "", "## Use", "", "```python", usage.strip(), "```", ""]
    if details:
        lines += ["## Details", ""] + [f"- **{key}**: {value}" for key, value in details.items()] + [""]
    if metrics:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
        lines += ["## Test metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in scalars.items()]
        rest = {k: v for k, v in metrics.items() if k not in scalars}
        if rest:
            lines += ["", "```json", json.dumps(rest, indent=1), "```"]
        lines.append("")
    today = datetime.date.today().isoformat()
    lines += [f"Written by jointembed {__version__} on {today}.", ""]
    return "\n".join(lines)
