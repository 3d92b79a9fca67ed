"""Multimodal dataset, collate (the batch contract), loader reporting of bad files, and the LightningDataModule."""

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

from jointembed.data.manifest import read_manifest
from jointembed.data.media import BadMediaError
from jointembed.data.multimodal import MultimodalDataModule, MultimodalDataset, collate_multimodal
from jointembed.sparse import SparseBatch

DIGITS = Path(__file__).resolve().parents[2] / "datasets" / "digits_four_ways"


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


def test_collate_produces_the_contract_shapes_and_masks() -> None:
    image = torch.rand(3, 4, 4)
    examples = [
        {"ids": [1, 2], "text": "a", "image": image, "audio": torch.ones(5), "row": 1, "label": 0, "group": 2},
        {"ids": None, "text": None, "image": None, "audio": torch.ones(3), "row": 2, "label": -1, "group": -1},
        {"ids": [7], "text": "c", "image": image, "audio": None, "row": 4, "label": 1, "group": 0},
    ]
    batch = collate_multimodal(examples)
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


def test_collate_keeps_every_served_modality_even_when_none_is_present() -> None:
    examples = [{"ids": None, "text": "a", "image": None, "audio": None, "row": 1, "label": 0, "group": 0}]
    batch = collate_multimodal(examples, image_size=8)
    assert batch["present"]["image"].tolist() == [False] and batch["image"].shape == (0, 3, 8, 8)
    assert len(batch["ids"]) == 0 and batch["audio"]["waveform"].shape == (0, 0)
    only = collate_multimodal(examples, modalities=["text"])
    assert set(only["present"]) == {"text"} and "image" not in only


def test_dataset_decodes_resizes_and_crops(tmp_path: Path) -> None:
    rows = read_manifest(make_tree(tmp_path)).rows
    data = MultimodalDataset(rows, image_size=16, sample_rate=8000, max_audio_seconds=0.25, train=False)
    example = data[1]
    assert example["image"].shape == (3, 16, 16) and example["image"].dtype == torch.float32
    assert 0 <= float(example["image"].min()) and float(example["image"].max()) <= 1
    assert torch.equal(example["image"][0], example["image"][1])  # grayscale repeated to 3 channels
    assert example["audio"].shape == (2000,)  # 4,100 samples at 16 kHz → 2,050 at 8 kHz → centre 2,000
    assert example["ids"] == [1] and example["text"] == "text 1" and example["row"] == 2
    assert data[2]["text"] is None and data[3]["audio"] is None
    torch.testing.assert_close(data[1]["audio"], data[1]["audio"])  # evaluation crops are deterministic
    train = MultimodalDataset(rows, image_size=16, max_audio_seconds=0.25, train=True, augment=True)
    assert train[1]["audio"].shape == (2000,) and train[1]["image"].shape == (3, 16, 16)


def test_bad_file_error_names_file_and_row(tmp_path: Path) -> None:
    path = make_tree(tmp_path, bad_rows=(3,))
    data = MultimodalDataset(read_manifest(path).rows, manifest=path)
    with pytest.raises(BadMediaError, match=r"m\.jsonl, row 3: cannot read image file .*img/2\.png"):
        data[2]
    loader = MultimodalDataModule(train=str(path), batch_size=4, augment=False).train_dataloader()
    with pytest.raises(BadMediaError, match=r"row 3: cannot read image file .*img/2\.png"):
        list(loader)


def test_skip_drops_counts_and_reports_bad_files(tmp_path: Path) -> None:
    path = make_tree(tmp_path, bad_rows=(3, 7))
    dm = MultimodalDataModule(train=str(path), batch_size=4, augment=False, on_bad_file="skip")
    loader = dm.train_dataloader()
    for epoch in (1, 2):
        with pytest.warns(UserWarning, match=rf"pass {epoch}: skipped 2 example\(s\).*2\.png \(row 3\).*6\.png"):
            rows = [r for batch in loader for r in batch["row"].tolist()]
        assert sorted(rows) == [1, 2, 4, 5, 6, 8, 9, 10, 11, 12]
    bad = dm.bad_files["train"]
    assert [(b.row, Path(b.path).name) for b in bad] == [(3, "2.png"), (7, "6.png")]
    assert all("UnidentifiedImageError" in b.reason for b in bad)
    assert dm.datasets["train"].num_skipped == 4 and dm.datasets["train"].passes == 2


def test_skip_reports_across_two_workers(tmp_path: Path) -> None:
    path = make_tree(tmp_path, bad_rows=(5,))
    dm = MultimodalDataModule(test=str(path), batch_size=3, num_workers=2, on_bad_file="skip")
    with pytest.warns(UserWarning, match=r"test of .*m\.jsonl, pass 1: skipped 1 example.*img/4\.png \(row 5\)"):
        batches = list(dm.test_dataloader())
    rows = [r for batch in batches for r in batch["row"].tolist()]
    assert rows == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]  # in manifest order, row 5 dropped
    assert batches[0]["image"].shape == (3, 3, 32, 32) and dm.bad_files["test"][0].row == 5


def test_seeded_split_is_reproducible_and_group_split_is_disjoint(tmp_path: Path) -> None:
    path = make_tree(tmp_path, num_rows=40)

    def split(seed: int, split_by: str | None) -> list[list[int]]:
        dm = MultimodalDataModule(manifest=str(path), split=(0.5, 0.25, 0.25), split_by=split_by, seed=seed)
        dm.setup()
        return [[int(r.row) for r in dm.datasets[name].rows] for name in ("train", "val", "test")]

    by_row = split(0, None)
    assert by_row == split(0, None) and by_row != split(1, None)
    assert [len(p) for p in by_row] == [20, 10, 10] and sorted(sum(by_row, [])) == list(range(1, 41))
    by_group = split(0, "group")
    groups = [{(row - 1) % 4 for row in part} for part in by_group]  # row i+1 is in group s{i % 4}
    assert [len(g) for g in groups] == [2, 1, 1] and len(set().union(*groups)) == 4


def test_modalities_restriction_labels_and_ids(tmp_path: Path) -> None:
    path = make_tree(tmp_path, num_rows=12)
    dm = MultimodalDataModule(train=str(path), modalities=["text", "audio"], batch_size=12, augment=False)
    with pytest.warns(UserWarning, match=r"train: dropped 1 row\(s\) with none of \['text', 'audio'\]"):
        assert dm.label_names == ["0", "1", "2"]
    assert dm.num_ids == 4 and dm.group_names == ["s0", "s1", "s2", "s3"]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["present"]) == {"text", "audio"} and "image" not in batch
    assert len(batch["row"]) == 11 and 12 not in batch["row"].tolist()  # row 12 has neither text nor audio
    named = MultimodalDataModule(train=str(path), label_names=["zero", "one", "two"])
    assert named.label_names == ["zero", "one", "two"]
    with pytest.raises(ValueError, match="either train/val/test manifests or one manifest"):
        MultimodalDataModule(train=str(path), manifest=str(path))
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        MultimodalDataModule(train=str(path), modalities=["video"])


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
    assert dm.label_names == [str(d) for d in range(10)] and dm.num_ids == 10
    batch = next(iter(dm.test_dataloader()))
    assert all(bool(p.all()) for p in batch["present"].values())  # test rows are complete
    assert batch["image"].shape == (64, 3, 32, 32) and len(batch["text"]) == 64 and len(batch["ids"]) == 64
    assert batch["audio"]["waveform"].shape[0] == 64 and int(batch["audio"]["lengths"].max()) <= 8000
    assert batch["label"].tolist() == [0] * 25 + [1] * 25 + [2] * 14
    train = next(iter(dm.train_dataloader()))
    assert len(train["row"]) == 64 and not all(bool(p.all()) for p in train["present"].values())
