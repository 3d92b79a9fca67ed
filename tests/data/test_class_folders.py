"""ClassFolderDataModule on a tiny ESC-style folder of generated WAVs (class folders with spaces in their names,
fold-prefixed file names): splits by fold, class names and their order, the rows it serves, and the errors a
malformed folder or a fold that is not there gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from class_folders_fixture import make_esc_folder

from jointembed.data.class_folders import ClassFolderDataModule, FoldNotFoundError, class_name, scan_class_folders
from jointembed.data.media import BadMediaError
from jointembed.errors import DataFormatError
from jointembed.modalities import AudioModality, TextModality


@pytest.fixture
def esc(tmp_path: Path) -> Path:
    return make_esc_folder(tmp_path / "ESC mini")


def bound(module: ClassFolderDataModule) -> ClassFolderDataModule:
    module.setup()
    module.bind({"audio": AudioModality(sample_rate=8000, max_seconds=None), "text": TextModality()})
    return module


def test_class_names_drop_the_number_and_keep_the_folder_order(esc: Path) -> None:
    assert class_name("001 - Dog bark") == "dog bark" and class_name("Dog bark", lowercase=False) == "Dog bark"
    assert class_name("12_Siren") == "siren" and class_name("rain") == "rain"
    module = ClassFolderDataModule(str(esc), test_fold=3)
    assert module.folds == [1, 2, 3]
    assert module.label_names == ["dog bark", "rain", "fire crackling"]  # folder order, not alphabetical


def test_the_test_fold_is_held_out_and_the_rest_trained_on(esc: Path) -> None:
    module = bound(ClassFolderDataModule(str(esc), test_fold=3, val_fold=1, batch_size=4))
    sizes = {name: len(ds) for name, ds in module.datasets.items()}
    assert sizes == {"train": 6, "val": 6, "test": 6}  # 3 classes x 2 clips per fold
    for name, fold in (("train", 2), ("val", 1), ("test", 3)):
        for example in module.datasets[name].examples:
            assert Path(example.values["audio"]).name.startswith(f"{fold}-")
            assert example.values["text"] == module.label_names[example.label]
    batch = next(iter(module.test_dataloader()))
    assert batch["audio"]["waveform"].shape == (4, 2000) and batch["text"][0] == "dog bark"
    torch.testing.assert_close(batch["label"], torch.tensor([0, 0, 1, 1]))
    no_val = bound(ClassFolderDataModule(str(esc), test_fold=2))
    assert sorted(no_val.datasets) == ["test", "train"] and len(no_val.datasets["train"]) == 12


def test_a_fold_that_is_not_there_is_named(esc: Path) -> None:
    with pytest.raises(
        FoldNotFoundError, match=r"test_fold=7, but no file is in fold 7; the folds there are \[1, 2, 3\]"
    ):
        ClassFolderDataModule(str(esc), test_fold=7).setup()
    with pytest.raises(FoldNotFoundError, match="val_fold=0"):
        ClassFolderDataModule(str(esc), test_fold=1, val_fold=0).setup()
    with pytest.raises(ValueError, match="test_fold and val_fold are both 2"):
        ClassFolderDataModule(str(esc), test_fold=2, val_fold=2)
    with pytest.raises(ValueError, match="path is not set"):
        ClassFolderDataModule(None)  # type: ignore[arg-type]  # a recipe's "path: null" left unset


def test_a_folder_without_audio_and_a_file_without_a_fold_are_named(tmp_path: Path) -> None:
    esc = make_esc_folder(tmp_path / "a")
    (esc / "011 - Siren").mkdir()
    (esc / "011 - Siren" / "notes.txt").write_text("no audio here")
    with pytest.raises(DataFormatError, match=r"011 - Siren: no file ending in \.wav"):
        ClassFolderDataModule(str(esc), test_fold=1).setup()
    esc = make_esc_folder(tmp_path / "b")
    (esc / "002 - Rain" / "take two.wav").write_bytes((esc / "002 - Rain" / "1-1010-A.wav").read_bytes())
    with pytest.raises(DataFormatError, match=r"take two.wav: the file name does not start with its fold"):
        ClassFolderDataModule(str(esc), test_fold=1).setup()
    with pytest.raises(DataFormatError, match="not a folder"):
        scan_class_folders(tmp_path / "nowhere", [".wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no class folders"):
        scan_class_folders(tmp_path / "empty", [".wav"])


def test_an_unreadable_clip_is_named_or_skipped(esc: Path) -> None:
    broken = esc / "002 - Rain" / "3-1030-A.wav"
    broken.write_bytes(b"RIFF, but not a WAV file")
    module = bound(ClassFolderDataModule(str(esc), test_fold=3, batch_size=6))
    with pytest.raises(BadMediaError, match=r"cannot read audio file .*002 - Rain/3-1030-A.wav"):
        next(iter(module.test_dataloader()))
    skipping = bound(ClassFolderDataModule(str(esc), test_fold=3, batch_size=6, on_bad_file="skip"))
    with pytest.warns(UserWarning, match="skipped 1 example"):
        batches = list(skipping.test_dataloader())
    assert sum(len(b["label"]) for b in batches) == 5
    assert [Path(bad.path).name for bad in skipping.bad_files["test"]] == ["3-1030-A.wav"]
