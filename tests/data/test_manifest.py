"""Reading multimodal manifests (JSONL and CSV) into raw cells, label and group mappings, seeded splits.

Cells are parsed by each field's modality unit when the data is bound (see ``test_multimodal.py`` and
``tests/modalities/test_units.py``); here the units only show what the raw cells become.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jointembed.data.manifest import ClassIndex, ManifestRow, parse_id_list, read_manifest, split_rows
from jointembed.errors import DataFormatError
from jointembed.modalities import AudioModality, IdsModality, ImageModality


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_rows_keep_raw_cells_and_line_numbers(tmp_path: Path) -> None:
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
    assert first.cells == {"ids": [3, "x"], "text": "seven", "image": "img/a.png", "audio": str(absolute)}
    assert first.label == 7 and first.group == "g" and first.columns == ("ids", "text", "image", "audio")
    # missing, null, "" and [] all mean "no cell"
    assert second.cells == {"ids": 5} and second.label == "cat" and second.group is None
    assert third.cells == {"text": "only text"} and third.columns == ("text",)
    assert manifest.columns == ("ids", "text", "image", "audio") and len(manifest) == 3
    assert not manifest.from_csv and manifest.base == (tmp_path / "sub").resolve()
    assert manifest.where(3) == f"{path}, line 3"
    # the units resolve file cells against the manifest's folder (absolute paths kept) and parse ID cells
    image = ImageModality().parse_cell(first.cells["image"], manifest.base, manifest.from_csv)
    assert image == (tmp_path / "sub" / "img" / "a.png").resolve()
    assert AudioModality().parse_cell(first.cells["audio"], manifest.base, manifest.from_csv) == absolute
    assert IdsModality().parse_cell(first.cells["ids"], manifest.base, False) == (3, "x")
    assert IdsModality().parse_cell(second.cells["ids"], manifest.base, False) == (5,)


def test_any_column_name_is_read(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"title": "Heat", "poster": "p.png"}, {"plot": "a heist", "x": 1}])
    manifest = read_manifest(path)
    assert manifest.columns == ("title", "poster", "plot", "x")
    assert manifest.rows[1].cells == {"plot": "a heist", "x": 1}
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("title,speaker\na,b\n", encoding="utf-8")
    assert read_manifest(csv_path).rows[0].cells == {"title": "a", "speaker": "b"}


def test_csv_rows_keep_cell_text_and_type_label_and_group(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        'ids,text,image,label,group\n3 17 42,"hello, world",pics/x.png,2,speaker\nnew york|paris,,,cat,\n,bye,,,-7\n',
        encoding="utf-8",
    )
    manifest = read_manifest(path)
    rows = manifest.rows
    assert [r.row for r in rows] == [1, 2, 3]  # data rows, the header not counted
    assert manifest.from_csv and manifest.where(2) == f"{path}, row 2"
    assert rows[0].cells == {"ids": "3 17 42", "text": "hello, world", "image": "pics/x.png"}
    assert rows[0].label == 2 and rows[0].group == "speaker"  # integer literals in label/group become ints
    assert rows[1].cells == {"ids": "new york|paris"} and rows[1].label == "cat" and rows[1].group is None
    assert rows[2].cells == {"text": "bye"} and rows[2].label is None and rows[2].group == -7
    ids = IdsModality()
    assert ids.parse_cell(rows[0].cells["ids"], manifest.base, True) == (3, 17, 42)
    assert ids.parse_cell(rows[1].cells["ids"], manifest.base, True) == ("new york", "paris")
    image = ImageModality().parse_cell(rows[0].cells["image"], manifest.base, True)
    assert image == (tmp_path / "pics" / "x.png").resolve()


def test_parse_id_list() -> None:
    assert parse_id_list(" 1  2 -3 ") == (1, 2, -3)
    assert parse_id_list("a|b c| 4 ") == ("a", "b c", 4)
    assert parse_id_list("") == ()


def test_bad_json_line_names_file_line_and_reason_not_its_content(tmp_path: Path) -> None:
    """The messages once ended with the line itself (200 characters of someone's data)."""
    secret = "patient 4711 diagnosis"
    path = tmp_path / "m.jsonl"
    for row, message in (
        ('{"text": "' + secret + '",}', r"line 2: invalid JSON at column 35: [A-Z][^:]+$"),  # the parser's words
        (json.dumps([secret, 2]), r"line 2: expected a JSON object {\.\.\.}, got an array$"),
        (json.dumps(secret), r"line 2: expected a JSON object {\.\.\.}, got a string$"),
        (
            json.dumps({"text": "", "label": secret}),
            r"line 2: the row has no cell besides label, group \('text' empty\)$",
        ),
    ):
        write_jsonl(path, [{"text": "ok"}, row])
        with pytest.raises(DataFormatError, match=rf"m\.jsonl, {message}") as error:
            read_manifest(path)
        assert secret not in str(error.value)


def test_a_file_that_is_not_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    """It was once a bare UnicodeDecodeError ("can't decode byte 0xe9 in position 40"), naming no file."""
    for name, header in (("m.jsonl", ""), ("m.csv", "text,label\n")):
        path = tmp_path / name
        rows = '{"text": "ok"}\n{"text": "caf\xe9"}\n' if name.endswith("jsonl") else "ok,1\ncaf\xe9,2\n"
        path.write_bytes((header + rows).encode("latin-1"))
        line = 2 if name.endswith("jsonl") else 3
        with pytest.raises(DataFormatError, match=rf"{name}, line {line}: byte 0xe9 at column \d+ is not UTF-8"):
            read_manifest(path)


def test_a_csv_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("\ufefftext,label\nhello,1\n".encode())
    assert read_manifest(path).columns == ("text",)


def test_a_csv_line_the_csv_module_cannot_read_is_a_data_format_error(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"text,label\nok,1\n{'x' * 200_000},2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"m\.csv, line 3: not a CSV row \(field larger than field limit"):
        read_manifest(path)


def test_row_with_no_cell_besides_label_and_group_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "a"}, {"label": 3, "text": "", "group": "g"}])
    with pytest.raises(DataFormatError, match=r"m\.jsonl, line 2: the row has no cell besides label, group"):
        read_manifest(path)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("text,label\na,1\n,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"m\.csv, row 2: the row has no cell besides label, group"):
        read_manifest(csv_path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "a", "label": 1.5}, "column 'label' must be an integer or a string, got 1.5"),
        ({"text": "a", "group": True}, "column 'group' must be an integer or a string, got True"),
        ({"text": "a", "label": [1]}, r"column 'label' must be an integer or a string, got \[1\]"),
    ],
)
def test_label_and_group_of_the_wrong_type(tmp_path: Path, row: dict, message: str) -> None:
    with pytest.raises(DataFormatError, match=f"m\\.jsonl, line 2: {message}"):
        read_manifest(write_jsonl(tmp_path / "m.jsonl", [{"text": "ok"}, row]))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_manifest(tmp_path / "none.jsonl")
    (tmp_path / "m.tsv").write_text("text\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="unsupported manifest extension '.tsv'"):
        read_manifest(tmp_path / "m.tsv")
    (tmp_path / "m.csv").write_text("text\na\nb,c\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"m\.csv, row 2: 2 cells for a header of 1 columns"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataFormatError, match="the CSV file is empty; expected a header"):
        read_manifest(tmp_path / "empty.csv")
    (tmp_path / "blank.csv").write_text("text,,label\na,b,1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"blank\.csv, header: column 2 has no name"):
        read_manifest(tmp_path / "blank.csv")


def test_class_index() -> None:
    words = ClassIndex(["dog", None, "cat", "dog", 3])
    assert words.names == ["3", "cat", "dog"] and len(words) == 3 and not words.integer
    assert [words.index(v) for v in ("cat", "dog", 3, None)] == [1, 2, 0, -1]
    ints = ClassIndex([2, 0, None])
    assert ints.integer and ints.names == ["0", "1", "2"] and ints.index(2) == 2 and ints.index(None) == -1
    named = ClassIndex([0, 1], names=["zero", "one", "two"])
    assert named.names == ["zero", "one", "two"] and named.index(1) == 1
    with pytest.raises(ValueError, match="2 label_names given, but the labels run up to 4"):
        ClassIndex([4], names=["a", "b"])
    with pytest.raises(DataFormatError, match="integer labels/groups must be >= 0, got -1"):
        ClassIndex([0, -1])


def test_class_index_of_string_labels_takes_the_order_of_label_names() -> None:
    named = ClassIndex(["dog", "cat", None, "dog"], names=["dog", "cat", "bird"])
    assert named.names == ["dog", "cat", "bird"] and len(named) == 3  # the given order, not sorted
    assert [named.index(v) for v in ("dog", "cat", None)] == [0, 1, -1]
    with pytest.raises(ValueError, match=r"labels \['fish'\] are not among label_names \['dog', 'cat'\]"):
        ClassIndex(["dog", "fish", "cat"], names=["dog", "cat"])


def test_split_rows_by_row_and_by_group() -> None:
    rows = [ManifestRow(i + 1, {"text": str(i)}, group=f"g{i % 7}", label=i % 3) for i in range(100)]
    train, val, test = split_rows(rows, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert sorted(r.row for r in train + val + test) == list(range(1, 101))
    assert all(part == sorted(part, key=lambda r: r.row) for part in (train, val, test))  # manifest order
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
