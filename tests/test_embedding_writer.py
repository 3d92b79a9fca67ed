"""The prediction writer: shards written as the batches come, read back sorted by row, and every way a shard folder
can be wrong named; then ``jointembed predict`` end to end, in one process and in two (DDP on CPU)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from jointembed.embedding_writer import EmbeddingWriter, outputs_with_rows, read_predictions
from jointembed.errors import PredictionFormatError

REPO = Path(__file__).resolve().parents[1]


class _Rows(Dataset):
    """Example ``i`` is ``(row, x)``: manifest-like rows ``10 + 3i`` (or given ones) and a ``(4,)`` vector."""

    def __init__(self, count: int, rows: list[int] | None = None) -> None:
        self.rows = rows if rows is not None else [10 + 3 * i for i in range(count)]
        self.x = torch.randn(count, 4, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return self.rows[i], self.x[i]


class _Echo(L.LightningModule):
    """Predicts in one of the layouts the writer reads; records how many shards exist at each step."""

    def __init__(self, layout: str, folder: Path | None = None) -> None:
        super().__init__()
        self.layout, self.folder, self.shards_seen = layout, folder, []

    def predict_step(self, batch: Any, batch_idx: int) -> Any:
        if self.folder is not None:
            self.shards_seen.append(len(list(self.folder.glob("*.safetensors"))))
        rows, x = batch
        if self.layout == "joint":  # field "a": every example; field "b": those with an even row
            even = rows % 2 == 0
            fields = {"a": {"rows": rows, "vectors": x}, "b": {"rows": rows[even], "vectors": 2 * x[even]}}
            return {"rows": rows, "fields": {k: v for k, v in fields.items() if len(v["rows"])}}
        if self.layout == "tensor":
            return x.sum(dim=1)
        return {"ids": x.argsort(dim=1), "scores": x}


def _predict(module: L.LightningModule, data: Dataset, folder: Path, batch_size: int = 3, **writer: Any) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EmbeddingWriter(str(folder), **writer)],
    )
    assert trainer.predict(module, DataLoader(data, batch_size=batch_size), return_predictions=False) is None


def test_joint_outputs_are_written_in_shards_as_they_come_and_read_back_by_row(tmp_path: Path) -> None:
    data, folder = _Rows(13), tmp_path / "out"
    module = _Echo("joint", folder)
    _predict(module, data, folder, rows_per_shard=4)  # batches of 3: a shard every 2 batches, the rest at the end
    assert module.shards_seen == [0, 0, 1, 1, 2]  # written during the run, not kept until its end
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["dl0-rank00000-index.json"] + [f"dl0-rank00000-shard{i:06d}.safetensors" for i in range(3)]
    index = json.loads((folder / "dl0-rank00000-index.json").read_text())
    assert [s["examples"] for s in index["shards"]] == [6, 6, 1] and index["world_size"] == 1
    out = read_predictions(folder)
    assert set(out) == {"a", "b"}
    assert out["a"].rows.tolist() == data.rows and out["a"].rows.dtype == torch.long
    torch.testing.assert_close(out["a"].values, data.x)
    even = [i for i, row in enumerate(data.rows) if row % 2 == 0]
    assert out["b"].rows.tolist() == [data.rows[i] for i in even]
    torch.testing.assert_close(out["b"].values, 2 * data.x[even])


def test_rows_come_back_sorted_whatever_the_order_written(tmp_path: Path) -> None:
    data = _Rows(5, rows=[40, 12, 31, 2, 18])
    _predict(_Echo("joint"), data, tmp_path, batch_size=2, rows_per_shard=1)
    out = read_predictions(tmp_path)["a"]
    assert out.rows.tolist() == [2, 12, 18, 31, 40]
    torch.testing.assert_close(out.values, data.x[[3, 1, 4, 2, 0]])


def test_other_tasks_outputs_are_matched_to_dataset_positions(tmp_path: Path) -> None:
    data = _Rows(7)
    _predict(_Echo("tensor"), data, tmp_path / "tensor")
    out = read_predictions(tmp_path / "tensor")
    assert list(out) == ["output"] and out["output"].rows.tolist() == list(range(7))  # batch_indices, 0-based
    torch.testing.assert_close(out["output"].values, data.x.sum(dim=1))
    _predict(_Echo("dict"), data, tmp_path / "dict")
    out = read_predictions(tmp_path / "dict")
    assert set(out) == {"ids", "scores"} and out["ids"].values.dtype == torch.long
    torch.testing.assert_close(out["scores"].values, data.x)
    with pytest.raises(TypeError, match="must be a tensor .*got list"):
        outputs_with_rows([torch.zeros(2)], [0, 1])
    with pytest.raises(ValueError, match="no 'rows' and Lightning gave no batch indices"):
        outputs_with_rows(torch.zeros(2), None)
    short = {"rows": torch.arange(3), "fields": {"a": {"rows": torch.arange(3), "vectors": torch.zeros(2, 4)}}}
    with pytest.raises(ValueError, match=r"field 'a': rows \(3,\) and values \(2, 4\) do not pair up"):
        outputs_with_rows(short, None)


def test_a_folder_with_predictions_is_refused_not_mixed(tmp_path: Path) -> None:
    _predict(_Echo("joint"), _Rows(4), tmp_path)
    with pytest.raises(FileExistsError, match=r"already holds predictions \(dl0-rank00000-index\.json"):
        _predict(_Echo("joint"), _Rows(4), tmp_path)


@pytest.fixture
def written(tmp_path: Path) -> Path:
    """A folder of three shards (rows 10, 13, ..., 46 of field ``a``)."""
    _predict(_Echo("joint"), _Rows(13), tmp_path, rows_per_shard=4)
    return tmp_path


def test_a_truncated_or_corrupt_shard_is_named(written: Path) -> None:
    shard = written / "dl0-rank00000-shard000001.safetensors"
    content = shard.read_bytes()
    shard.write_bytes(content[:-10])
    with pytest.raises(PredictionFormatError, match=r"shard000001\.safetensors: truncated or corrupt shard"):
        read_predictions(written)
    shard.write_bytes(b"\0" * len(content))
    with pytest.raises(PredictionFormatError, match=r"shard000001\.safetensors: truncated or corrupt shard"):
        read_predictions(written)


def test_a_row_written_twice_is_named_with_its_shards(tmp_path: Path) -> None:
    _predict(_Echo("joint"), _Rows(6, rows=[1, 2, 3, 4, 2, 6]), tmp_path, rows_per_shard=3)
    with pytest.raises(PredictionFormatError, match=r"row 2 of output 'a' comes in .*shard000000\.safetensors and in "):
        read_predictions(tmp_path)


def test_a_rank_that_did_not_finish_and_stray_or_missing_shards_are_named(written: Path) -> None:
    index_path = written / "dl0-rank00000-index.json"
    index = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({**index, "world_size": 2}))
    with pytest.raises(PredictionFormatError, match=r"no index of rank\(s\) \[1\] of 2: those processes did not"):
        read_predictions(written)
    index_path.write_text(json.dumps(index))
    shutil.copy(written / "dl0-rank00000-shard000000.safetensors", written / "dl0-rank00001-shard000000.safetensors")
    with pytest.raises(PredictionFormatError, match=r"rank00001-shard000000\.safetensors: a shard no index lists"):
        read_predictions(written)
    (written / "dl0-rank00001-shard000000.safetensors").unlink()
    (written / "dl0-rank00000-shard000002.safetensors").unlink()
    with pytest.raises(PredictionFormatError, match=r"shard000002\.safetensors: listed in its rank's index but"):
        read_predictions(written)
    index_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no dl0-rank\*-index\.json: not a folder of predictions"):
        read_predictions(written)


# ----- jointembed predict, end to end -------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny ids + text model trained for one epoch through the CLI, and a manifest to embed (no labels, 11 rows:
    not a multiple of 2 processes x 2 per batch; some rows lack a field, its IDs are frequent in another order
    than in training, so a vocabulary fitted on it would look them up differently)."""
    from jointembed.cli import main

    root = tmp_path_factory.mktemp("tiny_run")
    words = ["red", "green", "blue", "amber"]
    train = [
        {"ids": [words[i % 4]] * (1 + i % 3), "text": f"the colour {words[i % 4]}", "label": i % 4} for i in range(16)
    ]
    _write_jsonl(root / "train.jsonl", train)
    predict = [
        {"ids": ["amber", "amber", "teal"][: 1 + i % 3], "text": f"colour {words[3 * i % 4]} {i}"} for i in range(11)
    ]
    for i in (2, 7):
        del predict[i]["ids"]
    del predict[5]["text"]
    _write_jsonl(root / "predict.jsonl", predict)
    encoders = {
        "ids": {"class_path": "jointembed.encoders.ids.IdEncoder",
                "init_args": {"num_embeddings": None, "embedding_dim": 8, "hidden_sizes": [], "output_dim": 8}},
        "text": {"class_path": "jointembed.encoders.text.ScratchTextEncoder",
                 "init_args": {"num_buckets": 64, "embedding_dim": 8, "architecture": "bag", "output_dim": 8}},
    }  # fmt: skip
    recipe = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_epochs": 1, "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(root / "runs"), "name": "tiny"}},
        },
        "model": {"class_path": "jointembed.tasks.contrastive.ContrastiveTask",
                  "init_args": {"lr": 0.05, "model": {"class_path": "jointembed.models.joint.JointEmbeddingModel",
                                                      "init_args": {"encoders": encoders}}}},
        "data": {"class_path": "jointembed.data.multimodal.MultimodalDataModule",
                 "init_args": {"train": str(root / "train.jsonl"), "batch_size": 2}},
    }  # fmt: skip
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["fit", "--config", str(root / "recipe.yaml")]) == 0
    [checkpoint] = (root / "runs" / "tiny" / "version_0" / "checkpoints").glob("*.ckpt")
    return {"root": root, "recipe": root / "recipe.yaml", "checkpoint": checkpoint, "predict": root / "predict.jsonl"}


def _check_against_embed(folder: Path, checkpoint: Path, manifest: Path) -> None:
    """Every manifest row with a field is read back once for that field, with the vector ``embed`` gives it."""
    from jointembed.models.joint import JointEmbeddingModel

    model = JointEmbeddingModel.from_pretrained(checkpoint)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    out = read_predictions(folder)
    assert set(out) == {"ids", "text"}
    for field, got in out.items():
        numbers = [i + 1 for i, row in enumerate(rows) if field in row]  # JSONL rows are 1-based line numbers
        assert got.rows.tolist() == numbers, field
        expected = model.embed(**{field: [rows[n - 1][field] for n in numbers]})
        torch.testing.assert_close(got.values, expected, rtol=0, atol=1e-5)


def test_cli_predict_uses_a_configured_writer_and_keeps_no_predictions(
    tiny_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from jointembed.cli import main

    seen: dict[str, Any] = {}
    original = L.Trainer.predict

    @functools.wraps(original)  # LightningCLI reads the subcommand's options from the signature
    def spy(self: L.Trainer, *args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs, writers=[c for c in self.callbacks if isinstance(c, EmbeddingWriter)])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "predict", spy)
    folder = tmp_path / "mine"
    args = ["predict", "--config", str(tiny_run["recipe"]), "--ckpt_path", str(tiny_run["checkpoint"]),
            "--data.init_args.predict", str(tiny_run["predict"]),
            "--trainer.callbacks+=jointembed.embedding_writer.EmbeddingWriter",
            "--trainer.callbacks.output_dir", str(folder), "--trainer.callbacks.rows_per_shard", "4"]  # fmt: skip
    assert main(args) == 0
    assert seen["return_predictions"] is False and len(seen["writers"]) == 1  # the configured one, no default
    assert f"predictions written to {folder}" in capsys.readouterr().out
    assert len(list(folder.glob("*.safetensors"))) == 3  # 11 rows, batches of 2, a shard from 4 rows on
    _check_against_embed(folder, tiny_run["checkpoint"], tiny_run["predict"])


@pytest.mark.slow
def test_cli_predict_on_two_processes_writes_every_row_once(tiny_run: dict[str, Path]) -> None:
    """``jointembed predict`` under DDP (2 CPU processes, gloo) with the default writer, on a predict-only data
    module: the ID vocabulary comes from the checkpoint, every row is written by exactly one process."""
    root = tiny_run["root"]
    args = [sys.executable, "-m", "jointembed", "predict", "--config", str(tiny_run["recipe"]),
            "--ckpt_path", str(tiny_run["checkpoint"]), "--data.init_args.train", "null",
            "--data.init_args.predict", str(tiny_run["predict"]), "--trainer.accelerator", "cpu",
            "--trainer.devices", "2", "--trainer.strategy", "ddp"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        args, cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    versions = sorted((root / "runs" / "tiny").glob("version_*/predictions"))
    assert len(versions) == 1, versions  # both processes agreed on the run's folder
    folder = versions[0]
    assert f"predictions written to {folder}" in done.stdout
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["dl0-rank00000-index.json", "dl0-rank00000-shard000000.safetensors",
                     "dl0-rank00001-index.json", "dl0-rank00001-shard000000.safetensors"]  # fmt: skip
    assert json.loads((folder / "dl0-rank00001-index.json").read_text())["world_size"] == 2
    _check_against_embed(folder, tiny_run["checkpoint"], tiny_run["predict"])
    print(f"2-process predict: {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_cli_evaluation_with_a_checkpoint_uses_its_vocabulary(
    tiny_run: dict[str, Path], subcommand: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``jointembed test|validate --ckpt_path`` on data without the training split looks IDs up with the
    checkpoint's vocabulary, not one fitted anew on the evaluation rows (whose IDs are frequent in another order)."""
    from jointembed.cli import main
    from jointembed.models.joint import JointEmbeddingModel

    seen: dict[str, Any] = {}
    original = getattr(L.Trainer, subcommand)

    @functools.wraps(original)
    def spy(self: L.Trainer, model: Any = None, *args: Any, **kwargs: Any) -> Any:
        seen["ids"] = model.model.inputs["ids"].get_config()
        return {}

    monkeypatch.setattr(L.Trainer, subcommand, spy)
    rows = [{"ids": ["amber", "amber", "teal"][: 1 + i % 3], "text": f"colour {i}", "label": i % 2} for i in range(6)]
    labelled = _write_jsonl(tiny_run["root"] / f"{subcommand}.jsonl", rows)
    split = "test" if subcommand == "test" else "val"
    args = [subcommand, "--config", str(tiny_run["recipe"]), "--ckpt_path", str(tiny_run["checkpoint"]),
            "--data.init_args.train", "null", f"--data.init_args.{split}", str(labelled)]  # fmt: skip
    assert main(args) == 0
    trained = JointEmbeddingModel.from_pretrained(tiny_run["checkpoint"]).inputs["ids"].get_config()
    assert seen["ids"] == trained
