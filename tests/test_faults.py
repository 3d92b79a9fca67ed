"""Faults the project survives, end to end: each test runs the real command or API on a broken input or run and
checks that it fails loudly, naming what went wrong, rather than producing a result that looks right.

A command ends an error in the user's input (a missing file, an impossible setting, a diverged run) with one
line, ``jointembed <command>: error: <message>``, and exit code 1; a bug keeps its traceback.

More faults are tested where they live (bad manifests in tests/data/test_manifest.py and test_multimodal.py,
bad media in tests/modalities/test_units.py, bad pretrained folders in tests/models/test_joint_inference.py);
this file holds the ones that cross modules.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jointembed.lightning_cli  # noqa: F401  (Lightning's log handler takes sys.stderr when imported: not capsys's)
from jointembed.cli import main

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "recipes" / "digits_multimodal.yaml")
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "1"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder with the shipped datasets, as a user's checkout would have them."""
    (tmp_path / "datasets").symlink_to(REPO / "datasets")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["jointembed"])
    return tmp_path


def _error_line(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``jointembed *args``, check it exits 1 with one error line and no traceback, and return the line."""
    assert main(list(args)) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"jointembed {args[0]}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_fit_with_a_missing_manifest_is_one_line_naming_the_file(workdir: Path, capsys) -> None:
    """It was a 37-line traceback."""
    line = _error_line(capsys, "fit", "--config", RECIPE, "--data.init_args.train", "nope/train.jsonl", *SHORT)
    assert line == "jointembed fit: error: manifest nope/train.jsonl does not exist"


def test_an_impossible_learning_rate_is_one_line_naming_the_argument_and_value(workdir: Path, capsys) -> None:
    """It was a 76-line traceback ending in jsonargparse's dump of the whole configuration."""
    line = _error_line(capsys, "fit", "--config", RECIPE, "--model.init_args.lr", "-1", *SHORT)
    assert line == "jointembed fit: error: lr must be > 0, got -1.0"


def test_an_impossible_batch_size_is_one_line_naming_the_argument_and_value(workdir: Path, capsys) -> None:
    line = _error_line(capsys, "validate", "--config", RECIPE, "--data.init_args.batch_size", "0")
    assert line == "jointembed validate: error: batch_size must be >= 1, got 0"


def test_a_value_of_the_wrong_type_is_still_the_parsers_usage_error(workdir: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", RECIPE, "--model.init_args.lr", "fast"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("usage: jointembed [options] fit") and "'fast'" in err


def test_a_bug_keeps_its_traceback(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only errors in the user's input become one line: a TypeError raised while the task is built (here a stand-in
    for a bug) comes through jsonargparse's wrapper with its traceback, as any other exception type does."""
    import jointembed.tasks.contrastive as contrastive

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(contrastive, "create_loss", broken)
    with pytest.raises(ValueError) as error:  # jsonargparse's "Does not validate against any of the Union subtypes"
        main(["fit", "--config", RECIPE, *SHORT])
    assert isinstance(error.value.__cause__, TypeError)


def test_jointembed_traceback_shows_the_traceback_of_a_user_error(workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("JOINTEMBED_TRACEBACK", "1")
    with pytest.raises(ValueError) as error:  # as raised: the task's error inside jsonargparse's
        main(["fit", "--config", RECIPE, "--model.init_args.lr", "-1", *SHORT])
    assert str(error.value.__cause__) == "lr must be > 0, got -1.0"


@pytest.mark.slow
def test_a_diverging_fit_stops_naming_the_step_and_writes_no_results(workdir: Path, capsys) -> None:
    line = _error_line(capsys, "fit", "--config", RECIPE, "--model.init_args.lr", "1e9", *SHORT)
    assert re.match(r"jointembed fit: error: training diverged at epoch 0, step \d+ .*the loss is nan", line), line
    assert not list(workdir.glob("runs/**/test_metrics.json")) and not list(workdir.glob("runs/**/pretrained"))


def test_a_training_manifest_without_the_models_fields_stops_at_setup(workdir: Path, capsys) -> None:
    manifest = workdir / "other.jsonl"
    manifest.write_text("".join(json.dumps({"caption": f"c{i}", "label": i % 2}) + "\n" for i in range(8)))
    args = ["--data.init_args.train", str(manifest), "--data.init_args.val", "null", "--data.init_args.test", "null"]
    line = _error_line(capsys, "fit", "--config", RECIPE, *args, *SHORT)
    assert re.search(r"other\.jsonl: no training row has any of the model's fields .*caption", line), line
    assert not list(workdir.glob("runs/**/test_metrics.json"))


def test_an_unparsable_manifest_line_is_named_by_line_and_reason_not_echoed(workdir: Path, capsys) -> None:
    manifest = workdir / "train.jsonl"
    manifest.write_text('{"text": "seven", "ids": [7]}\n{"text": "my private note", "ids": [7\n')
    line = _error_line(capsys, "fit", "--config", RECIPE, "--data.init_args.train", str(manifest), *SHORT)
    assert re.fullmatch(r"jointembed fit: error: .*train\.jsonl, line 2: invalid JSON at column \d+: .+", line), line
    assert "private" not in line


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


def test_resuming_without_any_run_says_there_is_nothing_to_resume(workdir: Path, capsys) -> None:
    line = _error_line(capsys, "fit", "--config", RECIPE, "--ckpt_path", "last", *SHORT)
    assert "--ckpt_path last: no checkpoint under runs/digits_multimodal" in line and "nothing to resume" in line


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


def test_an_empty_training_manifest_stops_at_setup(workdir: Path, capsys) -> None:
    (workdir / "empty.jsonl").write_text("\n")
    line = _error_line(capsys, "fit", "--config", RECIPE, "--data.init_args.train", str(workdir / "empty.jsonl"))
    assert re.search(r"empty\.jsonl: the training split has no rows; nothing to train on$", line), line
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


def test_recommend_given_one_title_or_none_says_what_a_history_is(tmp_path: Path) -> None:
    """recommend("Star Wars") once looked up "item 'S'" (a string read as its letters); recommend(None) raised
    "object of type 'NoneType' has no len()"."""
    from jointembed.models.pretrained_recommender import PretrainedRecommender
    from jointembed.models.recommender import Recommender

    model = Recommender(3, embedding_dim=4, hidden_sizes=())
    folder = model.save_pretrained(tmp_path / "rec", ["a", "b", "c"], ["Star Wars", "Alien", "Heat"])
    recommender = PretrainedRecommender.from_pretrained(folder)
    with pytest.raises(TypeError, match=r"got the string 'Star Wars': pass \['Star Wars'\] for a history of that one"):
        recommender.recommend("Star Wars", k=1)
    with pytest.raises(TypeError, match=r"must be a list of item keys or titles .* got NoneType None"):
        recommender.recommend(None, k=1)
    assert [item.title for item in recommender.recommend(["Star Wars"], k=2)] in (["Alien", "Heat"], ["Heat", "Alien"])
