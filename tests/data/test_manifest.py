"""Reading multimodal manifests (JSONL and CSV), ID and label mappings, seeded splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jointembed.data.manifest import (
    ClassIndex,
    IdMapper,
    ManifestRow,
    parse_id_list,
    read_manifest,
    split_rows,
)
from jointembed.errors import DataFormatError


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_rows_columns_and_paths(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "clip.wav"
    path = write_jsonl(
        tmp_path / "sub" / "m.jsonl",
        [
            {"ids": [3, "x"], "text": "seven", "image": "img/a.png", "audio": str(absolute), "label": 7, "group": "g"},
            "",
            {"ids": 5, "text": "", "image": None, "label": "cat"},
            {"text": "only text", "ids": []},
        ],
    )
    manifest = read_manifest(path)
    first, second, third = manifest.rows
    assert [r.row for r in manifest.rows] == [1, 3, 4]  # line numbers; the blank line 2 is skipped
    assert first.ids == (3, "x") and first.text == "seven" and first.label == 7 and first.group == "g"
    assert first.image == (tmp_path / "sub" / "img" / "a.png").resolve() and first.audio == absolute
    assert first.modalities == ("ids", "text", "image", "audio")
    assert second.ids == (5,) and second.text is None and second.image is None and second.label == "cat"
    assert third.ids is None and third.modalities == ("text",)
    assert manifest.modalities == ("ids", "text", "image", "audio") and len(manifest) == 3


def test_csv_rows_id_lists_and_integer_cells(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        'ids,text,image,label,group\n3 17 42,"hello, world",pics/x.png,2,speaker\nnew york|paris,,,cat,\n,bye,,,7\n',
        encoding="utf-8",
    )
    rows = read_manifest(path).rows
    assert [r.row for r in rows] == [1, 2, 3]  # data rows, the header not counted
    assert rows[0].ids == (3, 17, 42) and rows[0].text == "hello, world" and rows[0].label == 2
    assert rows[0].image == (tmp_path / "pics" / "x.png").resolve() and rows[0].group == "speaker"
    assert rows[1].ids == ("new york", "paris") and rows[1].text is None and rows[1].label == "cat"
    assert rows[1].group is None and rows[2].ids is None and rows[2].group == 7


def test_parse_id_list() -> None:
    assert parse_id_list(" 1  2 -3 ") == (1, 2, -3)
    assert parse_id_list("a|b c| 4 ") == ("a", "b c", 4)
    assert parse_id_list("") == ()


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "ok"}, '{"text": "broken'])
    with pytest.raises(DataFormatError, match=r"m\.jsonl, line 2: invalid JSON"):
        read_manifest(path)
    write_jsonl(path, [[1, 2]])
    with pytest.raises(DataFormatError, match="line 1: expected a JSON object, got list"):
        read_manifest(path)


def test_unknown_column_names_it_and_the_valid_ones(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "a"}, {"text": "b", "caption": "c"}])
    with pytest.raises(DataFormatError, match=r"line 2: unknown column 'caption'; valid columns are ids, text, image"):
        read_manifest(path)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("text,speaker\na,b\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"header: unknown column 'speaker'; valid columns are ids"):
        read_manifest(csv_path)


def test_row_without_any_modality_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "a"}, {"label": 3, "text": ""}])
    with pytest.raises(DataFormatError, match=r"m\.jsonl, line 2: the row has none of the columns ids, text"):
        read_manifest(path)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("text,label\na,1\n,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"m\.csv, row 2: the row has none"):
        read_manifest(csv_path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": 3}, "column 'text' must be a string, got 3"),
        ({"image": 1}, "column 'image' must be a file path"),
        ({"text": "a", "label": 1.5}, "column 'label' must be an integer or a string, got 1.5"),
        ({"ids": [1, True]}, "column 'ids' must be an integer or a string, got True"),
    ],
)
def test_values_of_the_wrong_type(tmp_path: Path, row: dict, message: str) -> None:
    with pytest.raises(DataFormatError, match=f"line 1: {message}"):
        read_manifest(write_jsonl(tmp_path / "m.jsonl", [row]))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "m.tsv").write_text("text\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="unsupported manifest extension '.tsv'"):
        read_manifest(tmp_path / "m.tsv")
    (tmp_path / "m.csv").write_text("text\na,b\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="row 1: 2 cells for a header of 1 columns"):
        read_manifest(tmp_path / "m.csv")


def test_string_ids_go_through_a_vocabulary_of_the_training_rows() -> None:
    train = [ManifestRow(1, ids=("apple", "pear")), ManifestRow(2, ids=("apple", 3)), ManifestRow(3, text="t")]
    test = [ManifestRow(1, ids=("pear", "kiwi"))]
    mapper = IdMapper(train, train + test)
    assert mapper.vocabulary is not None
    assert mapper.vocabulary.pad_id == 0 and mapper.vocabulary.oov_id == 1
    assert mapper.num_ids == 5  # <pad>, <oov>, apple, pear, 3
    assert mapper.encode(train[0]) == [2, 3] and mapper.encode(train[1]) == [2, 4]
    assert mapper.encode(test[0]) == [3, 1]  # kiwi was never seen in training: <oov>
    assert mapper.encode(train[2]) == []


def test_integer_ids_are_kept_and_checked() -> None:
    train = [ManifestRow(1, ids=(0, 4))]
    test = [ManifestRow(7, ids=(9,)), ManifestRow(8, ids=("x",)), ManifestRow(9, ids=(-1,))]
    mapper = IdMapper(train, train + test)
    assert mapper.vocabulary is None and mapper.num_ids == 10  # the largest ID of any split, plus one
    assert mapper.encode(train[0]) == [0, 4] and mapper.encode(test[0]) == [9]
    with pytest.raises(DataFormatError, match=r"m\.jsonl, row 8: string ID 'x'"):
        mapper.encode(test[1], Path("m.jsonl"))
    with pytest.raises(DataFormatError, match="row 9: ID -1 is negative"):
        mapper.encode(test[2])


def test_class_index() -> None:
    words = ClassIndex(["dog", None, "cat", "dog", 3])
    assert words.names == ["3", "cat", "dog"] and len(words) == 3
    assert [words.index(v) for v in ("cat", "dog", 3, None)] == [1, 2, 0, -1]
    ints = ClassIndex([2, 0, None])
    assert ints.names == ["0", "1", "2"] and ints.index(2) == 2 and ints.index(None) == -1
    named = ClassIndex([0, 1], names=["zero", "one", "two"])
    assert named.names == ["zero", "one", "two"]
    with pytest.raises(ValueError, match="2 label_names given, but the labels run up to 4"):
        ClassIndex([4], names=["a", "b"])
    with pytest.raises(ValueError, match="these labels are strings"):
        ClassIndex(["a"], names=["a"])


def test_split_rows_by_row_and_by_group() -> None:
    rows = [ManifestRow(i + 1, text=str(i), group=f"g{i % 7}", label=i % 3) for i in range(100)]
    train, val, test = split_rows(rows, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert sorted(r.row for r in train + val + test) == list(range(1, 101))
    assert split_rows(rows, (0.8, 0.1, 0.1), seed=3) == (train, val, test)
    assert split_rows(rows, (0.8, 0.1, 0.1), seed=4) != (train, val, test)
    parts = split_rows(rows, (0.6, 0.2, 0.2), seed=0, split_by="group")
    groups = [{r.group for r in part} for part in parts]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(map(len, parts)) == 100
    with pytest.raises(ValueError, match="leaves the val split empty: too few distinct labels"):
        split_rows(rows, (0.9, 0.05, 0.05), seed=0, split_by="label")
    with pytest.raises(ValueError, match="summing to 1"):
        split_rows(rows, (0.5, 0.1, 0.1), seed=0)
    with pytest.raises(ValueError, match="split_by must be None, 'group' or 'label'"):
        split_rows(rows, (0.8, 0.1, 0.1), seed=0, split_by="speaker")
