"""``Entries.save``/``Entries.load`` (``jointembed embed --out``): the ``.npy`` vectors and ``.jsonl`` rows are one
pair, and a pair that a failed save mismatched is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jointembed.errors import DataFormatError
from jointembed.search.entries import Entries


def _entries(n: int, seed: int = 0) -> Entries:
    vectors = np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)
    return Entries([f"k{i}" for i in range(n)], vectors, ["text"] * n, [{"i": i} for i in range(n)])


def test_a_saved_pair_loads_back(tmp_path: Path) -> None:
    npy, jsonl = _entries(5).save(tmp_path / "vec")
    loaded = Entries.load(tmp_path / "vec")
    assert loaded.keys == [f"k{i}" for i in range(5)] and loaded.metadata[2] == {"i": 2}
    np.testing.assert_array_equal(loaded.vectors, np.load(npy))
    assert json.loads((tmp_path / "vec.json").read_text())["rows"] == 5


@pytest.mark.parametrize("earlier_save", [False, True])
def test_a_save_that_stops_between_the_two_files_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier_save: bool
) -> None:
    if earlier_save:
        _entries(3).save(tmp_path / "vec")

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("jointembed.io.atomic_write_text", full_disk)  # the .npy is written, the .jsonl is not
    with pytest.raises(OSError, match="No space left"):
        _entries(588, seed=1).save(tmp_path / "vec")
    monkeypatch.undo()
    assert np.load(tmp_path / "vec.npy").shape == (588, 4)
    expected = "vec.npy is not the file its header describes" if earlier_save else "vec.json is missing"
    with pytest.raises(DataFormatError, match=expected):
        Entries.load(tmp_path / "vec")


def test_rows_of_the_wrong_type_name_the_line_and_never_echo_it(tmp_path: Path) -> None:
    from jointembed.search.index_files import describe_file

    _entries(2).save(tmp_path / "vec")
    for line, message in [
        (b'{"key": ["SECRET"], "modality": "text"}', "line 2, field 'key': expected a string or an integer, got list"),
        (b'{"key": "SECRET", "modality": "text"', "line 2: not valid JSON (Expecting ',' delimiter at column 37)"),
    ]:
        jsonl = tmp_path / "vec.jsonl"
        jsonl.write_bytes(jsonl.read_bytes().splitlines()[0] + b"\n" + line + b"\n")
        header = json.loads((tmp_path / "vec.json").read_text())
        header["files"]["vec.jsonl"] = describe_file(jsonl)
        (tmp_path / "vec.json").write_text(json.dumps(header))
        with pytest.raises(DataFormatError) as error:
            Entries.load(tmp_path / "vec")
        assert str(error.value) == f"{jsonl}, {message}" and "SECRET" not in str(error.value)
