"""``EmbeddingIndex``: vectors of any modality under keys, with metadata, searched by cosine similarity.

One index holds images, recordings, texts and IDs embedded by one joint model side by side, so a query of any
field finds the nearest entries of every field (or of one, with ``modality=``). Search is exact in torch by
default and uses FAISS (flat, HNSW, IVF) by name when the ``faiss`` extra is installed. The saved folder:

- ``index.json``: format, version, dimension, metric, backend and its options, the model that made the
  vectors (its weights' fingerprint and name), each file's size and SHA-256, and a revision id that every save
  renews (written last);
- ``vectors.npy``: ``(n, D)`` float32 rows;
- ``entries.jsonl``: one line a row: key, modality, metadata, and whether it is live (deleted rows of an HNSW or
  IVF index stay in its graph until :meth:`EmbeddingIndex.compact`; their key and metadata are not kept);
- ``faiss.index``: the FAISS structure, for FAISS backends.

The folder is built beside the destination and renamed into place, so a killed save leaves the previous index
whole; loading checks every file against the header and raises :class:`~jointembed.errors.IndexFileError`
naming the file. Saving holds the folder's lock (:func:`jointembed.io.folder_lock`), and
:meth:`EmbeddingIndex.edit` holds it around a whole load, change and save, so processes that update one index
folder take turns and none loses another's entries.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from jointembed import __version__
from jointembed.errors import ConcurrentWriteError, IndexFileError, ModelMismatchError
from jointembed.io import LOCK_TIMEOUT, atomic_write_folder, folder_lock, recover_folder
from jointembed.rwlock import ReadWriteLock
from jointembed.search import index_files as files
from jointembed.search.backends import Backend, create_backend
from jointembed.search.index_files import INDEX_FORMAT, INDEX_VERSION
from jointembed.trust import check_links

__all__ = ["EmbeddingIndex", "Hit", "Key", "model_info", "INDEX_FORMAT", "INDEX_VERSION"]

Key = str | int
Filter = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]


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

    Threads: any number of threads may search and read an index while others add, delete, compact or save it.
    A readers-writer lock inside the index lets reads run together and each change run alone, so a search sees
    the index before or after a change, never halfway. Positions from :meth:`search_positions` are valid until
    the next change. Processes: use :meth:`edit` to update a saved index folder that others may update too.
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
        self._lock = ReadWriteLock()
        self._origin: tuple[str, str | None] | None = None  # the folder this index was loaded from and its revision
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
        with self._lock.reading():
            return [self._keys[i] for i in self._live_positions()]  # type: ignore[misc]

    def vectors(self) -> np.ndarray:
        """``(n, D)`` float32 vectors of the live entries (normalised for cosine), in :meth:`keys` order."""
        with self._lock.reading():
            return self._vectors[self._live_positions()]

    def modalities(self) -> list[str]:
        """The live entries' modalities, in :meth:`keys` order."""
        with self._lock.reading():
            return [self._modality_names[c] for c in self._modality[self._live_positions()]]

    def metadata(self) -> list[dict[str, Any]]:
        """The live entries' metadata dicts, in :meth:`keys` order."""
        with self._lock.reading():
            return [dict(self._metadata[i] or {}) for i in self._live_positions()]

    def get(self, key: Key) -> tuple[np.ndarray, str, dict[str, Any]]:
        """``(vector (D,), modality, metadata)`` of one entry.

        Raises:
            KeyError: No live entry has that key.
        """
        with self._lock.reading():
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
        with self._lock.writing():
            self._insert(array, keys, modalities, clean)

    def _insert(
        self, array: np.ndarray, keys: list[Key], modalities: list[str], clean: list[dict[str, Any] | None]
    ) -> None:
        """Append checked rows (the write lock held), retiring the rows of keys they replace."""
        n = len(array)
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
        with self._lock.writing():
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
        with self._lock.writing():
            self._compact()

    def _compact(self) -> None:
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
        with self._lock.reading():
            scores, positions = self.backend.search(array, k, self._allowed(modality, filter))
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
        with self._lock.reading():
            return self.backend.search(queries, k, self._allowed(modality, filter))

    def key_at(self, position: int) -> Key:
        """The key of a live row position returned by :meth:`search_positions`."""
        with self._lock.reading():
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
        _check_model(self.dim, self.model, model)

    @staticmethod
    def check_folder(folder: str | os.PathLike, model: torch.nn.Module | Mapping[str, Any]) -> None:
        """:meth:`check_model` against a saved index from its header alone (a quick check before embedding).

        Raises:
            IndexFileError: The folder holds no index header of this format.
            ModelMismatchError: ``model`` is not the model that made the vectors.
        """
        header = files.read_header(Path(folder))
        model_of = header.get("model")
        _check_model(header.get("dim"), model_of if isinstance(model_of, dict) else None, model)

    # ----- saving and loading -------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, timeout: float | None = LOCK_TIMEOUT) -> Path:
        """Write the index as one folder (atomically: a killed save leaves the previous folder whole), holding
        the folder's lock.

        Deleted rows of an exact or flat index are dropped first (:meth:`compact`, cheap there); an HNSW/IVF
        index keeps them in its structure, marked deleted, until :meth:`compact` is called.

        Args:
            folder: Destination.
            timeout: Seconds to wait for another process's save of the same folder (``None``: for ever).

        Raises:
            ConcurrentWriteError: The index was loaded from ``folder`` and another process has saved ``folder``
                since (saving would drop its changes: use :meth:`edit`), or the lock stayed busy.
        """
        with folder_lock(folder, timeout), self._lock.writing():
            self._refuse_stale_save(Path(folder))
            if self.backend.name in ("exact", "flat"):
                self._compact()
            revision = uuid.uuid4().hex
            atomic_write_folder(folder, lambda tmp: self._write_files(tmp, revision), files.HEADER_NAME, timeout)
            self._origin = (os.path.abspath(folder), revision)
        return Path(folder)

    def _refuse_stale_save(self, folder: Path) -> None:
        origin = self._origin
        if origin is None or origin[0] != os.path.abspath(folder) or not (folder / files.HEADER_NAME).is_file():
            return
        if files.read_revision(folder) != origin[1]:
            raise ConcurrentWriteError(
                f"{folder} was saved by another process after this index was loaded from it; saving now would "
                "drop that save's entries. Load it again and repeat the changes, or update it with "
                "EmbeddingIndex.edit(folder), which holds the folder's lock from load to save"
            )

    def _write_files(self, tmp: Path, revision: str) -> None:
        """Fill a new index folder (the write lock held): vectors, entries, the FAISS structure, header last."""
        np.save(tmp / files.VECTORS, self._vectors[: self._size], allow_pickle=False)
        with open(tmp / files.ENTRIES, "w", encoding="utf-8") as out:
            for i in range(self._size):
                name = self._modality_names[self._modality[i]]
                out.write(files.entry_line(self._keys[i], name, self._metadata[i], bool(self._live[i])))
        backend_bytes = self.backend.to_bytes()
        if backend_bytes is not None:
            (tmp / files.FAISS).write_bytes(backend_bytes)
        names = [files.VECTORS, files.ENTRIES] + ([files.FAISS] if backend_bytes is not None else [])
        header = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "dim": self.dim,
            "metric": self.metric,
            "rows": self._size,
            "entries": len(self),
            "backend": {"name": self.backend.name, "options": self.backend.options},
            "model": self.model,
            "files": {name: files.describe_file(tmp / name) for name in names},
            "revision": revision,
            "jointembed_version": __version__,
        }
        text = json.dumps(header, indent=2, ensure_ascii=False) + "\n"
        (tmp / files.HEADER_NAME).write_text(text, encoding="utf-8")

    @classmethod
    def load(
        cls, folder: str | os.PathLike, model: torch.nn.Module | Mapping[str, Any] | None = None
    ) -> EmbeddingIndex:
        """Read a folder written by :meth:`save` (first putting back a folder that a save killed halfway
        through its swap left in its backup).

        Args:
            folder: The index folder.
            model: The model that will embed queries (or its :func:`model_info`): checked against the one that
                made the vectors.

        Raises:
            IndexFileError: A missing, truncated or altered file, another format or version, or an entry of the
                wrong type; the message names the folder, the file and (for entries) the line and field.
            CheckpointError: A link inside the folder leads outside it.
            ModelMismatchError: ``model`` is not the model that made the vectors.
        """
        folder = Path(folder)
        recover_folder(folder)
        check_links(folder)  # an index reads only its own files (jointembed.trust)
        header = files.read_header(folder)
        try:
            backend = header["backend"]
            index = cls(int(header["dim"]), backend["name"], backend.get("options"), header["metric"], header["model"])
            rows = int(header["rows"])
            listed = header["files"]
        except (KeyError, TypeError, ValueError) as error:
            raise IndexFileError(f"{folder / files.HEADER_NAME}: bad header ({error})") from None
        for name in (files.VECTORS, files.ENTRIES) + ((files.FAISS,) if backend["name"] != "exact" else ()):
            if not isinstance(listed, dict) or name not in listed:
                raise IndexFileError(f"{folder / files.HEADER_NAME} does not list {name}")
            files.check_file(folder / name, listed[name])
        vectors = files.read_vectors(folder / files.VECTORS, rows, index.dim)
        index._take_entries(files.read_entries(folder / files.ENTRIES, rows))
        index._vectors = vectors
        if index.backend.name == "exact":
            index.backend.rebuild(index._vectors)
        else:
            try:
                index.backend.load_bytes((folder / files.FAISS).read_bytes(), index._vectors)
            except (ValueError, RuntimeError) as error:
                raise IndexFileError(f"{folder / files.FAISS}: {error}") from None
        if model is not None:
            index.check_model(model)
        index._origin = (os.path.abspath(folder), files.read_revision(folder))
        return index

    def _take_entries(self, entries: list[files.Entry]) -> None:
        """Set the rows' keys, modalities, metadata and live flags from checked ``entries.jsonl`` lines."""
        rows = len(entries)
        self._size = rows
        self._keys = [entry.key for entry in entries]
        self._metadata = [entry.metadata for entry in entries]
        self._live = np.array([entry.live for entry in entries], bool).reshape(rows)
        self._modality_names = list(dict.fromkeys(e.modality for e in entries if e.live)) or [""]
        codes = {name: code for code, name in enumerate(self._modality_names)}
        self._modality = np.array([codes.get(e.modality, 0) for e in entries], np.int32).reshape(rows)
        self._position = {key: i for i, key in enumerate(self._keys) if key is not None}

    @classmethod
    @contextlib.contextmanager
    def edit(
        cls,
        folder: str | os.PathLike,
        model: torch.nn.Module | Mapping[str, Any] | None = None,
        create: Callable[[], EmbeddingIndex] | None = None,
        timeout: float | None = LOCK_TIMEOUT,
        on_wait: Callable[[str], None] | None = None,
    ) -> Iterator[EmbeddingIndex]:
        """Update a saved index that other processes may update too: ``with EmbeddingIndex.edit(folder) as
        index: index.add(...)`` loads it, lets the block change it and saves it, holding the folder's lock from
        the load to the save, so concurrent updates take turns and each sees the entries of the ones before.
        Nothing is saved when the block raises.

        Args:
            folder: The index folder.
            model: Checked against the model that made the vectors, as in :meth:`load`.
            create: Makes the index when ``folder`` holds none yet (``None``: a missing index is an error).
            timeout: Seconds to wait for another process's update (``None``: for ever).
            on_wait: Called once with the holder (``"pid 123 on host"``) when another process holds the lock.

        Raises:
            IndexFileError / ModelMismatchError: As :meth:`load`.
            ConcurrentWriteError: The lock stayed busy for ``timeout`` seconds.
        """
        with folder_lock(folder, timeout, on_wait):
            exists = recover_folder(folder, timeout)
            index = cls.load(folder, model) if exists or create is None else create()
            yield index
            index.save(folder, timeout)


def _check_model(dim: Any, recorded: Mapping[str, Any] | None, model: torch.nn.Module | Mapping[str, Any]) -> None:
    """Refuse ``model`` where it is not the model an index of ``dim``-dim vectors recorded (``recorded``)."""
    info = dict(model) if isinstance(model, Mapping) else model_info(model)
    if info.get("dim") is not None and info["dim"] != dim:
        raise ModelMismatchError(
            f"the model {info.get('name')!r} makes {info['dim']}-dim vectors; this index holds {dim}-dim ones"
        )
    if recorded is not None and info.get("fingerprint") != recorded.get("fingerprint"):
        raise ModelMismatchError(
            f"this index holds vectors of model {recorded.get('name')!r} "
            f"({str(recorded.get('fingerprint'))[:19]}), not of {info.get('name')!r} "
            f"({str(info.get('fingerprint'))[:19]}): its vectors are not comparable "
            "with that model's; embed the entries again with it"
        )


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
