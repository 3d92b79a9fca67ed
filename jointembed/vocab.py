"""Vocabulary: map feature values (strings, ints, floats) to integer IDs ``0..N-1`` and back.

Unseen values go to an out-of-vocabulary token or to hash buckets whose IDs are stable across processes and
machines (``stable_hash``, never Python's salted ``hash``). A vocabulary saves to human-readable JSON.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import operator
import os
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from jointembed.errors import VocabularyFormatError
from jointembed.io import atomic_write_json

__all__ = ["Vocabulary", "stable_hash"]

FORMAT = "jointembed.vocabulary"
VERSION = 1
SUPPORTED_VERSIONS = (1,)
_KEYS = ("format", "version", "pad_token", "oov_token", "num_oov_buckets", "values", "counts")
_POLICIES = ("oov", "error")

Value = str | int | float
Unknown = Literal["oov", "error"]


def _check_value(value: Any) -> Value:
    """Return ``value`` as a plain ``str``, ``int`` or ``float``, or raise if it cannot be a vocabulary value."""
    kind = type(value)
    if kind is str or kind is int:  # fast path: the common case costs two identity checks
        return value
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("NaN cannot be a vocabulary value: it never equals itself, so it could not be looked up")
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)  # a subclass (numpy.str_) becomes a plain str, so it saves and hashes as one
    if not isinstance(value, bool):
        with contextlib.suppress(TypeError):  # not an integer either: fall through to the error below
            return operator.index(value)  # int subclasses and numpy / torch integer scalars
    raise TypeError(
        f"{value!r} (type {kind.__name__}) cannot be a vocabulary value: use str, int or float (not bool or None)"
    )


def stable_hash(value: Any) -> int:
    """A 64-bit hash of a vocabulary value that is the same in every process, on every machine.

    The value is encoded with its type, so ``"1"`` and ``1`` hash differently; ``1`` and ``1.0`` hash the same,
    as they are the same dictionary key. Changing this function changes the OOV bucket of saved models.

    Args:
        value: A str, int or float (not bool, None or NaN).

    Returns:
        An integer in ``[0, 2**64)``.
    """
    value = _check_value(value)
    if isinstance(value, str):
        canonical = ["str", value]
    elif isinstance(value, float) and not value.is_integer():
        canonical = ["float", value]
    else:
        canonical = ["int", int(value)]
    digest = hashlib.blake2b(json.dumps(canonical).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} (type {type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_reserved(pad_token: Any, oov_token: Any, num_oov_buckets: Any) -> None:
    for name, token in (("pad_token", pad_token), ("oov_token", oov_token)):
        if token is not None and not isinstance(token, str):
            raise TypeError(f"{name} must be a str or None, got {token!r} (type {type(token).__name__})")
    if pad_token is not None and pad_token == oov_token:
        raise ValueError(f"pad_token and oov_token must differ, both are {pad_token!r}")
    _check_int("num_oov_buckets", num_oov_buckets, minimum=0)


def _check_counts(counts: Sequence[int] | None, num_values: int) -> list[int]:
    if counts is None:
        return [0] * num_values
    counts = list(counts)
    if len(counts) != num_values:
        raise ValueError(f"counts has {len(counts)} entries but values has {num_values}; they must match")
    for i, count in enumerate(counts):
        _check_int(f"counts[{i}]", count, minimum=0)
    return counts


def _check_collection(obj: Any, what: str) -> None:
    if isinstance(obj, (str, bytes)):
        raise TypeError(f"{what} must be a collection of values, not a single {type(obj).__name__}: {obj!r:.60}")


def _check_policy(unknown: str) -> None:
    if unknown not in _POLICIES:
        raise ValueError(f"unknown must be one of {_POLICIES}, got {unknown!r}")


class Vocabulary:
    """Maps feature values (str, int or float) to integer IDs ``0..len(vocab)-1``.

    IDs are laid out as follows, reserved IDs first:

    1. ``pad_token`` (default ``"<pad>"``) at ID 0, unless it is ``None``;
    2. ``oov_token`` (default ``"<oov>"``) next, unless it is ``None``;
    3. ``num_oov_buckets`` hash-bucket IDs (default none), which decode to ``"<oov:0>"``, ``"<oov:1>"``, ...;
    4. the regular values. ``from_values`` and ``from_bags`` order them by count, most frequent first, ties
       broken by order of first appearance, so a given input always gives the same IDs.

    An unseen value encodes to the ID of bucket ``stable_hash(value) % num_oov_buckets`` when there are buckets,
    otherwise to the OOV token's ID; with neither, encoding it raises ``KeyError``.

    Values follow Python's dictionary semantics: ``1`` and ``1.0`` are the same key (the first one seen is kept).
    Integer scalars from numpy or torch become plain ints, and str subclasses plain strs.

    Args:
        values: Regular values, already in ID order, without duplicates.
        counts: How often each value was seen, aligned with ``values``; ``None`` records 0 for each.
        pad_token: Token of the padding ID 0, or ``None`` for no padding ID.
        oov_token: Token of the out-of-vocabulary ID, or ``None`` for none.
        num_oov_buckets: Number of hash-bucket IDs for unseen values.

    Raises:
        TypeError: A value is not a str, int or float, or an argument has the wrong type.
        ValueError: A value is NaN, repeated, or equal to a reserved token; counts do not match values;
            ``num_oov_buckets`` is negative; ``pad_token`` equals ``oov_token``.
    """

    def __init__(
        self,
        values: Sequence[Hashable],
        counts: Sequence[int] | None = None,
        *,
        pad_token: str | None = "<pad>",
        oov_token: str | None = "<oov>",
        num_oov_buckets: int = 0,
    ) -> None:
        _check_collection(values, "values")
        _check_reserved(pad_token, oov_token, num_oov_buckets)
        self._pad_token = pad_token
        self._oov_token = oov_token
        self._num_oov_buckets = num_oov_buckets
        tokens = [token for token in (pad_token, oov_token) if token is not None]
        self._bucket_base = len(tokens)
        self._oov_id = None if oov_token is None else len(tokens) - 1
        self._index: dict[Value, int] = {token: i for i, token in enumerate(tokens)}
        self._decode_table: list[Value] = tokens + [f"<oov:{i}>" for i in range(num_oov_buckets)]
        self._values = [_check_value(value) for value in values]
        self._counts = _check_counts(counts, len(self._values))
        for value in self._values:
            self._add(value)

    def _add(self, value: Value) -> None:
        previous = self._index.get(value)
        if previous is not None and previous < self._bucket_base:
            raise ValueError(
                f"value {value!r} equals a reserved token (ID {previous}); "
                "pass a different pad_token or oov_token, or None to disable it"
            )
        if previous is not None:
            raise ValueError(
                f"value {value!r} appears twice in values (as {self._decode_table[previous]!r} at ID {previous}); "
                "values must be unique (note that 1 and 1.0 are the same key)"
            )
        self._index[value] = len(self._decode_table)
        self._decode_table.append(value)

    @classmethod
    def from_values(
        cls,
        values: Iterable[Hashable],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        pad_token: str | None = "<pad>",
        oov_token: str | None = "<oov>",
        num_oov_buckets: int = 0,
    ) -> Vocabulary:
        """Count ``values`` and build a vocabulary of those seen at least ``min_count`` times.

        Args:
            values: Feature values, e.g. one column of a table; each occurrence counts once.
            min_count: Keep values seen at least this often (>= 1).
            max_size: Keep at most this many regular values, most frequent first; ``None`` keeps all.
            pad_token: Token of the padding ID 0, or ``None`` for no padding ID.
            oov_token: Token of the out-of-vocabulary ID, or ``None`` for none.
            num_oov_buckets: Number of hash-bucket IDs for unseen values.

        Returns:
            The vocabulary, regular values ordered by count descending, then by first appearance.
        """
        _check_build_args(min_count, max_size, pad_token, oov_token, num_oov_buckets)
        _check_collection(values, "values")
        counter: Counter[Value] = Counter(map(_check_value, values))
        values, counts = _rank(counter, min_count, max_size)
        return cls(values, counts, pad_token=pad_token, oov_token=oov_token, num_oov_buckets=num_oov_buckets)

    @classmethod
    def from_bags(
        cls,
        bags: Iterable[Iterable[Hashable]],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        pad_token: str | None = "<pad>",
        oov_token: str | None = "<oov>",
        num_oov_buckets: int = 0,
    ) -> Vocabulary:
        """Count every value of every bag (e.g. the genres of each movie) and build a vocabulary.

        Args:
            bags: Collections of values; a value repeated within a bag counts each time.
            min_count, max_size, pad_token, oov_token, num_oov_buckets: As in ``from_values``.

        Returns:
            The vocabulary, regular values ordered by count descending, then by first appearance.
        """
        _check_build_args(min_count, max_size, pad_token, oov_token, num_oov_buckets)
        _check_collection(bags, "bags")
        counter: Counter[Value] = Counter()
        for i, bag in enumerate(bags):
            _check_collection(bag, f"bag {i}")
            counter.update(map(_check_value, bag))
        values, counts = _rank(counter, min_count, max_size)
        return cls(values, counts, pad_token=pad_token, oov_token=oov_token, num_oov_buckets=num_oov_buckets)

    @property
    def pad_token(self) -> str | None:
        """Token of the padding ID, or ``None`` if there is none."""
        return self._pad_token

    @property
    def oov_token(self) -> str | None:
        """Token of the out-of-vocabulary ID, or ``None`` if there is none."""
        return self._oov_token

    @property
    def num_oov_buckets(self) -> int:
        """Number of hash-bucket IDs for unseen values."""
        return self._num_oov_buckets

    @property
    def pad_id(self) -> int | None:
        """ID of the padding token (always 0), or ``None`` if there is none."""
        return None if self._pad_token is None else 0

    @property
    def oov_id(self) -> int | None:
        """ID of the out-of-vocabulary token, or ``None`` if there is none."""
        return self._oov_id

    @property
    def num_reserved(self) -> int:
        """Number of reserved IDs (pad, OOV, buckets); the first regular value has this ID."""
        return self._bucket_base + self._num_oov_buckets

    @property
    def values(self) -> list[Value]:
        """Regular values in ID order (a copy)."""
        return list(self._values)

    @property
    def counts(self) -> list[int]:
        """How often each regular value was seen, in ID order (a copy)."""
        return list(self._counts)

    def count(self, value: Any) -> int:
        """How often ``value`` was seen when the vocabulary was built; 0 if it is not a regular value."""
        i = self._lookup(value)
        return 0 if i is None or i < self.num_reserved else self._counts[i - self.num_reserved]

    def _lookup(self, value: Any) -> int | None:
        try:
            return self._index.get(_check_value(value))
        except (TypeError, ValueError):
            return None

    def encode(self, value: Hashable, unknown: Unknown = "oov") -> int:
        """The ID of ``value``.

        Args:
            value: A str, int or float; a reserved token encodes to its own ID.
            unknown: For a value not in the vocabulary, ``"oov"`` returns its hash bucket if there are buckets,
                else the OOV token's ID; ``"error"`` raises ``KeyError``.

        Returns:
            An ID in ``[0, len(self))``.

        Raises:
            KeyError: The value is unknown and ``unknown="error"``, or there is neither an OOV token nor buckets.
            TypeError: The value is not a str, int or float.
            ValueError: ``unknown`` is not ``"oov"`` or ``"error"``, or the value is NaN.
        """
        _check_policy(unknown)
        return self._encode(value, unknown)

    def encode_many(self, values: Iterable[Hashable], unknown: Unknown = "oov") -> list[int]:
        """The IDs of ``values`` (shape ``[len(values)]``); see ``encode`` for ``unknown``."""
        _check_policy(unknown)
        _check_collection(values, "values")
        return [self._encode(value, unknown) for value in values]

    def encode_bags(self, bags: Iterable[Iterable[Hashable]], unknown: Unknown = "oov") -> list[list[int]]:
        """The IDs of each bag's values, one list per bag (jagged); see ``encode`` for ``unknown``."""
        _check_policy(unknown)
        _check_collection(bags, "bags")
        encoded = []
        for i, bag in enumerate(bags):
            _check_collection(bag, f"bag {i}")
            encoded.append([self._encode(value, unknown) for value in bag])
        return encoded

    def _encode(self, value: Hashable, unknown: str) -> int:
        value = _check_value(value)
        found = self._index.get(value)
        if found is not None:
            return found
        if unknown == "error":
            raise KeyError(f"{value!r} is not in the vocabulary ({len(self._values)} values)")
        if self._num_oov_buckets:
            return self._bucket_base + stable_hash(value) % self._num_oov_buckets
        if self._oov_id is not None:
            return self._oov_id
        raise KeyError(
            f"{value!r} is not in the vocabulary ({len(self._values)} values), which has neither an oov_token "
            "nor OOV buckets; build it with oov_token or num_oov_buckets > 0 to map unseen values"
        )

    def decode(self, id: int) -> Value:
        """The value of an ID; reserved IDs give their token and bucket IDs ``"<oov:i>"``.

        Args:
            id: An int, or a numpy / torch integer scalar, in ``[0, len(self))``.

        Raises:
            IndexError: The ID is out of range (negative IDs are not counted from the end).
            TypeError: The ID is not an integer.
        """
        i = operator.index(id)
        if not 0 <= i < len(self._decode_table):
            raise IndexError(f"ID {i} is out of range: valid IDs are in [0, {len(self._decode_table)})")
        return self._decode_table[i]

    def decode_many(self, ids: Iterable[int]) -> list[Value]:
        """The values of ``ids`` (e.g. a list, a 1-D numpy array or tensor); see ``decode``."""
        return [self.decode(i) for i in ids]

    def __len__(self) -> int:
        return len(self._decode_table)

    def __contains__(self, value: object) -> bool:
        return self._lookup(value) is not None

    def __iter__(self) -> Iterator[Value]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        # 1 == 1.0, but they decode differently, so the types must match too.
        same_types = [type(v) for v in self._values] == [type(v) for v in other._values]
        return same_types and self._to_json() == other._to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = ", ".join(repr(value) for value in self._values[:5])
        more = ", ..." if len(self._values) > 5 else ""
        return f"Vocabulary(num_values={len(self._values)}, num_reserved={self.num_reserved}, values=[{head}{more}])"

    def _to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "pad_token": self._pad_token,
            "oov_token": self._oov_token,
            "num_oov_buckets": self._num_oov_buckets,
            "values": list(self._values),
            "counts": list(self._counts),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as human-readable JSON; an interrupted save leaves any old file untouched.

        Args:
            path: Destination file, conventionally ``vocab.json``; missing folders are created.

        Returns:
            The path written.
        """
        return atomic_write_json(path, self._to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a vocabulary written by ``save``.

        Args:
            path: The JSON file.

        Raises:
            FileNotFoundError: There is no file at ``path``.
            VocabularyFormatError: The file is not valid JSON, not a vocabulary, of an unsupported version, or
                has missing, unexpected or ill-typed fields; the message names the file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "vocabulary file not found", str(path)) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise VocabularyFormatError(f"vocabulary file {path}: not valid UTF-8 JSON ({error})") from None
        _check_header(data, path)
        try:
            return cls(
                data["values"],
                data["counts"],
                pad_token=data["pad_token"],
                oov_token=data["oov_token"],
                num_oov_buckets=data["num_oov_buckets"],
            )
        except (TypeError, ValueError) as error:
            raise VocabularyFormatError(f"vocabulary file {path}: {error}") from None


def _check_build_args(min_count: Any, max_size: Any, pad_token: Any, oov_token: Any, num_oov_buckets: Any) -> None:
    _check_int("min_count", min_count, minimum=1)
    if max_size is not None:
        _check_int("max_size", max_size, minimum=0)
    _check_reserved(pad_token, oov_token, num_oov_buckets)


def _rank(counter: Counter[Value], min_count: int, max_size: int | None) -> tuple[list[Value], list[int]]:
    """Values seen at least ``min_count`` times, most frequent first, and their counts."""
    # sorted() is stable and a Counter keeps first-appearance order, so ties stay in that order.
    kept = [item for item in counter.items() if item[1] >= min_count]
    ranked = sorted(kept, key=lambda item: -item[1])[:max_size]
    return [value for value, _ in ranked], [count for _, count in ranked]


def _check_header(data: Any, path: Path) -> None:
    """Check what the constructor cannot: the JSON shape, format, version and keys of a saved vocabulary."""

    def fail(problem: str) -> VocabularyFormatError:
        return VocabularyFormatError(f"vocabulary file {path}: {problem}")

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise fail(f"format is {data.get('format')!r}, expected {FORMAT!r}; is this a jointembed vocabulary?")
    version = data.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise fail(f"version {version!r} is not supported; supported versions: {supported}")
    missing = [key for key in _KEYS if key not in data]
    unexpected = sorted(set(data) - set(_KEYS))
    problems = [f"{kind} keys {keys}" for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise fail(", ".join(problems))
    for key in ("values", "counts"):
        if not isinstance(data[key], list):
            raise fail(f"{key!r} must be a list, got {type(data[key]).__name__}")
