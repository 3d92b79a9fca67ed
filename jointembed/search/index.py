"""``EmbeddingIndex``: vectors of any modality under keys, with metadata, searched by cosine similarity.

One index holds images, recordings, texts and IDs embedded by one joint model side by side, so a query of any
field finds the nearest entries of every field (or of one, with ``modality=``). Search is exact in torch by
default and uses FAISS (flat, HNSW, IVF) by name when the ``faiss`` extra is installed. The saved folder:

- ``index.json``: format, version, dimension, metric, backend and its options, the model that made the
  vectors (its weights' fingerprint and name), and each file's size and SHA-256 (written last);
- ``vectors.npy``: ``(n, D)`` float32 rows;
- ``entries.jsonl``: one line a row: key, modality, metadata, and whether it is live (deleted rows of an HNSW or
  IVF index stay in its graph until :meth:`EmbeddingIndex.compact`; their key and metadata are not kept);
- ``faiss.index``: the FAISS structure, for FAISS backends.

The folder is built beside the destination and renamed into place, so a killed save leaves the previous index
whole; loading checks every file against the header and raises :class:`~jointembed.errors.IndexFileError`
naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from jointembed import __version__
from jointembed.errors import IndexFileError, ModelMismatchError
from jointembed.io import atomic_write_folder
from jointembed.search.backends import BACKENDS, Backend, create_backend

__all__ = ["EmbeddingIndex", "Hit", "Key", "model_info", "INDEX_FORMAT", "INDEX_VERSION"]

Key = str | int
Filter = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]

INDEX_FORMAT = "jointembed-index"
INDEX_VERSION = 1
HEADER_NAME = "index.json"
_VECTORS, _ENTRIES, _FAISS = "vectors.npy", "entries.jsonl", "faiss.index"


class Hit(NamedTuple):
    """One search result: the entry's key, its cosine similarity to the query, its modality and metadata."""

    key: Key
    score: float
    modality: str
    metadata: dict[str, Any]


def model_info(model: torch.nn.Module, name: str | None = None) -> dict[str, Any]:
    """What an index records of the model that made its vectors: its weights' fingerprint, a name (e.g. the
    folder it was loaded from), its output dimension and its fields."""
    from jointembed.pretrained import model_fingerprint

    fields = list(getattr(model, "fields", []) or [])
    return {
        "fingerprint": model_fingerprint(model),
        "name": str(name) if name is not None else type(model).__name__,
        "dim": int(getattr(model, "output_dim", 0)) or None,
        "fields": fields,
    }


def _plain_key(key: Any, where: str) -> Key:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"{where}: a key must be a string or an integer, got {key!r}")
    if isinstance(key, (int, np.integer)):
        return int(key)
    if isinstance(key, str):
        return key
    raise TypeError(f"{where}: a key must be a string or an integer, got {type(key).__name__} {key!r}")


class EmbeddingIndex:
    """Vectors with keys, modalities and metadata; exact or FAISS nearest-neighbour search by cosine similarity.

    Args:
        dim: Vector dimension D.
        backend: ``exact`` (torch, default), or with the ``faiss`` extra ``flat``, ``hnsw``, ``ivf_flat``,
            ``ivf_pq``.
        backend_options: The backend's settings, e.g. ``{"M": 32, "ef_search": 64}`` for ``hnsw`` or
            ``{"nlist": 1024, "nprobe": 16}`` for IVF (see :class:`~jointembed.search.backends.FaissBackend`).
        metric: ``cosine`` (vectors and queries are L2-normalised) or ``dot`` (raw inner product, e.g. a
            recommender's user · item scores).
        model: What :func:`model_info` recorded of the model that made the vectors, or ``None``.

    Keys are strings or integers (``7`` and ``"7"`` are different keys); adding a key that exists replaces its
    entry (upsert).
    """

    def __init__(
        self,
        dim: int,
        backend: str = "exact",
        backend_options: Mapping[str, Any] | None = None,
        metric: Literal["cosine", "dot"] = "cosine",
        model: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if metric not in ("cosine", "dot"):
            raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
        self.dim = dim
        self.metric = metric
        self.model = dict(model) if model is not None else None
        self.backend: Backend = create_backend(backend, dim, backend_options)
        self._vectors = np.zeros((0, dim), np.float32)
        self._size = 0
        self._keys: list[Key | None] = []
        self._modality = np.zeros(0, np.int32)
        self._modality_names: list[str] = []
        self._metadata: list[dict[str, Any] | None] = []
        self._live = np.zeros(0, bool)
        self._position: dict[Key, int] = {}
        attach = getattr(self.backend, "attach", None)
        if attach is not None:  # exact search reads the rows kept here instead of a copy of its own
            attach(lambda: self._vectors[: self._size])

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        name: str | None = None,
        backend: str = "exact",
        backend_options: Mapping[str, Any] | None = None,
    ) -> EmbeddingIndex:
        """An empty cosine index for the vectors of ``model`` (a :class:`~jointembed.JointEmbeddingModel`),
        recording which model it is so that vectors of another model are refused later."""
        info = model_info(model, name)
        return cls(info["dim"], backend, backend_options, "cosine", info)

    # ----- contents -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._position)

    def __contains__(self, key: object) -> bool:
        return key in self._position

    @property
    def backend_name(self) -> str:
        """The backend's name (``exact``, ``flat``, ``hnsw``, ...)."""
        return self.backend.name

    def _live_positions(self) -> np.ndarray:
        return np.flatnonzero(self._live[: self._size])

    def keys(self) -> list[Key]:
        """The live entries' keys, in the order they were added."""
        return [self._keys[i] for i in self._live_positions()]  # type: ignore[misc]

    def vectors(self) -> np.ndarray:
        """``(n, D)`` float32 vectors of the live entries (normalised for cosine), in :meth:`keys` order."""
        return self._vectors[self._live_positions()]

    def modalities(self) -> list[str]:
        """The live entries' modalities, in :meth:`keys` order."""
        return [self._modality_names[c] for c in self._modality[self._live_positions()]]

    def metadata(self) -> list[dict[str, Any]]:
        """The live entries' metadata dicts, in :meth:`keys` order."""
        return [dict(self._metadata[i] or {}) for i in self._live_positions()]

    def get(self, key: Key) -> tuple[np.ndarray, str, dict[str, Any]]:
        """``(vector (D,), modality, metadata)`` of one entry.

        Raises:
            KeyError: No live entry has that key.
        """
        position = self._position.get(key)
        if position is None:
            raise KeyError(f"the index has no entry {key!r} ({len(self)} entries)")
        code = int(self._modality[position])
        return self._vectors[position].copy(), self._modality_names[code], dict(self._metadata[position] or {})

    # ----- changes ------------------------------------------------------------------------------------------

    def _prepare(self, vectors: Any, what: str) -> np.ndarray:
        array = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ModelMismatchError(f"{what} have shape {tuple(array.shape)}; this index holds {self.dim}-dim vectors")
        array = np.ascontiguousarray(array, dtype=np.float32)
        bad = ~np.isfinite(array).all(axis=1)
        if bad.any():
            raise ValueError(f"{what} row {int(np.flatnonzero(bad)[0])} is not finite (NaN or inf)")
        if self.metric == "cosine":
            norms = np.linalg.norm(array, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ValueError(f"{what} row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros: no direction")
            array = array / norms
        return array

    def add(
        self,
        vectors: torch.Tensor | np.ndarray,
        keys: Sequence[Key],
        modality: str | Sequence[str],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Add (or replace, by key) entries.

        Args:
            vectors: ``(n, D)`` vectors (normalised here for cosine).
            keys: ``n`` distinct keys (strings or integers).
            modality: One modality for all (``"image"``) or one each (the model's field names).
            metadata: ``n`` JSON-able dicts (or ``None``s), e.g. ``{"label": 7, "path": "images/7_0.png"}``.

        Raises:
            ValueError: Lengths that disagree, a repeated key, non-finite or zero vectors, metadata that is not a
                JSON object; the message names the row.
            ModelMismatchError: Vectors of another dimension.
        """
        array = self._prepare(vectors, "vectors")
        n = len(array)
        keys = [_plain_key(key, f"keys[{i}]") for i, key in enumerate(keys)]
        modalities = [modality] * n if isinstance(modality, str) else list(modality)
        metadata = [None] * n if metadata is None else list(metadata)
        if not (len(keys) == len(modalities) == len(metadata) == n):
            raise ValueError(
                f"{n} vectors but {len(keys)} keys, {len(modalities)} modalities and {len(metadata)} metadata rows"
            )
        seen: set[Key] = set()
        for i, key in enumerate(keys):
            if key in seen:
                raise ValueError(f"keys[{i}] = {key!r} appears twice in one add")
            seen.add(key)
        clean = [self._check_metadata(meta, i) for i, meta in enumerate(metadata)]
        for i, name in enumerate(modalities):
            if not isinstance(name, str) or not name:
                raise ValueError(f"modality of row {i} must be a non-empty string, got {name!r}")
        if n == 0:
            return
        self.backend.add(array)  # first: an IVF index that cannot train refuses before anything changes
        replaced = [self._position[key] for key in keys if key in self._position]
        self._grow(n)
        start = self._size
        self._vectors[start : start + n] = array
        for name in dict.fromkeys(modalities):
            if name not in self._modality_names:
                self._modality_names.append(name)
        codes = {name: code for code, name in enumerate(self._modality_names)}
        self._modality[start : start + n] = [codes[name] for name in modalities]
        self._live[start : start + n] = True
        for position in replaced:
            self._retire(position)
        self._keys.extend(keys)
        self._metadata.extend(clean)
        for offset, key in enumerate(keys):
            self._position[key] = start + offset
        self._size += n

    @staticmethod
    def _check_metadata(meta: Mapping[str, Any] | None, row: int) -> dict[str, Any] | None:
        if meta is None:
            return None
        if not isinstance(meta, Mapping):
            raise ValueError(f"metadata row {row} must be a dict, got {type(meta).__name__}")
        try:
            return json.loads(json.dumps(dict(meta), allow_nan=False))
        except (TypeError, ValueError) as error:
            raise ValueError(f"metadata row {row} is not JSON-able: {error}") from None

    def _grow(self, n: int) -> None:
        need = self._size + n
        if need <= len(self._vectors):
            return
        capacity = max(need, 2 * len(self._vectors), 1024)
        vectors = np.zeros((capacity, self.dim), np.float32)
        vectors[: self._size] = self._vectors[: self._size]
        self._vectors = vectors
        self._modality = np.concatenate([self._modality[: self._size], np.zeros(capacity - self._size, np.int32)])
        self._live = np.concatenate([self._live[: self._size], np.zeros(capacity - self._size, bool)])

    def _retire(self, position: int) -> None:
        self._live[position] = False
        self._keys[position] = None
        self._metadata[position] = None

    def delete(self, keys: Iterable[Key], missing: Literal["error", "ignore"] = "error") -> int:
        """Delete entries by key; returns how many were deleted.

        Raises:
            KeyError: A key that is not in the index (with ``missing="error"``), before anything is deleted.
        """
        keys = list(keys)
        if missing == "error":
            absent = [key for key in keys if key not in self._position]
            if absent:
                raise KeyError(f"not in the index: {absent[:5]}{' ...' if len(absent) > 5 else ''}")
        deleted = 0
        for key in keys:
            position = self._position.pop(key, None)
            if position is not None:
                self._retire(position)
                deleted += 1
        return deleted

    def compact(self) -> None:
        """Drop deleted rows for good and rebuild the backend over the live ones (for HNSW/IVF this rebuilds
        the structure: minutes for millions of vectors)."""
        live = self._live_positions()
        if len(live) == self._size:
            return
        self._vectors = self._vectors[live].copy()
        self._modality = self._modality[live].copy()
        self._live = np.ones(len(live), bool)
        self._keys = [self._keys[i] for i in live]
        self._metadata = [self._metadata[i] for i in live]
        self._size = len(live)
        self._position = {key: i for i, key in enumerate(self._keys)}  # type: ignore[misc]
        self.backend.rebuild(self._vectors)

    # ----- search -------------------------------------------------------------------------------------------

    def _allowed(self, modality: str | Sequence[str] | None, where: Filter | None) -> np.ndarray | None:
        live = self._live[: self._size]
        allowed = None if live.all() else live.copy()
        if modality is not None:
            names = [modality] if isinstance(modality, str) else list(modality)
            unknown = [name for name in names if name not in self._modality_names]
            if unknown:
                have = ", ".join(self._modality_names) or "none"
                raise ValueError(f"no entries of modality {unknown}; the index holds: {have}")
            codes = [self._modality_names.index(name) for name in names]
            mask = np.isin(self._modality[: self._size], codes)
            allowed = mask if allowed is None else allowed & mask
        if where is not None:
            mask = np.fromiter(
                (meta is not None and _matches(meta, where) for meta in self._metadata), bool, self._size
            )
            allowed = mask if allowed is None else allowed & mask
        return allowed

    def search(
        self,
        queries: torch.Tensor | np.ndarray,
        k: int = 10,
        modality: str | Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """The ``k`` entries nearest each query.

        Args:
            queries: ``(q, D)`` vectors, or one ``(D,)`` vector.
            k: Results per query (``>= 1``); fewer come back when fewer entries pass the filters.
            modality: Only entries of this modality (or these).
            filter: Only entries whose metadata matches: a dict of key → value (or a list/tuple/set of allowed
                values), or a function of the metadata dict returning a bool.

        Returns:
            For one ``(D,)`` query a list of :class:`Hit`, best first; for ``(q, D)`` one list per query.

        Raises:
            ValueError: ``k < 1``, a modality the index does not hold, a non-finite or zero query.
            ModelMismatchError: Queries of another dimension.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        single = np.ndim(queries.detach().cpu() if isinstance(queries, torch.Tensor) else queries) == 1
        array = self._prepare(queries, "queries")
        scores, positions = self.search_positions(array, k, modality, filter)
        hits = [
            [
                Hit(self._keys[p], float(s), self._modality_names[self._modality[p]], dict(self._metadata[p] or {}))  # type: ignore[arg-type]
                for s, p in zip(row_s, row_p, strict=True)
                if p >= 0
            ]
            for row_s, row_p in zip(scores, positions, strict=True)
        ]
        return hits[0] if single else hits

    def search_positions(
        self,
        queries: np.ndarray,
        k: int,
        modality: str | Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower-level :meth:`search` for prepared ``(q, D)`` float32 queries: ``scores (q, k)`` and row
        positions ``(q, k)`` (``-1`` padding); :meth:`key_at` turns a position into its key."""
        allowed = self._allowed(modality, filter)
        return self.backend.search(queries, k, allowed)

    def key_at(self, position: int) -> Key:
        """The key of a live row position returned by :meth:`search_positions`."""
        key = self._keys[position]
        if key is None:
            raise KeyError(f"row {position} was deleted")
        return key

    # ----- models -------------------------------------------------------------------------------------------

    def check_model(self, model: torch.nn.Module | Mapping[str, Any]) -> None:
        """Refuse a model other than the one that made the vectors.

        Args:
            model: A model, or what :func:`model_info` recorded of one.

        Raises:
            ModelMismatchError: Another dimension, or (when the index recorded its model) other weights.
        """
        info = dict(model) if isinstance(model, Mapping) else model_info(model)
        if info.get("dim") is not None and info["dim"] != self.dim:
            raise ModelMismatchError(
                f"the model {info.get('name')!r} makes {info['dim']}-dim vectors; this index holds {self.dim}-dim ones"
            )
        if self.model is not None and info.get("fingerprint") != self.model.get("fingerprint"):
            raise ModelMismatchError(
                f"this index holds vectors of model {self.model.get('name')!r} "
                f"({str(self.model.get('fingerprint'))[:19]}), not of {info.get('name')!r} "
                f"({str(info.get('fingerprint'))[:19]}): its vectors are not comparable "
                "with that model's; embed the entries again with it"
            )

    # ----- saving and loading -------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index as one folder (atomically: a killed save leaves the previous folder whole).

        Deleted rows of an exact or flat index are dropped first (:meth:`compact`, cheap there); an HNSW/IVF
        index keeps them in its structure, marked deleted, until :meth:`compact` is called.
        """
        if self.backend.name in ("exact", "flat"):
            self.compact()
        vectors = self._vectors[: self._size]
        backend_bytes = self.backend.to_bytes()

        def write(tmp: Path) -> None:
            np.save(tmp / _VECTORS, vectors, allow_pickle=False)
            with open(tmp / _ENTRIES, "w", encoding="utf-8") as out:
                for i in range(self._size):
                    live = bool(self._live[i])
                    entry = {"key": self._keys[i], "modality": self._modality_names[self._modality[i]]}
                    if live and self._metadata[i] is not None:
                        entry["metadata"] = self._metadata[i]
                    out.write(json.dumps(entry if live else {"live": False}, ensure_ascii=False) + "\n")
            if backend_bytes is not None:
                (tmp / _FAISS).write_bytes(backend_bytes)
            files = [_VECTORS, _ENTRIES] + ([_FAISS] if backend_bytes is not None else [])
            header = {
                "format": INDEX_FORMAT,
                "version": INDEX_VERSION,
                "dim": self.dim,
                "metric": self.metric,
                "rows": self._size,
                "entries": len(self),
                "backend": {"name": self.backend.name, "options": self.backend.options},
                "model": self.model,
                "files": {name: _describe_file(tmp / name) for name in files},
                "jointembed_version": __version__,
            }
            (tmp / HEADER_NAME).write_text(json.dumps(header, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

        return atomic_write_folder(folder, write, marker=HEADER_NAME)

    @classmethod
    def load(
        cls, folder: str | os.PathLike, model: torch.nn.Module | Mapping[str, Any] | None = None
    ) -> EmbeddingIndex:
        """Read a folder written by :meth:`save`.

        Args:
            folder: The index folder.
            model: The model that will embed queries (or its :func:`model_info`): checked against the one that
                made the vectors.

        Raises:
            IndexFileError: A missing, truncated or altered file, or another format or version; the message
                names the folder and the file.
            ModelMismatchError: ``model`` is not the model that made the vectors.
        """
        folder = Path(folder)
        header = _read_header(folder)
        try:
            backend = header["backend"]
            index = cls(int(header["dim"]), backend["name"], backend.get("options"), header["metric"], header["model"])
            rows = int(header["rows"])
            files = header["files"]
        except (KeyError, TypeError, ValueError) as error:
            raise IndexFileError(f"{folder / HEADER_NAME}: bad header ({error})") from None
        for name in (_VECTORS, _ENTRIES) + ((_FAISS,) if backend["name"] != "exact" else ()):
            if name not in files:
                raise IndexFileError(f"{folder / HEADER_NAME} does not list {name}")
            _check_file(folder / name, files[name])
        try:
            vectors = np.load(folder / _VECTORS, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise IndexFileError(f"{folder / _VECTORS}: cannot read ({error})") from None
        if vectors.shape != (rows, index.dim) or vectors.dtype != np.float32:
            raise IndexFileError(
                f"{folder / _VECTORS} holds {vectors.dtype} {vectors.shape}, "
                f"the header says float32 ({rows}, {index.dim})"
            )
        index._read_entries(folder / _ENTRIES, rows)
        index._vectors = np.ascontiguousarray(vectors)
        if index.backend.name == "exact":
            index.backend.rebuild(index._vectors)
        else:
            try:
                index.backend.load_bytes((folder / _FAISS).read_bytes(), index._vectors)
            except (ValueError, RuntimeError) as error:
                raise IndexFileError(f"{folder / _FAISS}: {error}") from None
        if model is not None:
            index.check_model(model)
        return index

    def _read_entries(self, path: Path, rows: int) -> None:
        with open(path, encoding="utf-8") as lines:
            entries = []
            for number, line in enumerate(lines, start=1):
                try:
                    entry = json.loads(line)
                    live = entry.get("live", True)
                    key = _plain_key(entry["key"], "key") if live else None
                    entries.append((key, entry.get("modality", ""), entry.get("metadata"), live))
                except (ValueError, KeyError, TypeError, AttributeError) as error:
                    raise IndexFileError(f"{path}, line {number}: bad entry ({error})") from None
        if len(entries) != rows:
            raise IndexFileError(f"{path} has {len(entries)} entries, the header says {rows}")
        self._size = rows
        self._keys = [key for key, _, _, _ in entries]
        self._metadata = [meta for _, _, meta, _ in entries]
        self._live = np.array([live for *_, live in entries], bool).reshape(rows)
        names = list(dict.fromkeys(modality for _, modality, _, live in entries if live))
        self._modality_names = names or [""]
        codes = {name: code for code, name in enumerate(self._modality_names)}
        self._modality = np.array([codes.get(m, 0) for _, m, _, _ in entries], np.int32).reshape(rows)
        self._position = {key: i for i, key in enumerate(self._keys) if key is not None}
        if len(self._position) != int(self._live.sum()):
            raise IndexFileError(f"{path}: a key appears on two live lines")


def _matches(meta: Mapping[str, Any], where: Filter) -> bool:
    if callable(where):
        return bool(where(meta))
    for key, wanted in where.items():
        if key not in meta:
            return False
        value = meta[key]
        if isinstance(wanted, (list, tuple, set, frozenset)):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def _describe_file(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _read_header(folder: Path) -> dict[str, Any]:
    path = folder / HEADER_NAME
    if not folder.is_dir():
        raise IndexFileError(f"{folder} is not an index folder (no such folder)")
    if not path.is_file():
        raise IndexFileError(f"{folder} is not a saved index: it has no {HEADER_NAME}")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise IndexFileError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
        raise IndexFileError(
            f"{path}: not a jointembed index (format {header.get('format') if isinstance(header, dict) else None!r})"
        )
    if header.get("version") != INDEX_VERSION:
        raise IndexFileError(
            f"{path}: index format version {header.get('version')!r}; this jointembed reads {INDEX_VERSION}"
        )
    if header.get("backend", {}).get("name") not in BACKENDS:
        raise IndexFileError(f"{path}: unknown backend {header.get('backend')!r}")
    return header


def _check_file(path: Path, expected: Mapping[str, Any]) -> None:
    if not path.is_file():
        raise IndexFileError(f"{path} is missing")
    size = path.stat().st_size
    if size != expected.get("bytes"):
        raise IndexFileError(f"{path} is truncated or altered: {size} bytes, the header says {expected.get('bytes')}")
    if _describe_file(path)["sha256"] != expected.get("sha256"):
        raise IndexFileError(f"{path} is altered: its SHA-256 differs from the one in the header")
