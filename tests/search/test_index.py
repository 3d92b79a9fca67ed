"""EmbeddingIndex: exact search equal to a brute-force ranking, FAISS backends agreeing with it, upsert and
delete by key, filters by modality and metadata, and a saved folder that survives a killed save and refuses a
truncated file, another format, another model or another dimension."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from jointembed.errors import IndexFileError, ModelMismatchError
from jointembed.search import EmbeddingIndex, exact_top_k, faiss_available
from jointembed.search.index import model_info

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed (the faiss extra)")


def _data(n: int = 2000, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _filled(backend: str = "exact", options: dict | None = None, n: int = 2000) -> tuple[EmbeddingIndex, np.ndarray]:
    x = _data(n)
    index = EmbeddingIndex(16, backend, options)
    modalities = ["image" if i % 2 else "text" for i in range(n)]
    index.add(x, [f"k{i}" for i in range(n)], modalities, [{"i": i, "digit": i % 10} for i in range(n)])
    return index, x


def _brute(x: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    scores = q @ x.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_exact_top_k_equals_brute_force_across_block_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    import jointembed.search.backends as backends

    monkeypatch.setattr(backends, "EXACT_BLOCK", 7 * 13)  # many small blocks, k larger than some of them
    monkeypatch.setattr(backends, "EXACT_QUERIES", 7)
    x, q = _data(500), _data(40, seed=1)
    scores, ids = exact_top_k(torch.from_numpy(q), torch.from_numpy(x), 12)
    assert np.array_equal(ids.numpy(), _brute(x, q, 12))
    assert np.allclose(scores.numpy(), np.take_along_axis(q @ x.T, ids.numpy(), 1), atol=1e-6)
    allowed = np.arange(500) % 7 == 0  # a selective filter takes the copy-the-rows path
    _, ids = exact_top_k(torch.from_numpy(q), torch.from_numpy(x), 5, torch.from_numpy(allowed))
    assert np.array_equal(ids.numpy(), _brute(x, q, 5, allowed))
    scores, ids = exact_top_k(torch.from_numpy(q[:2]), torch.from_numpy(x[:3]), 5)  # fewer rows than k: padding
    assert (ids[:, 3:] == -1).all() and torch.isinf(scores[:, 3:]).all()


@pytest.mark.parametrize("case", range(12))
def test_exact_top_k_scan_of_a_few_queries_equals_the_blocks(case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to SCAN_QUERIES queries go through the numba scan: same rows as the matrix-product blocks, with a
    bias, a filter, unsorted and repeated seen rows, a NaN row, and k beyond the rows that are left."""
    import jointembed.search.backends as backends
    from jointembed.kernels import numba_available
    from jointembed.sparse import SparseBatch

    if not numba_available():
        pytest.skip("no numba")
    gen = torch.Generator().manual_seed(case)
    n, q, k = [300, 1000, 40][case % 3], [1, 3, 16][case % 3], [5, 30, 60][case % 3]
    x, queries = torch.randn(n, 8, generator=gen), torch.randn(q, 8, generator=gen)
    x[7] = float("nan")  # a diverged row is never returned
    bias = torch.randn(n, generator=gen) if case % 2 else None
    allowed = torch.rand(n, generator=gen) > 0.3 if case % 4 < 2 else None
    seen = None
    if case % 3 != 2:
        seen = SparseBatch.from_lists([torch.randint(0, n, (25,), generator=gen).tolist() for _ in range(q)])
    answers = []
    for scan_queries in (backends.SCAN_QUERIES, 0):
        monkeypatch.setattr(backends, "SCAN_QUERIES", scan_queries)
        answers.append(exact_top_k(queries, x, k, allowed, bias=bias, seen=seen))
    (scan_s, scan_i), (block_s, block_i) = answers
    assert torch.equal(scan_i, block_i)
    torch.testing.assert_close(scan_s, block_s)
    assert not (scan_i == 7).any()
    if seen is not None:
        for row, bag in zip(scan_i.tolist(), seen.tolist(), strict=True):
            assert not set(row) & set(bag)


def test_search_returns_keys_scores_modalities_and_metadata() -> None:
    index, x = _filled()
    hits = index.search(x[5], k=3)
    assert hits[0].key == "k5" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].modality == "image" and hits[0].metadata == {"i": 5, "digit": 5}
    expected = _brute(x, x[:4], 3)
    for row, found in zip(expected, index.search(torch.from_numpy(x[:4]), k=3), strict=True):
        assert [h.key for h in found] == [f"k{i}" for i in row]


def test_filters_by_modality_and_metadata() -> None:
    index, x = _filled()
    hits = index.search(x[5], k=50, modality="text", filter={"digit": [2, 4]})
    assert len(hits) == 50 and all(h.modality == "text" and h.metadata["digit"] in (2, 4) for h in hits)
    allowed = np.array([i % 2 == 0 and i % 10 in (2, 4) for i in range(2000)])
    assert [h.key for h in hits] == [f"k{i}" for i in _brute(x, x[5:6], 50, allowed)[0]]
    few = index.search(x[5], k=10, filter=lambda meta: meta["i"] < 3)
    assert sorted(h.key for h in few) == ["k0", "k1", "k2"]  # fewer than k pass: fewer come back
    with pytest.raises(ValueError, match="no entries of modality \\['audio'\\]; the index holds: text, image"):
        index.search(x[5], modality="audio")


def test_upsert_replaces_and_delete_removes() -> None:
    index, x = _filled(n=100)
    index.add(-x[3], ["k3"], "audio", [{"new": True}])
    assert len(index) == 100
    vector, modality, meta = index.get("k3")
    assert modality == "audio" and meta == {"new": True} and np.allclose(vector, -x[3])
    assert index.search(x[3], k=1)[0].key != "k3"
    assert index.delete(["k4", "k5"]) == 2 and len(index) == 98 and "k4" not in index
    assert all(h.key not in ("k4", "k5") for h in index.search(x[4], k=98))
    with pytest.raises(KeyError, match="not in the index"):
        index.delete(["k4"])
    assert index.keys()[:3] == ["k0", "k1", "k2"] and len(index.vectors()) == 98


def test_bad_additions_name_the_row() -> None:
    index = EmbeddingIndex(4)
    ok = np.eye(4, dtype=np.float32)
    with pytest.raises(ModelMismatchError, match="shape \\(4, 3\\); this index holds 4-dim"):
        index.add(ok[:, :3], list("abcd"), "x")
    with pytest.raises(ValueError, match="row 2 is not finite"):
        index.add(np.where(np.arange(4)[:, None] == 2, np.nan, ok), list("abcd"), "x")
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        index.add(ok * (np.arange(4)[:, None] != 1), list("abcd"), "x")
    with pytest.raises(ValueError, match="keys\\[2\\] = 'a' appears twice"):
        index.add(ok, ["a", "b", "a", "d"], "x")
    with pytest.raises(TypeError, match="keys\\[0\\]: a key must be a string or an integer"):
        index.add(ok, [True, 1, 2, 3], "x")
    with pytest.raises(ValueError, match="metadata row 1 is not JSON-able"):
        index.add(ok, list("abcd"), "x", [{}, {"f": object()}, {}, {}])
    assert len(index) == 0  # nothing half-added
    index.add(ok, [1, "1", 2, 3], "x")
    assert {h.key for h in index.search(ok[:2], k=1)[0] + index.search(ok[:2], k=1)[1]} == {1, "1"}


def test_empty_index_finds_nothing() -> None:
    assert EmbeddingIndex(4).search(np.ones(4), k=5) == []


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index, x = _filled(n=300)
    index.delete(["k7"])
    index.save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    assert len(loaded) == 299 and loaded.keys() == index.keys() and loaded.metadata() == index.metadata()
    assert [h.key for h in loaded.search(x[9], k=5)] == [h.key for h in index.search(x[9], k=5)]
    header = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert header["format"] == "jointembed-index" and header["version"] == 1 and header["dim"] == 16


def test_a_killed_save_leaves_the_previous_index_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index, x = _filled(n=50)
    index.save(tmp_path / "idx")
    index.add(x[:1], ["extra"], "text")

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        index.save(tmp_path / "idx")
    monkeypatch.undo()
    assert len(EmbeddingIndex.load(tmp_path / "idx")) == 50
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # the temporary folder and the lock file are gone too


def test_truncated_altered_or_foreign_files_are_named(tmp_path: Path) -> None:
    index, _ = _filled(n=50)
    folder = index.save(tmp_path / "idx")
    vectors = folder / "vectors.npy"
    data = vectors.read_bytes()
    vectors.write_bytes(data[:-10])
    with pytest.raises(IndexFileError, match="vectors.npy is truncated or altered: .* bytes, the header says"):
        EmbeddingIndex.load(folder)
    vectors.write_bytes(data[:-4] + b"\0\0\0\0")
    with pytest.raises(IndexFileError, match="vectors.npy is altered: its SHA-256 differs"):
        EmbeddingIndex.load(folder)
    vectors.write_bytes(data)
    header = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**header, "version": 99}))
    with pytest.raises(IndexFileError, match="index format version 99; this jointembed reads 1"):
        EmbeddingIndex.load(folder)
    (folder / "index.json").unlink()
    with pytest.raises(IndexFileError, match="is not a saved index: it has no index.json"):
        EmbeddingIndex.load(folder)
    with pytest.raises(IndexFileError, match="no such folder"):
        EmbeddingIndex.load(tmp_path / "missing")


def test_another_model_or_dimension_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, other = torch.nn.Linear(3, 16), torch.nn.Linear(3, 16)
    model.output_dim = other.output_dim = 16
    index = EmbeddingIndex(16, model=model_info(model, "mine"))
    index.add(_data(10), list(range(10)), "x")
    folder = index.save(tmp_path / "idx")
    EmbeddingIndex.load(folder, model=model)  # the same weights: fine
    with pytest.raises(ModelMismatchError, match="holds vectors of model 'mine' .* not of 'Linear'"):
        EmbeddingIndex.load(folder, model=other)
    wide = torch.nn.Linear(3, 32)
    wide.output_dim = 32
    with pytest.raises(ModelMismatchError, match="makes 32-dim vectors; this index holds 16-dim"):
        EmbeddingIndex.load(folder, model=wide)


@needs_faiss
@pytest.mark.parametrize(
    ("backend", "options", "floor"),
    [("flat", None, 1.0), ("hnsw", {"M": 16, "ef_search": 64}, 0.95), ("ivf_flat", {"nlist": 16, "nprobe": 16}, 1.0),
     ("ivf_pq", {"nlist": 16, "nprobe": 16, "m": 8}, 0.5)],
)  # fmt: skip
def test_faiss_backends_agree_with_exact_and_survive_saving(
    tmp_path: Path, backend: str, options: dict | None, floor: float
) -> None:
    index, x = _filled(backend, options)
    queries = _data(50, seed=3)
    truth = _brute(x, queries, 10)
    found = index.search(queries, k=10)
    recall = np.mean([len({f"k{i}" for i in t} & {h.key for h in f}) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= floor
    filtered = index.search(queries[0], k=5, modality="text", filter={"digit": 4})
    assert filtered and all(h.modality == "text" and h.metadata["digit"] == 4 for h in filtered)
    index.delete(["k0"])
    index.save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    assert loaded.backend_name == backend and len(loaded) == 1999
    assert [h.key for h in loaded.search(queries[:3], k=10)[2]] == [h.key for h in index.search(queries[:3], 10)[2]]
    (tmp_path / "idx" / "faiss.index").write_bytes(b"junk")
    with pytest.raises(IndexFileError, match="faiss.index is truncated or altered"):
        EmbeddingIndex.load(tmp_path / "idx")


@needs_faiss
def test_ivf_needs_enough_vectors_to_train() -> None:
    index = EmbeddingIndex(16, "ivf_flat", {"nlist": 64})
    with pytest.raises(ValueError, match="nlist=64 needs at least that many vectors in its first add"):
        index.add(_data(10), list(range(10)), "x")
    assert len(index) == 0


def test_unknown_backends_and_options_are_named() -> None:
    with pytest.raises(ValueError, match="unknown search backend 'annoy'; choose from exact, flat, hnsw"):
        EmbeddingIndex(4, "annoy")
    if faiss_available():
        with pytest.raises(ValueError, match="backend 'hnsw' has no option\\(s\\) \\['nprobe'\\]"):
            EmbeddingIndex(4, "hnsw", {"nprobe": 3})


def test_saved_files_have_ordinary_permissions(tmp_path: Path) -> None:
    index, _ = _filled(n=10)
    folder = index.save(tmp_path / "idx")
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "vectors.npy").stat().st_mode & 0o777 == 0o666 & ~umask


def _replace_entries(folder: Path, lines: list[bytes]) -> None:
    """Rewrite entries.jsonl and its size and digest in the header, as a careful forger would."""
    from jointembed.search.index_files import describe_file

    path = folder / "entries.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    header = json.loads((folder / "index.json").read_text())
    header["files"]["entries.jsonl"] = describe_file(path)
    (folder / "index.json").write_text(json.dumps(header))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"key": ["k0"], "modality": "text"}', "line 2, field 'key': expected a string or an integer, got list"),
        (b'{"key": true, "modality": "text"}', "line 2, field 'key': expected a string or an integer, got bool"),
        (b'{"key": "k1", "modality": 3}', "line 2, field 'modality': expected a non-empty string, got int"),
        (
            b'{"key": "k1", "modality": "text", "metadata": "x"}',
            "line 2, field 'metadata': expected an object, got str",
        ),
        (b'{"key": "k1", "modality": "text", "live": "yes"}', "line 2, field 'live': expected true or false, got str"),
        (b'["k1", "text"]', "line 2: expected a JSON object, got list"),
        (b'{"modality": "text"}', "line 2: a live entry has no field 'key'"),
        (b'{"key": "k0", "modality": "text"}', "line 2: the key of line 1 again"),
    ],
)
def test_entries_of_the_wrong_type_name_the_line_and_field(tmp_path: Path, line: bytes, message: str) -> None:
    index, _ = _filled(n=3)
    folder = index.save(tmp_path / "idx")
    lines = (folder / "entries.jsonl").read_bytes().splitlines()
    _replace_entries(folder, [lines[0], line, lines[2]])
    with pytest.raises(IndexFileError) as error:
        EmbeddingIndex.load(folder)
    assert str(error.value) == f"{folder / 'entries.jsonl'}, {message}"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"key": "SECRET-TOKEN", "modality": "text"', "not valid JSON (Expecting ',' delimiter at column 43)"),
        (b"SECRET-TOKEN", "not valid JSON (Expecting value at column 1)"),
        (b'{"key": "SECRET-TOKEN\xff"}', "not UTF-8 (invalid start byte at byte 22)"),
    ],
)
def test_an_unparsable_entry_gives_line_and_reason_not_content(tmp_path: Path, line: bytes, reason: str) -> None:
    index, _ = _filled(n=3)
    folder = index.save(tmp_path / "idx")
    lines = (folder / "entries.jsonl").read_bytes().splitlines()
    _replace_entries(folder, [lines[0], lines[1], line])
    with pytest.raises(IndexFileError) as error:
        EmbeddingIndex.load(folder)
    assert str(error.value) == f"{folder / 'entries.jsonl'}, line 3: {reason}"
    assert "SECRET" not in str(error.value)


def test_saving_a_copy_loaded_before_another_save_is_refused(tmp_path: Path) -> None:
    from jointembed.errors import ConcurrentWriteError

    index, x = _filled(n=10)
    folder = index.save(tmp_path / "idx")
    first, second = EmbeddingIndex.load(folder), EmbeddingIndex.load(folder)
    first.add(x[:1], ["from first"], "text")
    first.save(folder)
    second.add(x[:1], ["from second"], "text")
    with pytest.raises(ConcurrentWriteError, match="was saved by another process after this index was loaded"):
        second.save(folder)
    assert "from first" in EmbeddingIndex.load(folder)
    first.add(x[1:2], ["again"], "text")
    first.save(folder)  # its own saves do not count against it
    with EmbeddingIndex.edit(folder) as edited:
        edited.add(x[2:3], ["edited"], "text")
    assert {"from first", "again", "edited"} <= set(EmbeddingIndex.load(folder).keys())
    with pytest.raises(KeyError), EmbeddingIndex.edit(folder) as edited:
        edited.add(x[3:4], ["never saved"], "text")
        raise KeyError("the block failed")
    assert "never saved" not in EmbeddingIndex.load(folder)
    with pytest.raises(IndexFileError, match="no such folder"), EmbeddingIndex.edit(tmp_path / "none"):
        pass
