"""Write what ``jointembed predict`` computes as shards, as the batches come, and read a shard folder back.

:class:`EmbeddingWriter` is a Lightning prediction writer: each process buffers its outputs until it holds
``rows_per_shard`` examples, writes them as one shard (atomically) and drops them, so memory stays bounded
however large the manifest. The folder holds, per dataloader ``d`` and global rank ``r``:

- ``dl{d}-rank{r:05d}-shard{i:06d}.safetensors``: shard ``i`` of that process; per output ``name`` two tensors,
  ``"{name}/rows"`` ``(n,)`` int64 and ``"{name}/values"`` ``(n, ...)`` (row ``j`` of the values is the output of
  row ``j`` of the rows), and the metadata ``format``, ``version``, ``rank``, ``world_size``, ``dataloader``;
- ``dl{d}-rank{r:05d}-index.json``: written when that process has finished: its world size and, per shard, the
  file name, the examples in it and the row count of each output. A folder without every rank's index is an
  unfinished (or crashed) run.

The rank in every name keeps processes and machines from colliding; the outputs of all ranks are one set of
rows, as Lightning's distributed sampler for predict hands out every example once (no padding repeats).
:func:`read_predictions` reads the folder back into per-output ``(rows, values)`` sorted by row, checking that
every rank finished, every shard is whole and listed, and no row comes twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from jointembed.errors import PredictionFormatError
from jointembed.io import atomic_write, atomic_write_json

__all__ = ["EmbeddingWriter", "FieldPredictions", "read_predictions", "outputs_with_rows", "FORMAT", "VERSION"]

FORMAT = "jointembed.predictions"
VERSION = 1
_SHARD = re.compile(r"dl(\d+)-rank(\d+)-shard(\d+)\.safetensors\Z")
_INDEX = re.compile(r"dl(\d+)-rank(\d+)-index\.json\Z")

Rows = dict[str, tuple[torch.Tensor, torch.Tensor]]


class FieldPredictions(NamedTuple):
    """One output read back: ``rows`` ``(N,)`` int64, ascending, and ``values`` ``(N, ...)``, row for row (for a
    joint model's field, ``(N, D)`` unit vectors)."""

    rows: torch.Tensor
    values: torch.Tensor


def outputs_with_rows(prediction: Any, batch_indices: Sequence[int] | None) -> Rows:
    """One ``predict_step`` output → ``{output name: (rows (n,) int64, values (n, ...))}`` on the CPU.

    Accepted outputs:

    - the joint model's layout (:meth:`~jointembed.tasks.contrastive.ContrastiveTask.predict_step`):
      ``{"rows": (B,), "fields": {field: {"rows": (n,), "vectors": (n, D)}}}``: one output per field, with the
      manifest rows it carries;
    - a tensor ``(B, ...)`` (the regression and classification tasks): one output, ``"output"``;
    - a dict of tensors ``(B, ...)`` (the recommendation task's ``ids`` and ``scores``): one output per key.

    The last two are matched to rows by an optional ``"rows"`` ``(B,)`` entry of the dict, else by
    ``batch_indices``: the positions in the predict dataset (0-based) that Lightning's sampler gave.

    Raises:
        TypeError: Any other kind of output (the message says which kinds are accepted).
        ValueError: Rows and values of different lengths, or an output without rows and no batch indices.
    """
    if isinstance(prediction, Mapping) and isinstance(prediction.get("fields"), Mapping):
        out = {}
        for name, field in prediction["fields"].items():
            field = field if isinstance(field, Mapping) else {}
            out[str(name)] = _pair(field.get("rows"), field.get("vectors"), f"field {name!r}")
        return out
    if isinstance(prediction, torch.Tensor):
        prediction = {"output": prediction}
    if not isinstance(prediction, Mapping) or not all(isinstance(v, torch.Tensor) for v in prediction.values()):
        raise TypeError(
            "a prediction writer output must be a tensor (B, ...), a dict of such tensors, or the joint model's "
            f"{{'rows', 'fields'}} dict; got {type(prediction).__name__}"
        )
    rows = prediction.get("rows")
    if rows is None:
        if not batch_indices:
            raise ValueError(
                "the output carries no 'rows' and Lightning gave no batch indices (the predict dataloader is not a "
                "torch DataLoader with a sampler): the outputs cannot be matched to the data's rows"
            )
        rows = torch.as_tensor(list(batch_indices), dtype=torch.long)
    return {str(k): _pair(rows, v, f"output {k!r}") for k, v in prediction.items() if k != "rows"}


def _pair(rows: Any, values: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(rows, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise TypeError(f"{what}: rows and values must be tensors, got {type(rows).__name__}, {type(values).__name__}")
    if rows.dim() != 1 or values.dim() == 0 or values.shape[0] != rows.shape[0]:
        raise ValueError(f"{what}: rows {tuple(rows.shape)} and values {tuple(values.shape)} do not pair up row by row")
    return rows.detach().to("cpu", torch.long), values.detach().cpu()


class _Buffer:
    """One dataloader's outputs not yet written, and the shards written so far."""

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.examples = 0
        self.shards: list[dict[str, Any]] = []


class EmbeddingWriter(BasePredictionWriter):
    """Writes each process's predict outputs as shards of at most about ``rows_per_shard`` examples (see the
    module docstring for the files), as the batches come; read them back with :func:`read_predictions`.

    Outputs are read by :func:`outputs_with_rows`: the joint model's embeddings per field with their manifest
    rows; a plain tensor per batch (the regression and classification tasks) or a dict of tensors (the
    recommendation task), matched to the predict dataset's positions through Lightning's ``batch_indices``. Any
    other output (a list, ``None``, other nesting) is refused with a ``TypeError`` naming its type and the batch.
    Run predict with ``return_predictions=False`` (``jointembed predict`` does) so the trainer keeps nothing. A
    folder that already holds shards is refused, never mixed.

    Args:
        output_dir: The shard folder; ``None``: ``<log_dir>/predictions`` of the run (the logger's version
            folder, agreed by every process).
        rows_per_shard: Examples per shard: a shard is written once this many are buffered (so it may hold up
            to one batch more).
    """

    def __init__(self, output_dir: str | None = None, rows_per_shard: int = 65536) -> None:
        super().__init__(write_interval="batch")
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
        self.output_dir = output_dir
        self.rows_per_shard = rows_per_shard
        self.folder: Path | None = None
        self._buffers: dict[int, _Buffer] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Choose the folder (every process calls this: the default one comes from the run's ``log_dir``, which
        the processes agree on) and refuse one holding shards, before any process writes."""
        super().setup(trainer, pl_module, stage)
        if stage != "predict":
            return
        if self.output_dir is not None:
            self.folder = Path(self.output_dir)
        else:
            self.folder = Path(trainer.log_dir or trainer.default_root_dir) / "predictions"
        if self.folder.is_dir():
            taken = sorted(p.name for p in self.folder.iterdir() if _SHARD.match(p.name) or _INDEX.match(p.name))
            if taken:
                raise FileExistsError(
                    f"{self.folder} already holds predictions ({taken[0]}, ...): choose another output_dir or "
                    "remove them; shards of two runs are never mixed"
                )
        self._buffers = {}
        trainer.strategy.barrier("EmbeddingWriter.setup")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Buffer one batch's outputs (on the CPU); write a shard once ``rows_per_shard`` examples are held."""
        try:
            outputs = outputs_with_rows(prediction, batch_indices)
        except (TypeError, ValueError) as error:
            raise type(error)(f"predict batch {batch_idx} (dataloader {dataloader_idx}): {error}") from error
        buffer = self._buffers.setdefault(dataloader_idx, _Buffer())
        for name, pair in outputs.items():
            buffer.parts.setdefault(name, []).append(pair)
        top = prediction.get("rows") if isinstance(prediction, Mapping) else None
        if not isinstance(top, torch.Tensor):
            top = max((rows for rows, _ in outputs.values()), key=len, default=())
        buffer.examples += len(top)
        if buffer.examples >= self.rows_per_shard:
            self._flush(trainer, dataloader_idx)

    def _flush(self, trainer: Trainer, dataloader_idx: int) -> None:
        buffer = self._buffers[dataloader_idx]
        if not buffer.parts:
            return
        assert self.folder is not None, "EmbeddingWriter.setup was not called for predict"
        tensors, counts = {}, {}
        for name, parts in buffer.parts.items():
            tensors[f"{name}/rows"] = torch.cat([rows for rows, _ in parts]).contiguous()
            tensors[f"{name}/values"] = torch.cat([values for _, values in parts]).contiguous()
            counts[name] = len(tensors[f"{name}/rows"])
        rank, world = trainer.global_rank, trainer.world_size
        name = f"dl{dataloader_idx}-rank{rank:05d}-shard{len(buffer.shards):06d}.safetensors"
        metadata = {"format": FORMAT, "version": str(VERSION), "rank": str(rank), "world_size": str(world),
                    "dataloader": str(dataloader_idx)}  # fmt: skip
        atomic_write(self.folder / name, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        buffer.shards.append({"file": name, "examples": buffer.examples, "outputs": counts})
        buffer.parts, buffer.examples = {}, 0

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write the last shards and this process's index files (one per dataloader, even without batches)."""
        assert self.folder is not None, "EmbeddingWriter.setup was not called for predict"
        dataloaders = set(range(len(trainer.num_predict_batches))) | set(self._buffers)
        for dataloader_idx in sorted(dataloaders):
            self._buffers.setdefault(dataloader_idx, _Buffer())
            self._flush(trainer, dataloader_idx)
            rank = trainer.global_rank
            index = {"format": FORMAT, "version": VERSION, "rank": rank, "world_size": trainer.world_size,
                     "dataloader": dataloader_idx, "shards": self._buffers[dataloader_idx].shards}  # fmt: skip
            atomic_write_json(self.folder / f"dl{dataloader_idx}-rank{rank:05d}-index.json", index)
        self._buffers = {}
        trainer.strategy.barrier("EmbeddingWriter.on_predict_end")
        _say_where(self.folder)


@rank_zero_only
def _say_where(folder: Path) -> None:
    print(f"predictions written to {folder} (read them with jointembed.embedding_writer.read_predictions)")


def read_predictions(folder: str | os.PathLike, dataloader_idx: int = 0) -> dict[str, FieldPredictions]:
    """Read the shards an :class:`EmbeddingWriter` wrote for one dataloader: per output (a joint model's field),
    its rows ``(N,)`` in ascending order and the values ``(N, ...)`` of those rows, gathered over every rank.

    Raises:
        FileNotFoundError: The folder holds no index of that dataloader (not a shard folder, or predict never
            got to its end).
        PredictionFormatError: A rank's index is missing (that process did not finish), a shard is missing,
            unlisted (from another run), truncated or corrupt, or holds other counts than its index says, or a
            row comes twice (a sampler that repeats rows); the message names the shard(s) and the row.
    """
    folder = Path(folder)
    indexes = _read_indexes(folder, dataloader_idx)
    listed = {shard["file"]: shard for index in indexes for shard in index["shards"]}
    on_disk = {p.name for p in folder.iterdir() if (m := _SHARD.match(p.name)) and int(m.group(1)) == dataloader_idx}
    if stray := sorted(on_disk - set(listed)):
        raise PredictionFormatError(f"{folder / stray[0]}: a shard no index lists (left by another run?)")
    if missing := sorted(set(listed) - on_disk):
        raise PredictionFormatError(f"{folder / missing[0]}: listed in its rank's index but missing")
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}
    names = sorted(listed)
    for number, name in enumerate(names):
        for output, (rows, values) in _read_shard(folder / name, listed[name]).items():
            parts.setdefault(output, []).append((rows, values, number))
    out = {}
    for output, chunks in parts.items():
        rows = torch.cat([rows for rows, _, _ in chunks])
        source = torch.cat([torch.full((len(rows),), n) for rows, _, n in chunks])
        order = torch.argsort(rows, stable=True)
        rows, source = rows[order], source[order]
        if len(rows) > 1 and bool((twice := rows[1:] == rows[:-1]).any()):
            i = int(twice.nonzero()[0])
            first, second = names[int(source[i])], names[int(source[i + 1])]
            where = f"twice in {first}" if first == second else f"in {first} and in {second}"
            raise PredictionFormatError(f"{folder}: row {int(rows[i])} of output {output!r} comes {where}")
        out[output] = FieldPredictions(rows, torch.cat([values for _, values, _ in chunks])[order])
    return out


def _read_indexes(folder: Path, dataloader_idx: int) -> list[dict[str, Any]]:
    """Every rank's index of one dataloader, by rank; checks they are all there and agree on the world size."""
    paths = sorted(p for p in folder.glob(f"dl{dataloader_idx}-rank*-index.json") if _INDEX.match(p.name))
    if not paths:
        raise FileNotFoundError(
            f"{folder}: no dl{dataloader_idx}-rank*-index.json: not a folder of predictions, or the run did not finish"
        )
    indexes = []
    for path in paths:
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            if index.get("format") != FORMAT or index.get("version") != VERSION:
                raise ValueError(f"format {index.get('format')!r} version {index.get('version')!r}")
            index["rank"], index["world_size"] = int(index["rank"]), int(index["world_size"])
            index["shards"] = [{"file": str(s["file"]), "outputs": dict(s["outputs"])} for s in index["shards"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise PredictionFormatError(f"{path}: not a {FORMAT} v{VERSION} index: {error}") from error
        indexes.append(index)
    worlds = {index["world_size"] for index in indexes}
    if len(worlds) > 1:
        raise PredictionFormatError(f"{folder}: indexes of runs with different process counts {sorted(worlds)}")
    world = worlds.pop()
    if missing := sorted(set(range(world)) - {index["rank"] for index in indexes}):
        raise PredictionFormatError(
            f"{folder}: no index of rank(s) {missing} of {world}: those processes did not finish predicting"
        )
    return sorted(indexes, key=lambda index: index["rank"])


def _read_shard(path: Path, entry: Mapping[str, Any]) -> Rows:
    """One shard's outputs, checked against its index entry."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as error:
        raise PredictionFormatError(f"{path}: truncated or corrupt shard: {error}") from error
    if metadata.get("format") != FORMAT or metadata.get("version") != str(VERSION):
        raise PredictionFormatError(f"{path}: not a {FORMAT} v{VERSION} shard (metadata {metadata})")
    out: Rows = {}
    for key in tensors:
        output, _, kind = key.rpartition("/")
        if kind == "rows":
            values = tensors.get(f"{output}/values")
            rows = tensors[key]
            if values is None or rows.dim() != 1 or rows.dtype != torch.long or len(values) != len(rows):
                raise PredictionFormatError(f"{path}: output {output!r} has no values of the length of its rows")
            out[output] = (rows, values)
    counts = {name: len(rows) for name, (rows, _) in out.items()}
    if counts != entry["outputs"] or len(tensors) != 2 * len(out):
        raise PredictionFormatError(
            f"{path}: holds outputs {counts}, its index lists {entry['outputs']} (a shard of another run?)"
        )
    return out
