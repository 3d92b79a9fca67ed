"""Checkpoint files: a save interrupted by a full disk leaves the previous checkpoint whole, a load reads local
files weights-only, and ``--ckpt_path last`` resumes from the newest checkpoint that loads, naming the ones it
skipped."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from jointembed.checkpoint_io import SafeCheckpointIO, newest_loadable, use_safe_checkpoint_io
from jointembed.cli import main
from jointembed.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]


def _state(value: float) -> dict:
    return {"state_dict": {"w": torch.full((3,), value)}, "epoch": int(value)}


def test_a_save_interrupted_by_a_full_disk_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io, path = SafeCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint(_state(1.0), path)
    real_save = torch.save

    def full_disk(obj: object, f: object, *args: object, **kwargs: object) -> None:
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # part of it reached the disk, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint(_state(2.0), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.full((3,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["last.ckpt"]


def test_a_load_is_weights_only_and_local(tmp_path: Path) -> None:
    io = SafeCheckpointIO()
    torch.save({"state_dict": {}, "obj": Path("x")}, tmp_path / "pickled.ckpt")  # a Path needs unpickling
    with pytest.raises(CheckpointError, match=r"pickled\.ckpt: cannot read the checkpoint safely"):
        io.load_checkpoint(tmp_path / "pickled.ckpt", weights_only=False)
    with pytest.raises(CheckpointError, match=r"only a local checkpoint file"):
        io.load_checkpoint("https://example.org/x.ckpt")


def test_every_run_uses_it_unless_the_recipe_chose_its_own_io() -> None:
    class Strategy:
        _checkpoint_io = None
        checkpoint_io = None

    class Trainer:
        strategy = Strategy()

    trainer = Trainer()
    use_safe_checkpoint_io(trainer)
    assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)

    class Own(TorchCheckpointIO):
        pass

    trainer.strategy._checkpoint_io = trainer.strategy.checkpoint_io = Own()
    use_safe_checkpoint_io(trainer)
    assert type(trainer.strategy.checkpoint_io) is Own


def test_last_is_the_newest_checkpoint_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    older, newest = tmp_path / "epoch=0-step=8.ckpt", tmp_path / "last.ckpt"
    torch.save(_state(1.0), older)
    torch.save(_state(2.0), newest)
    os.utime(older, ns=(1_000_000_000, 1_000_000_000))
    assert newest_loadable([older, newest], "the runs") == newest
    newest.write_bytes(newest.read_bytes()[:200])  # truncated by a full disk
    assert newest_loadable([older, newest], "the runs") == older
    err = capsys.readouterr().err
    assert "skipped" in err and "last.ckpt" in err and f"using {older}" in err
    older.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no checkpoint under the runs reads: ") as refused:
        newest_loadable([older, newest], "the runs")
    assert "last.ckpt" in str(refused.value) and "step=8.ckpt" in str(refused.value)


def _predict(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subcommand: str = "predict") -> int:
    (tmp_path / "datasets").symlink_to(REPO / "datasets")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["jointembed"])
    recipe = str(REPO / "recipes" / "digits_multimodal.yaml")
    return main([subcommand, "--config", recipe, "--ckpt_path", str(checkpoint)])


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "ran"))


def test_predict_with_a_pickled_checkpoint_is_one_line_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, tmp_path / "evil.ckpt")
    assert _predict(tmp_path / "evil.ckpt", tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("jointembed predict: error: ") and "evil.ckpt: cannot read the checkpoint safely" in err[-1]
    )
    assert not marker.exists()


def test_a_checkpoint_naming_a_foreign_class_is_refused_before_lightning_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    (tmp_path / "evil_task.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    hparams = {"lr": 0.01, "_class_path": "evil_task.Task", "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, tmp_path / "foreign.ckpt")
    assert _predict(tmp_path / "foreign.ckpt", tmp_path, monkeypatch, "test") == 1
    err = capsys.readouterr().err
    assert "field 'hyper_parameters._class_path' is 'evil_task.Task'" in err
    assert not marker.exists() and "evil_task" not in sys.modules


def test_ckpt_path_may_not_be_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _predict(Path("https:/example.org/model.ckpt"), tmp_path, monkeypatch) == 1  # Path folds the //
    assert "no such checkpoint file" in capsys.readouterr().err


@pytest.mark.slow
def test_a_fit_resumes_from_the_checkpoint_beside_a_truncated_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk during fit once left a truncated last.ckpt under its real name and ``--ckpt_path last``
    crashed although a valid checkpoint lay beside it (5 s of training)."""
    (tmp_path / "datasets").symlink_to(REPO / "datasets")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["jointembed"])
    recipe = str(REPO / "recipes" / "digits_multimodal.yaml")
    short = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches",
             "1", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert main(["fit", "--config", recipe, "--trainer.max_epochs", "1", *short]) == 0
    checkpoints = tmp_path / "runs" / "digits_multimodal" / "version_0" / "checkpoints"
    last = checkpoints / "last.ckpt"
    beside = [p for p in checkpoints.iterdir() if p.name != "last.ckpt"]
    assert len(beside) == 1 and not list(checkpoints.glob(".*")), sorted(p.name for p in checkpoints.iterdir())
    last.write_bytes(last.read_bytes()[:1000])
    capsys.readouterr()
    assert main(["fit", "--config", recipe, "--trainer.max_epochs", "2", "--ckpt_path", "last", *short]) == 0
    err = capsys.readouterr().err
    last, beside = last.relative_to(tmp_path), beside[0].relative_to(tmp_path)
    assert f"skipped {last}: cannot read the checkpoint safely" in err and f"using {beside}" in err
    # the resumed run went on to write a whole last checkpoint (Lightning names it last-v1.ckpt beside the
    # broken one, which is the user's to remove), and that is what the next 'last' takes
    resumed = newest_loadable((tmp_path / checkpoints).glob("*.ckpt"), "the run")
    assert resumed.name.startswith("last") and torch.load(resumed, weights_only=True)["epoch"] == 1
