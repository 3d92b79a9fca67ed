"""Faults the project survives, end to end: each test runs the real command or API on a broken input or run and
checks that it fails loudly, naming what went wrong, rather than producing a result that looks right.

More faults are tested where they live (bad manifests in tests/data/test_manifest.py and test_multimodal.py,
bad media in tests/modalities/test_units.py, bad pretrained folders in tests/models/test_joint_inference.py);
this file holds the ones that cross modules.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jointembed.callbacks import TrainingDivergedError
from jointembed.cli import main

REPO = Path(__file__).resolve().parents[1]
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "1"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder with the shipped datasets, as a user's checkout would have them."""
    (tmp_path / "datasets").symlink_to(REPO / "datasets")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["jointembed"])
    return tmp_path


@pytest.mark.slow
def test_a_diverging_fit_stops_naming_the_step_and_writes_no_results(workdir: Path) -> None:
    recipe = str(REPO / "recipes" / "digits_multimodal.yaml")
    with pytest.raises(TrainingDivergedError, match=r"training diverged at epoch 0, step \d+ .*the loss is nan"):
        main(["fit", "--config", recipe, "--model.init_args.lr", "1e9", *SHORT])
    assert not list(workdir.glob("runs/**/test_metrics.json")) and not list(workdir.glob("runs/**/pretrained"))


def test_a_training_manifest_without_the_models_fields_stops_at_setup(workdir: Path) -> None:
    manifest = workdir / "other.jsonl"
    manifest.write_text("".join(json.dumps({"caption": f"c{i}", "label": i % 2}) + "\n" for i in range(8)))
    recipe = str(REPO / "recipes" / "digits_multimodal.yaml")
    args = ["--data.init_args.train", str(manifest), "--data.init_args.val", "null", "--data.init_args.test", "null"]
    with pytest.raises(ValueError, match=r"other\.jsonl: no training row has any of the model's fields .*caption"):
        main(["fit", "--config", recipe, *args, *SHORT])
    assert not list(workdir.glob("runs/**/test_metrics.json"))
