"""Multimodal dataset, collate (the batch contract), binding fields to manifests, loader reporting of bad files,
and the LightningDataModule."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from jointembed.data.manifest import ClassIndex, read_manifest
from jointembed.data.media import BadMediaError
from jointembed.data.multimodal import Example, MultimodalDataModule, MultimodalDataset, collate_multimodal
from jointembed.errors import DataFormatError
from jointembed.modalities import AudioModality, IdsModality, ImageModality, Modality, TextModality
from jointembed.sparse import SparseBatch

DIGITS = Path(__file__).resolve().parents[2] / "datasets" / "digits_four_ways"


def units(image_size: int = 32, max_seconds: float | None = 1.0) -> dict[str, Modality]:
    """The four default fields, with the audio rate set (a data module used on its own has no encoder to take
    it from)."""
    return {
        "ids": IdsModality(),
        "text": TextModality(),
        "image": ImageModality(image_size),
        "audio": AudioModality(sample_rate=8000, max_seconds=max_seconds),
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_tree(root: Path, num_rows: int = 12, bad_rows: tuple[int, ...] = ()) -> Path:
    """A manifest of ``num_rows`` rows (every third lacks text, every fourth audio) with real media files.

    Rows in ``bad_rows`` (1-based) reference a corrupt image. Returns the manifest path.
    """
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    rows = []
    for i in range(num_rows):
        image = f"img/{i}.png"
        if i + 1 in bad_rows:
            (root / image).write_bytes(b"not an image")
        else:
            Image.fromarray(rng.integers(0, 255, (8 + i % 3, 8), dtype=np.uint8)).save(root / image)
        row = {"ids": [i % 4], "text": f"text {i}", "image": image, "label": i % 3, "group": f"s{i % 4}"}
        if i % 3 == 2:
            del row["text"]
        if i % 4 != 3:
            rate = 16000 if i % 2 else 8000
            soundfile.write(root / f"wav/{i}.wav", rng.uniform(-0.5, 0.5, (rate // 4 + 100 * i,)), rate)
            row["audio"] = f"wav/{i}.wav"
        rows.append(json.dumps(row))
    path = root / "m.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def examples_of(path: Path, fields: dict[str, Modality]) -> list[Example]:
    """Parse a manifest's cells with ``fields`` and fit the unfitted units, as the data module's bind does."""
    manifest = read_manifest(path)
    labels = ClassIndex(row.label for row in manifest.rows)
    groups = ClassIndex(row.group for row in manifest.rows)
    out = []
    for row in manifest.rows:
        values = {
            name: unit.parse_cell(row.cells[name], manifest.base, manifest.from_csv)
            for name, unit in fields.items()
            if name in row.cells
        }
        out.append(Example(row.row, values, labels.index(row.label), groups.index(row.group)))
    for name, unit in fields.items():
        if not unit.fitted:
            unit.fit([ex.values[name] for ex in out if name in ex.values])
    return out


# ----- collate: the batch contract ---------------------------------------------------------------------------


def test_collate_produces_the_contract_shapes_and_masks() -> None:
    image = torch.rand(3, 4, 4)
    examples = [
        {"ids": [1, 2], "text": "a", "image": image, "audio": torch.ones(5), "row": 1, "label": 0, "group": 2},
        {"ids": None, "text": None, "image": None, "audio": torch.ones(3), "row": 2, "label": -1, "group": -1},
        {"ids": [7], "text": "c", "image": image, "audio": None, "row": 4, "label": 1, "group": 0},
    ]
    batch = collate_multimodal(examples, units(image_size=4))
    assert set(batch) == {"present", "ids", "text", "image", "audio", "label", "group", "row"}
    assert {m: v.tolist() for m, v in batch["present"].items()} == {
        "ids": [True, False, True],
        "text": [True, False, True],
        "image": [True, False, True],
        "audio": [True, True, False],
    }
    assert all(v.dtype == torch.bool for v in batch["present"].values())
    assert isinstance(batch["ids"], SparseBatch) and len(batch["ids"]) == 2
    assert batch["ids"].values.tolist() == [1, 2, 7] and batch["ids"].offsets.tolist() == [0, 2]
    assert batch["text"] == ["a", "c"]
    assert batch["image"].shape == (2, 3, 4, 4) and batch["image"].dtype == torch.float32
    assert batch["audio"]["waveform"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["audio"]["lengths"].tolist() == [5, 3] and batch["audio"]["lengths"].dtype == torch.long
    assert batch["label"].tolist() == [0, -1, 1] and batch["group"].tolist() == [2, -1, 0]
    assert batch["row"].tolist() == [1, 2, 4] and batch["row"].dtype == torch.long


def test_collate_keeps_every_bound_field_even_when_none_is_present() -> None:
    examples = [{"ids": None, "text": "a", "image": None, "audio": None, "row": 1, "label": 0, "group": 0}]
    batch = collate_multimodal(examples, units(image_size=8))
    assert batch["present"]["image"].tolist() == [False] and batch["image"].shape == (0, 3, 8, 8)
    assert len(batch["ids"]) == 0 and batch["audio"]["waveform"].shape == (0, 0)
    only = collate_multimodal(examples, {"text": TextModality()})
    assert set(only["present"]) == {"text"} and "image" not in only and only["text"] == ["a"]


def test_collate_batches_fields_by_name_and_drops_bad_items() -> None:
    fields = {"title": TextModality(), "plot": TextModality()}
    examples = [
        {"title": "Heat", "plot": None, "row": 1, "label": 0, "group": -1},
        {"title": None, "plot": None, "row": 2, "label": -1, "group": -1, "bad": "report"},
        {"title": "Up", "plot": "a house flies", "row": 3, "label": 1, "group": -1},
    ]
    batch = collate_multimodal(examples, fields)
    assert batch["title"] == ["Heat", "Up"] and batch["plot"] == ["a house flies"]
    assert batch["present"]["plot"].tolist() == [False, True] and batch["row"].tolist() == [1, 3]
    assert batch["skipped"] == ["report"]


# ----- the dataset ----------------------------------------------------------------------------------------------


def test_dataset_decodes_resizes_and_crops(tmp_path: Path) -> None:
    fields = units(image_size=16, max_seconds=0.25)
    examples = examples_of(make_tree(tmp_path), fields)
    data = MultimodalDataset(examples, fields, train=False)
    example = data[1]
    assert example["image"].shape == (3, 16, 16) and example["image"].dtype == torch.float32
    assert 0 <= float(example["image"].min()) and float(example["image"].max()) <= 1
    assert torch.equal(example["image"][0], example["image"][1])  # grayscale repeated to 3 channels
    assert example["audio"].shape == (2000,)  # 4,100 samples at 16 kHz → 2,050 at 8 kHz → centre 2,000
    assert example["ids"] == [1] and example["text"] == "text 1" and example["row"] == 2
    assert example["label"] == 1 and example["group"] == 1
    assert data[2]["text"] is None and data[3]["audio"] is None
    torch.testing.assert_close(data[1]["audio"], data[1]["audio"])  # evaluation crops are deterministic
    train = MultimodalDataset(examples, fields, train=True)
    assert train[1]["audio"].shape == (2000,) and train[1]["image"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="on_bad_file must be 'error' or 'skip'"):
        MultimodalDataset(examples, fields, on_bad_file="ignore")


def test_bad_file_error_names_file_and_row(tmp_path: Path) -> None:
    path = make_tree(tmp_path, bad_rows=(3,))
    fields = units()
    examples = examples_of(path, fields)
    with pytest.raises(BadMediaError, match=r"m\.jsonl, row 3: cannot read image file .*img/2\.png") as info:
        MultimodalDataset(examples, fields, manifest=path)[2]
    assert info.value.row == 3 and info.value.manifest == str(path) and info.value.path.endswith("2.png")
    with pytest.raises(BadMediaError, match=r"^row 3: cannot read image file .*img/2\.png"):
        MultimodalDataset(examples, fields)[2]
    dm = MultimodalDataModule(train=str(path), batch_size=4, augment=False)
    dm.bind(units())
    with pytest.raises(BadMediaError, match=r"m\.jsonl, row 3: cannot read image file .*img/2\.png"):
        list(dm.train_dataloader())


def test_string_id_when_training_ids_are_integers_names_manifest_row_and_column(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", [{"ids": [0, 4], "label": 0}, {"ids": 2, "label": 1}])
    test = write_jsonl(tmp_path / "test.jsonl", [{"ids": [9], "label": 0}, {"ids": ["x"], "label": 1}])
    dm = MultimodalDataModule(train=str(train), test=str(test), batch_size=1)
    ids = IdsModality()
    dm.bind({"ids": ids})
    assert ids.mode == "integer" and ids.num_ids == 10  # the largest ID of any split, plus one
    loader = dm.test_dataloader()
    first = next(iter(loader))
    assert first["ids"].values.tolist() == [9]
    with pytest.raises(DataFormatError, match=r"test\.jsonl, row 2, column 'ids': string ID 'x', but the training"):
        list(loader)


# ----- binding fields to manifests -----------------------------------------------------------------------------


def test_user_named_columns_several_of_one_type(tmp_path: Path) -> None:
    (tmp_path / "posters").mkdir()
    rows = []
    for i, (title, movie) in enumerate([("Heat", "tt0113277"), ("Up", "tt1049413"), ("Coco", "tt2380307")]):
        Image.new("RGB", (12, 18), (40 * i, 0, 0)).save(tmp_path / "posters" / f"{i}.png")
        rows.append({"title": title, "plot": f"plot {i}", "poster": f"posters/{i}.png", "movie_id": movie})
    del rows[1]["plot"]
    path = write_jsonl(tmp_path / "movies.jsonl", rows)
    fields = {"title": "text", "plot": "text", "poster": "image", "movie_id": "ids"}
    dm = MultimodalDataModule(train=str(path), val=str(path), fields=fields, batch_size=3, augment=False)
    assert dm.columns == ["title", "plot", "poster", "movie_id"]
    bound = dm.default_fields()
    assert {name: unit.registry_name for name, unit in bound.items()} == fields
    assert len(next(iter(dm.train_dataloader()))["row"]) == 3  # binds the default units of those types
    batch = next(iter(dm.val_dataloader()))  # in manifest order
    assert set(batch["present"]) == set(fields) and set(fields) <= set(batch)
    assert batch["title"] == ["Heat", "Up", "Coco"] and batch["plot"] == ["plot 0", "plot 2"]
    assert batch["present"]["plot"].tolist() == [True, False, True]
    assert batch["poster"].shape == (3, 3, 32, 32)
    assert isinstance(batch["movie_id"], SparseBatch) and batch["movie_id"].values.tolist() == [2, 3, 4]
    assert dm.fields["movie_id"].mode == "vocabulary"  # string keys: a vocabulary fitted on the training rows
    assert batch["label"].tolist() == [-1, -1, -1] and dm.label_names == []


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ({"text": 3}, "column 'text': must be a string, got 3"),
        ({"image": 1}, r"column 'image': must be a file path \(a string\), got 1"),
        ({"ids": [1, True]}, "column 'ids': an ID must be an integer or a string, got True"),
        ({"ids": 1.5}, "column 'ids': an ID must be an integer or a string, got 1.5"),
    ],
)
def test_a_cell_the_unit_cannot_parse_names_file_line_and_column(tmp_path: Path, cell: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "ok", "ids": [1]}, {"label": 0, **cell}])
    dm = MultimodalDataModule(train=str(path))
    with pytest.raises(DataFormatError, match=rf"m\.jsonl, line 2, {message}"):
        dm.bind({"ids": IdsModality(), "text": TextModality(), "image": ImageModality()})


def test_columns_that_are_not_fields_and_rows_without_fields_warn(tmp_path: Path) -> None:
    path = make_tree(tmp_path, num_rows=12)
    dm = MultimodalDataModule(train=str(path), batch_size=12, augment=False)
    fields = {"text": TextModality(), "audio": AudioModality(sample_rate=8000)}
    with pytest.warns(UserWarning) as caught:
        dm.bind(fields)
    messages = [str(w.message) for w in caught]
    assert any(f"{path} (train): columns ['ids', 'image'] are not fields of the model" in m for m in messages)
    assert any(r"(train): dropped 1 row(s) with none of the fields ['audio', 'text']" in m for m in messages)
    assert dm.label_names == ["0", "1", "2"] and dm.group_names == ["s0", "s1", "s2", "s3"]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["present"]) == {"text", "audio"} and "image" not in batch and "ids" not in batch
    assert len(batch["row"]) == 11 and 12 not in batch["row"].tolist()  # row 12 has neither text nor audio


def test_a_training_manifest_with_none_of_the_fields_names_manifest_fields_and_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"title": "Heat", "plot": "a heist"}, {"title": "Up"}])
    dm = MultimodalDataModule(train=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ignored columns and dropped rows are also warned about
        with pytest.raises(ValueError, match=r"m\.jsonl: no training row has any of the model's fields") as info:
            dm.bind({"text": TextModality(), "image": ImageModality()})
    assert "['image', 'text']" in str(info.value) and "columns ['title', 'plot']" in str(info.value)


def test_string_labels_follow_label_names(tmp_path: Path) -> None:
    rows = [{"text": t, "label": label} for t, label in [("woof", "dog"), ("meow", "cat"), ("bark", "dog")]]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    dm = MultimodalDataModule(train=str(path), label_names=["dog", "cat", "bird"], batch_size=3, augment=False)
    assert dm.label_names == ["dog", "cat", "bird"]
    dm.bind({"text": TextModality()})
    batch = next(iter(dm.train_dataloader()))
    assert sorted(zip(batch["text"], batch["label"].tolist(), strict=True)) == [("bark", 0), ("meow", 1), ("woof", 0)]
    assert MultimodalDataModule(train=str(path)).label_names == ["cat", "dog"]  # no names: sorted
    with pytest.raises(ValueError, match=r"labels \['cat'\] are not among label_names"):
        MultimodalDataModule(train=str(path), label_names=["dog"]).setup()


def test_data_module_arguments_and_types(tmp_path: Path) -> None:
    path = make_tree(tmp_path, num_rows=4)
    named = MultimodalDataModule(train=str(path), label_names=["zero", "one", "two"])
    assert named.label_names == ["zero", "one", "two"]
    with pytest.raises(ValueError, match="either train/val/test manifests or one manifest"):
        MultimodalDataModule(train=str(path), manifest=str(path))
    with pytest.raises(ValueError, match="split_by must be None, 'group' or 'label'"):
        MultimodalDataModule(manifest=str(path), split_by="speaker")
    with pytest.raises(KeyError, match="unknown modality 'video'"):
        MultimodalDataModule(train=str(path), fields={"clip": "video"}).default_fields()
    default = MultimodalDataModule(train=str(path)).default_fields()
    assert {name: unit.registry_name for name, unit in default.items()} == {c: c for c in units()}


# ----- skipping bad files --------------------------------------------------------------------------------------


def test_skip_drops_counts_and_reports_bad_files(tmp_path: Path) -> None:
    path = make_tree(tmp_path, bad_rows=(3, 7))
    dm = MultimodalDataModule(train=str(path), batch_size=4, augment=False, on_bad_file="skip")
    dm.bind(units())
    loader = dm.train_dataloader()
    for epoch in (1, 2):
        with pytest.warns(UserWarning, match=rf"pass {epoch}: skipped 2 example\(s\).*2\.png \(row 3\).*6\.png"):
            rows = [r for batch in loader for r in batch["row"].tolist()]
        assert sorted(rows) == [1, 2, 4, 5, 6, 8, 9, 10, 11, 12]
    bad = dm.bad_files["train"]
    assert [(b.row, Path(b.path).name) for b in bad] == [(3, "2.png"), (7, "6.png")]
    assert all("UnidentifiedImageError" in b.reason and b.manifest == str(path) for b in bad)
    assert dm.datasets["train"].num_skipped == 4 and dm.datasets["train"].passes == 2


def test_skip_reports_across_two_workers(tmp_path: Path) -> None:
    path = make_tree(tmp_path, bad_rows=(5,))
    dm = MultimodalDataModule(test=str(path), batch_size=3, num_workers=2, on_bad_file="skip")
    dm.bind(units())
    with pytest.warns(UserWarning, match=r"test of .*m\.jsonl, pass 1: skipped 1 example.*img/4\.png \(row 5\)"):
        batches = list(dm.test_dataloader())
    rows = [r for batch in batches for r in batch["row"].tolist()]
    assert rows == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]  # in manifest order, row 5 dropped
    assert batches[0]["image"].shape == (3, 3, 32, 32) and dm.bad_files["test"][0].row == 5
    assert dm.train_dataloader() == [] and dm.val_dataloader() == []  # splits that were not given


# ----- splits --------------------------------------------------------------------------------------------------


def test_seeded_split_is_reproducible_and_group_split_is_disjoint(tmp_path: Path) -> None:
    path = make_tree(tmp_path, num_rows=40)

    def split(seed: int, split_by: str | None) -> list[list[int]]:
        dm = MultimodalDataModule(manifest=str(path), split=(0.5, 0.25, 0.25), split_by=split_by, seed=seed)
        dm.setup()
        dm.bind(units())
        return [[ex.row for ex in dm.datasets[name].examples] for name in ("train", "val", "test")]

    by_row = split(0, None)
    assert by_row == split(0, None) and by_row != split(1, None)
    assert [len(p) for p in by_row] == [20, 10, 10] and sorted(sum(by_row, [])) == list(range(1, 41))
    by_group = split(0, "group")
    groups = [{(row - 1) % 4 for row in part} for part in by_group]  # row i+1 is in group s{i % 4}
    assert [len(g) for g in groups] == [2, 1, 1] and len(set().union(*groups)) == 4


# ----- the predict split ---------------------------------------------------------------------------------------


def test_predict_split_in_manifest_order_with_rows_and_fields_needs_no_labels(tmp_path: Path) -> None:
    train = write_jsonl(
        tmp_path / "train.jsonl", [{"ids": ["a", "b", "b"], "label": "cat"}, {"text": "t", "label": "dog"}]
    )
    predict = write_jsonl(
        tmp_path / "predict.jsonl",
        [{"ids": ["b", "zzz"], "text": "one", "label": "bird"}, {"text": "two"}, {"ids": ["a"]}, {"title": "x"},
         {"ids": ["b"], "text": "five", "label": 3}],
    )  # fmt: skip
    dm = MultimodalDataModule(train=str(train), predict=str(predict), batch_size=2)
    fields = {"ids": IdsModality(), "text": TextModality()}
    with pytest.warns(UserWarning) as caught:
        dm.bind(fields)
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        "columns ['title'] are not fields of the model ['ids', 'text']; they are ignored",
        "dropped 1 row(s) with none of the fields ['ids', 'text']",
    ]
    assert fields["ids"].vocab.values == ["b", "a"]  # fitted on the training rows only: "zzz" stays unknown
    assert dm.label_names == ["cat", "dog"]  # the predict rows' labels are not classes
    for _ in range(2):  # never shuffled
        batches = list(dm.predict_dataloader())
        assert [b["row"].tolist() for b in batches] == [[1, 2], [3, 5]]  # manifest rows; row 4 has no field
    first, second = batches
    assert first["present"]["ids"].tolist() == [True, False] and first["present"]["text"].tolist() == [True, True]
    assert first["ids"].values.tolist() == [2, 1] and first["text"] == ["one", "two"]  # "zzz" is <oov>
    assert second["ids"].values.tolist() == [3, 2] and second["text"] == ["five"]
    assert first["label"].tolist() == [-1, -1] and second["group"].tolist() == [-1, -1]


def test_a_predict_manifest_alone_needs_fitted_units_and_rows_with_fields(tmp_path: Path) -> None:
    predict = write_jsonl(tmp_path / "predict.jsonl", [{"ids": ["a"]}, {"text": "t"}])
    with pytest.raises(ValueError, match=r"predict\.jsonl: field 'ids' needs its ids input fitted .*--ckpt_path"):
        MultimodalDataModule(predict=str(predict)).bind({"ids": IdsModality(), "text": TextModality()})
    dm = MultimodalDataModule(predict=str(predict), batch_size=4)
    dm.bind({"ids": IdsModality(mode="vocabulary", vocabulary=["x", "a"]), "text": TextModality()})
    batch = next(iter(dm.predict_dataloader()))
    assert batch["row"].tolist() == [1, 2] and batch["ids"].values.tolist() == [3]  # <pad>, <oov>, "x", "a"
    assert dm.train_dataloader() == [] and dm.test_dataloader() == []
    other = write_jsonl(tmp_path / "other.jsonl", [{"title": "x"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ignored columns and dropped rows are warned about
        split = MultimodalDataModule(manifest=str(predict), split=(1.0, 0.0, 0.0), split_by=None, predict=str(predict))
        split.bind({"text": TextModality()})
        assert set(split.datasets) == {"train", "predict"}
        with pytest.raises(ValueError, match=r"other\.jsonl: no predict row has any of the model's fields \['text'\]"):
            MultimodalDataModule(predict=str(other)).bind({"text": TextModality()})
    with pytest.raises(ValueError, match=r"train/val/test manifests or one manifest to split \(or a predict manifest"):
        MultimodalDataModule()


# ----- with a Trainer, and on the shipped demo data -------------------------------------------------------------


class _CountingModule(L.LightningModule):
    """Counts the examples it is fed; the loss only touches a parameter so the loop runs."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        assert set(batch["present"]) == {"ids", "text", "image", "audio"} and "skipped" not in batch
        self.seen += len(batch["row"])
        return (self.weight - batch["image"].mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_fit_runs_and_reports_skipped_files(tmp_path: Path) -> None:
    path = make_tree(tmp_path, bad_rows=(2,))
    dm = MultimodalDataModule(train=str(path), batch_size=4, on_bad_file="skip")
    dm.bind(units())
    model = _CountingModule()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=dm)
    reports = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(reports) == 2 and all("img/1.png (row 2)" in r for r in reports)
    assert model.seen == 2 * 11  # per epoch 3 batches of 4 rows, one of them short of its bad row


@pytest.mark.skipif(not (DIGITS / "train.jsonl").exists(), reason="datasets/digits_four_ways is not built")
def test_digits_four_ways_batch_has_all_four_modalities() -> None:
    dm = MultimodalDataModule(
        train=str(DIGITS / "train.jsonl"), val=str(DIGITS / "val.jsonl"), test=str(DIGITS / "test.jsonl"), seed=0
    )
    fields = units()
    dm.bind(fields)
    assert dm.label_names == [str(d) for d in range(10)]
    assert fields["ids"].mode == "integer" and fields["ids"].num_ids == 10
    batch = next(iter(dm.test_dataloader()))
    assert all(bool(p.all()) for p in batch["present"].values())  # test rows are complete
    assert batch["image"].shape == (64, 3, 32, 32) and len(batch["text"]) == 64 and len(batch["ids"]) == 64
    assert batch["audio"]["waveform"].shape[0] == 64 and int(batch["audio"]["lengths"].max()) <= 8000
    assert batch["label"].tolist() == [0] * 25 + [1] * 25 + [2] * 14
    train = next(iter(dm.train_dataloader()))
    assert len(train["row"]) == 64 and not all(bool(p.all()) for p in train["present"].values())
