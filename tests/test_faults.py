"""Faults the project survives, end to end: each test runs the real command or API on a broken input or run and
checks that it fails loudly, naming what went wrong, rather than producing a result that looks right.

More faults are tested where they live (bad manifests in tests/data/test_manifest.py and test_multimodal.py,
bad media in tests/modalities/test_units.py, bad pretrained folders in tests/models/test_joint_inference.py);
this file holds the ones that cross modules.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
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


def _fit(folder: Path, *extra: str, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    recipe = str(REPO / "recipes" / "digits_multimodal.yaml")
    args = [sys.executable, "-m", "jointembed", "fit", "--config", recipe, "--trainer.max_epochs", "4",
            "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "2",
            "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if wait:
        return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, check=False)
    return subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _rows(path: Path) -> list[dict[str, str]]:
    """A metrics.csv's rows without their empty cells (the resumed run's new columns widen the header)."""
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_a_killed_fit_resumes_in_its_run_and_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    for name in ("whole", "killed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "datasets").symlink_to(REPO / "datasets")
    whole = _fit(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    run = tmp_path / "killed" / "runs" / "digits_multimodal" / "version_0"
    process = _fit(tmp_path / "killed", wait=False)
    while not (run / "checkpoints" / "last.ckpt").is_file() and process.poll() is None:
        time.sleep(0.01)  # polling for a file, not timing anything
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "test_metrics.json").exists(), "the run ended before it could be killed"
    logged = _rows(run / "metrics.csv")
    resumed = _fit(tmp_path / "killed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "pretrained model written to runs/digits_multimodal/version_0/pretrained" in resumed.stdout
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # the same run folder, no new one
    assert logged and _rows(run / "metrics.csv")[: len(logged)] == logged  # the earlier logs are kept
    expected = json.loads(
        (tmp_path / "whole" / "runs" / "digits_multimodal" / "version_0" / "test_metrics.json").read_text()
    )
    got = json.loads((run / "test_metrics.json").read_text())
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-6), key


def test_resuming_without_any_run_says_there_is_nothing_to_resume(workdir: Path) -> None:
    recipe = str(REPO / "recipes" / "digits_multimodal.yaml")
    with pytest.raises(FileNotFoundError, match=r"no run under runs/digits_multimodal has checkpoints/last\.ckpt"):
        main(["fit", "--config", recipe, "--ckpt_path", "last", *SHORT])


def test_an_id_beyond_the_models_table_is_named_at_setup_with_its_file_and_line(tmp_path: Path) -> None:
    """It once failed at some batch mid-epoch with a 107-line traceback naming a position in the batch."""
    from jointembed.data.multimodal import MultimodalDataModule
    from jointembed.errors import DataFormatError
    from jointembed.models.joint import JointEmbeddingModel
    from jointembed.registry import create_encoder
    from jointembed.tasks.contrastive import ContrastiveTask

    rows = [{"ids": [i % 10], "text": f"digit {i % 10}", "label": i % 10} for i in range(30)]
    rows[17]["ids"] = [12]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    ids = create_encoder("ids", num_embeddings=10, embedding_dim=4, hidden_sizes=[], output_dim=8)
    text = create_encoder("scratch_text", num_buckets=64, embedding_dim=8, output_dim=8)
    task = ContrastiveTask(JointEmbeddingModel({"ids": ids, "text": text}))
    with pytest.raises(DataFormatError, match=r"train\.jsonl, line 18, column 'ids': ID 12 is outside the model's"):
        task.bind_data(MultimodalDataModule(train=str(manifest)))


def test_a_tampered_model_config_is_a_checkpoint_error_naming_the_file_and_field(tmp_path: Path) -> None:
    """num_embeddings -5 or mismatched output_dims once surfaced as raw RuntimeError/ValueError."""
    from jointembed.errors import CheckpointError
    from jointembed.models.joint import JointEmbeddingModel
    from jointembed.registry import create_encoder

    ids = create_encoder("ids", num_embeddings=10, embedding_dim=4, hidden_sizes=[], output_dim=8)
    text = create_encoder("scratch_text", num_buckets=64, embedding_dim=8, output_dim=8)
    JointEmbeddingModel({"ids": ids, "text": text}).save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    for field, key, value, message in (
        ("ids", "num_embeddings", -5, r"config\.json: cannot build field 'ids'"),
        ("text", "output_dim", 16, r"config\.json: all encoders must share output_dim, got ids=8, text=16"),
    ):
        broken = json.loads(json.dumps(config))
        broken["fields"][field]["encoder"]["config"][key] = value
        path.write_text(json.dumps(broken))
        with pytest.raises(CheckpointError, match=message):
            JointEmbeddingModel.from_pretrained(tmp_path / "m")


def test_an_empty_training_manifest_stops_at_setup(workdir: Path) -> None:
    (workdir / "empty.jsonl").write_text("\n")
    recipe = str(REPO / "recipes" / "digits_multimodal.yaml")
    args = ["--data.init_args.train", str(workdir / "empty.jsonl")]
    with pytest.raises(ValueError, match=r"empty\.jsonl: the training split has no rows; nothing to train on"):
        main(["fit", "--config", recipe, *args, *SHORT])
    assert not list(workdir.glob("runs/**/test_metrics.json"))


def test_a_housing_row_with_an_extra_field_is_refused_not_shifted(tmp_path: Path) -> None:
    """It was once read with income 472 and a target of $1.49."""
    from jointembed.data.housing_features import read_housing_csv
    from jointembed.errors import DataFormatError

    source = REPO / "datasets" / "california_housing" / "california_housing_train.csv"
    header = source.read_text().splitlines()[0]
    path = tmp_path / "h.csv"
    path.write_text(f"{header}\n-114.31,34.19,15,5612,,1283,1015,472,1.4936,66900\n")
    with pytest.raises(DataFormatError, match=r"h\.csv, line 2: expected 9 fields, got 10"):
        read_housing_csv(path)
