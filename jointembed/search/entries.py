"""Turn a manifest, files or texts into index entries with a joint model: vectors, keys, modalities, metadata.

The ``embed``/``search``/``export`` commands and the Python API share these, so a file is keyed and described
the same way wherever it is embedded. Keys name the content: ``"<field>:<cell as written>"`` for a manifest
cell (``"image:images/7_0007.png"``, ``"text:seven"``), the path as given for a file, so embedding the same
thing twice replaces its entry instead of adding a copy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jointembed.data.manifest import Manifest, read_manifest
from jointembed.errors import DataFormatError
from jointembed.search.index import EmbeddingIndex, Key
from jointembed.search.index_files import describe_file, parse_entry

__all__ = [
    "Entries",
    "embed_manifest",
    "embed_files",
    "embed_values",
    "field_of_type",
    "file_type",
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

OnBadFile = Literal["error", "skip"]


@dataclass
class Entries:
    """Embedded entries, ready for :meth:`EmbeddingIndex.add` (``keys``, ``vectors (n, D)``, ``modalities``,
    ``metadata``), plus the values that were skipped (``"<where>: <why>"``) and repeats folded into one key."""

    keys: list[Key] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    modalities: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    repeats: int = 0

    def __len__(self) -> int:
        return len(self.keys)

    def extend(self, other: Entries) -> None:
        """Append another batch of entries (a key already here is replaced by the later one)."""
        vectors = [v for v in (self.vectors, other.vectors) if v.size]
        self.vectors = np.concatenate(vectors) if vectors else other.vectors
        self.keys += other.keys
        self.modalities += other.modalities
        self.metadata += other.metadata
        self.skipped += other.skipped
        self.repeats += other.repeats

    def add_to(self, index: EmbeddingIndex) -> None:
        """Upsert these entries into ``index`` (one key once: the last occurrence wins)."""
        last = {key: i for i, key in enumerate(self.keys)}
        rows = sorted(last.values())
        if rows:
            index.add(
                self.vectors[rows],
                [self.keys[i] for i in rows],
                [self.modalities[i] for i in rows],
                [self.metadata[i] for i in rows],
            )

    def save(self, prefix: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<prefix>.npy`` (the ``(n, D)`` vectors) and ``<prefix>.jsonl`` (one line per row: key, modality,
        metadata), each atomically, then ``<prefix>.json``: the pair's header (rows, dimension, each file's size
        and SHA-256). The header is written last, so a save that stops between the files (a full disk, a kill)
        leaves a pair that :meth:`load` refuses by name instead of reading vectors beside the wrong rows.

        Returns:
            The ``.npy`` and ``.jsonl`` paths.
        """
        from jointembed.io import atomic_write, atomic_write_json, atomic_write_text

        npy, jsonl, header = _pair_paths(prefix)
        lines = [
            json.dumps({"key": k, "modality": m, "metadata": meta}, ensure_ascii=False)
            for k, m, meta in zip(self.keys, self.modalities, self.metadata, strict=True)
        ]

        def write_vectors(tmp: Path) -> None:
            with open(tmp, "wb") as out:  # a file object: np.save would add ".npy" to the temporary name
                np.save(out, self.vectors, allow_pickle=False)

        atomic_write(npy, write_vectors)
        atomic_write_text(jsonl, "".join(line + "\n" for line in lines))
        dim = int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
        described = {path.name: describe_file(path) for path in (npy, jsonl)}
        atomic_write_json(header, {**_PAIR, "rows": len(lines), "dim": dim, "files": described})
        return npy, jsonl

    @classmethod
    def load(cls, prefix: str | os.PathLike) -> Entries:
        """Read what :meth:`save` wrote under ``prefix``, checked to be one pair.

        Raises:
            DataFormatError: A missing or unreadable header, a ``.npy`` or ``.jsonl`` that is not the one the
                header describes (another save's, or one a failed save left), or a line of the wrong shape; the
                message names the file (and line and field), never a line's content.
        """
        npy, jsonl, header_path = _pair_paths(prefix)
        header = _read_pair_header(header_path)
        for path in (npy, jsonl):
            recorded = header["files"].get(path.name) if isinstance(header.get("files"), dict) else None
            if not path.is_file() or recorded != describe_file(path):
                state = "is missing" if not path.is_file() else "is not the file its header describes"
                raise DataFormatError(
                    f"{path} {state} ({header_path}): the vectors and rows under {prefix} are not one pair; a save "
                    "did not finish or another one wrote part of it; write them again"
                )
        vectors = np.load(npy, allow_pickle=False)
        with open(jsonl, "rb") as lines:
            rows = [_parse_row(raw, jsonl, number) for number, raw in enumerate(lines, start=1)]
        if len(rows) != len(vectors) or len(rows) != header.get("rows"):
            raise DataFormatError(f"{npy} holds {len(vectors)} vectors but {jsonl} {len(rows)} rows")
        return cls([k for k, _, _ in rows], vectors, [m for _, m, _ in rows], [meta for _, _, meta in rows])


_PAIR = {"format": "jointembed-vectors", "version": 1}


def _pair_paths(prefix: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``<prefix>.npy``, ``<prefix>.jsonl`` and their header ``<prefix>.json``."""
    prefix = Path(prefix)
    return tuple(prefix.with_name(prefix.name + suffix) for suffix in (".npy", ".jsonl", ".json"))  # type: ignore[return-value]


def _read_pair_header(path: Path) -> dict[str, Any]:
    """The header of a vectors + rows pair.

    Raises:
        DataFormatError: Missing, not JSON, or of another format or version.
    """
    if not path.is_file():
        raise DataFormatError(
            f"{path} is missing: the .npy and .jsonl beside it are not known to be one pair (a save that did not "
            "finish, or files written by an older jointembed); write them again"
        )
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path}: not valid JSON ({type(error).__name__})") from None
    if not isinstance(header, dict) or any(header.get(k) != v for k, v in _PAIR.items()):
        raise DataFormatError(f"{path}: not the header of jointembed vectors (format {_PAIR['format']!r}, version 1)")
    return header


def _parse_row(raw: bytes, path: Path, number: int) -> tuple[Key, str, dict[str, Any] | None]:
    """One ``.jsonl`` row (key, modality, metadata), checked as an index entry is; a deleted entry has no place
    among rows."""
    entry = parse_entry(raw, path, number, DataFormatError)
    if not entry.live:
        raise DataFormatError(f'{path}, line {number}: a deleted entry ({{"live": false}}) is not a row')
    return entry.key, entry.modality, entry.metadata  # type: ignore[return-value]


def _unit_type(model: Any, name: str) -> str:
    unit = model.inputs.get(name)
    return unit.registry_name if unit is not None else ""


def field_of_type(model: Any, kind: str, field: str | None = None) -> str:
    """The model's field that reads values of ``kind`` (``audio``, ``image``, ``text``, ``ids``).

    Args:
        model: A :class:`~jointembed.JointEmbeddingModel`.
        kind: The input type.
        field: A field name the caller chose: checked to exist and to be of that type.

    Raises:
        ValueError: The model has no field of that type (the message lists its fields and types), several
            (name one), or ``field`` is of another type.
    """
    have = ", ".join(f"{name} ({_unit_type(model, name) or 'no input unit'})" for name in model.fields)
    if field is not None:
        if field not in model.fields:
            raise ValueError(f"the model has no field {field!r}; it has {have}")
        if _unit_type(model, field) != kind:
            raise ValueError(f"field {field!r} reads {_unit_type(model, field) or 'nothing'}, not {kind}")
        return field
    if kind == "text" and model.zero_shot is not None:
        return model.zero_shot.field
    matches = [name for name in model.fields if _unit_type(model, name) == kind]
    if not matches:
        raise ValueError(f"the model has no {kind} field, so it cannot embed {kind} queries; its fields: {have}")
    if len(matches) > 1:
        raise ValueError(f"the model has several {kind} fields ({', '.join(matches)}): choose one with --field")
    return matches[0]


def file_type(path: str | os.PathLike) -> str:
    """``audio`` or ``image`` from a file's suffix.

    Raises:
        ValueError: A suffix that is neither (the message lists the known ones).
    """
    suffix = Path(path).suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise ValueError(
        f"{path}: cannot tell audio from image by the suffix {suffix!r} (audio: {' '.join(AUDIO_SUFFIXES)}; "
        f"images: {' '.join(IMAGE_SUFFIXES)}); pass --field"
    )


def _embed(
    model: Any, field: str, values: Sequence[Any], where: Sequence[str], on_bad_file: OnBadFile, **options: Any
) -> tuple[np.ndarray, list[int], list[str]]:
    """Vectors of the readable values, their indices, and ``"<where>: <why>"`` for the skipped ones."""
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file must be 'error' or 'skip', got {on_bad_file!r}")
    if on_bad_file == "error":
        vectors = model.embed(output="numpy", **options, **{field: list(values)})
        return vectors, list(range(len(values))), []
    found = model.embed_readable(output="numpy", **options, **{field: list(values)})
    skipped = [f"{where[i]}: {message}" for i, message in found.skipped]
    return found.vectors, found.indices, skipped


def _label_name(model: Any, label: Any) -> str | None:
    if label is None:
        return None
    if isinstance(label, str):
        return label
    names = model.zero_shot.label_names if model.zero_shot is not None else None
    if names and isinstance(label, int) and 0 <= label < len(names):
        return names[label]
    return str(label)


def embed_manifest(
    model: Any,
    manifest: str | os.PathLike | Manifest,
    fields: Sequence[str] | None = None,
    on_bad_file: OnBadFile = "error",
    **options: Any,
) -> Entries:
    """Embed every cell of the model's fields in a manifest (JSONL or CSV, as in training) as one entry each.

    Args:
        model: A :class:`~jointembed.JointEmbeddingModel`.
        manifest: The manifest file (or a read :class:`Manifest`).
        fields: Fields to embed; ``None`` embeds every model field that is a manifest column.
        on_bad_file: ``error`` stops at the first unreadable file (the error names it); ``skip`` leaves it out
            and lists it in :attr:`Entries.skipped`.
        **options: Passed to :meth:`JointEmbeddingModel.embed` (``batch_size``, ``progress``, ``num_workers``).

    Returns:
        :class:`Entries` keyed ``"<field>:<cell>"``, metadata ``field``, ``value`` (the cell as written),
        ``row``, ``manifest``, and ``label``, ``label_name``, ``group`` where the row has them. A cell repeated
        in several rows is one entry (the first row's metadata) and counted in :attr:`Entries.repeats`.

    Raises:
        DataFormatError: A cell that its field cannot parse (naming file, row and column), or no model field
            among the manifest's columns.
    """
    manifest = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    readable = [name for name in model.fields if name in model.inputs]
    chosen = [name for name in readable if name in manifest.columns] if fields is None else list(fields)
    if not chosen:
        raise DataFormatError(
            f"{manifest.path}: none of its columns ({', '.join(manifest.columns) or 'none'}) is a field of the "
            f"model ({', '.join(readable)})"
        )
    out = Entries(vectors=np.zeros((0, model.output_dim), np.float32))
    for name in chosen:
        if name not in readable:
            raise ValueError(f"the model has no readable field {name!r}; it has {', '.join(readable)}")
        unit = model.inputs[name]
        values, where, keys, metadata, seen = [], [], [], [], set()
        for row in manifest.rows:
            if name not in row.cells:
                continue
            cell = row.cells[name]
            key = f"{name}:{cell if isinstance(cell, str) else json.dumps(cell, ensure_ascii=False)}"
            if key in seen:
                out.repeats += 1
                continue
            try:
                value = unit.parse_cell(cell, manifest.base, manifest.from_csv)
            except (TypeError, ValueError) as error:
                raise DataFormatError(f"{manifest.where(row.row)}, column {name!r}: {error}") from None
            seen.add(key)
            values.append(value)
            where.append(f"{manifest.where(row.row)}, column {name!r}")
            keys.append(key)
            meta = {"field": name, "value": cell, "row": row.row, "manifest": manifest.path.name}
            if row.label is not None:
                meta.update(label=row.label, label_name=_label_name(model, row.label))
            if row.group is not None:
                meta["group"] = row.group
            metadata.append(meta)
        vectors, kept, skipped = _embed(model, name, values, where, on_bad_file, **options)
        out.extend(Entries([keys[i] for i in kept], vectors, [name] * len(kept), [metadata[i] for i in kept], skipped))
    return out


def embed_files(
    model: Any,
    paths: Sequence[str | os.PathLike],
    field: str | None = None,
    on_bad_file: OnBadFile = "error",
    **options: Any,
) -> Entries:
    """Embed image and audio files (each by the model's field of its type, or by ``field``), keyed by the path
    as given; metadata ``field``, ``path``.

    Raises:
        ValueError: A suffix that is neither audio nor image without ``field``, or a model without a field of
            that type.
    """
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        name = field_of_type(model, file_type(path) if field is None else _unit_type(model, field), field)
        groups.setdefault(name, []).append(i)
    out = Entries(vectors=np.zeros((0, model.output_dim), np.float32))
    for name, rows in groups.items():
        values = [str(paths[i]) for i in rows]
        vectors, kept, skipped = _embed(model, name, values, values, on_bad_file, **options)
        chosen = [values[i] for i in kept]
        out.extend(Entries(chosen, vectors, [name] * len(kept), [{"field": name, "path": p} for p in chosen], skipped))
    return out


def embed_values(model: Any, field: str, values: Sequence[Any], **options: Any) -> Entries:
    """Embed raw values of one field (texts, ID lists...), keyed ``"<field>:<value>"``; metadata ``field``,
    ``value``."""
    vectors = model.embed(output="numpy", **options, **{field: list(values)})
    keys = [f"{field}:{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for v in values]
    metadata = [{"field": field, "value": v if isinstance(v, str) else json.dumps(v)} for v in values]
    return Entries(keys, vectors, [field] * len(values), metadata)
