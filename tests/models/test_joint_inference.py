"""A joint model that leaves its run: raw-input embedding through the model's own units (equal to the data
module's path), zero-shot classification with saved prompts, self-contained folders (tokenizer copied in),
checkpoint loading, and named errors for bad folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import jointembed.pretrained as pretrained
from jointembed.data.media import BadMediaError
from jointembed.data.multimodal import MultimodalDataModule
from jointembed.encoders.text import HFTextEncoder, tiny_wordpiece_tokenizer
from jointembed.errors import CheckpointError
from jointembed.modalities import AudioModality, ImageModality
from jointembed.models.joint import JointEmbeddingModel
from jointembed.registry import create_encoder, get_encoder_class
from jointembed.tasks.contrastive import ContrastiveTask

DIGITS = Path(__file__).resolve().parents[2] / "datasets" / "digits_four_ways"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TYPES = {"ids": "ids", "text": "scratch_text", "image": "cnn_image", "audio": "audio_cnn"}

pytestmark = pytest.mark.skipif(not (DIGITS / "train.jsonl").is_file(), reason=f"{DIGITS} is not present")


def _model(num_embeddings: int | None = None) -> JointEmbeddingModel:
    torch.manual_seed(0)
    encoders = {}
    for field, name in TYPES.items():
        args = get_encoder_class(name).tiny_config()
        if name == "ids":
            args = {**args, "num_embeddings": num_embeddings}
        encoders[field] = create_encoder(name, **args)
    return JointEmbeddingModel(encoders, {"image": ImageModality(image_size=16), "audio": AudioModality()})


def _data(model: JointEmbeddingModel) -> MultimodalDataModule:
    data = MultimodalDataModule(
        train=str(DIGITS / "train.jsonl"), val=str(DIGITS / "val.jsonl"), label_names=NAMES, batch_size=8
    )
    data.setup()
    data.bind(model.inputs)
    model.bind_inputs()
    return data


def test_units_settings_come_from_one_place() -> None:
    model = _model()
    assert model.inputs["audio"].sample_rate == model.encoders["audio"].sample_rate == 8000
    assert not model.encoders["ids"].sized
    _data(model)
    assert model.inputs["ids"].num_ids == 10 and model.encoders["ids"].embedding.num_embeddings == 10
    assert model.get_config()["fields"]["ids"]["encoder"]["config"]["num_embeddings"] == 10
    with pytest.raises(ValueError, match="encoder expects 8000 Hz"):
        JointEmbeddingModel({"a": create_encoder("audio_cnn", **TINY_AUDIO), "t": _model().encoders["text"]},
                            {"a": AudioModality(sample_rate=16000)})  # fmt: skip


TINY_AUDIO = get_encoder_class("audio_cnn").tiny_config()


def test_embedding_raw_files_equals_the_data_module_path() -> None:
    model = _model()
    data = _data(model)
    dataset = data.datasets["val"]
    batch = next(iter(data.val_dataloader()))
    model.eval()
    with torch.no_grad():
        from_batches = model(batch)
    rows = [dataset.examples[i] for i in range(len(batch["row"]))]
    for field in ("ids", "text", "image", "audio"):
        values = [ex.values[field] for ex in rows if field in ex.values]
        raw = [str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for v in values]
        torch.testing.assert_close(model.embed(**{field: raw}, batch_size=3), from_batches[field], atol=1e-5, rtol=0)
    assert model.embed(text=["seven"], output="numpy").shape == (1, 8)


def test_audio_of_any_rate_and_channel_count_and_images_of_any_kind(tmp_path: Path) -> None:
    model = _model(10).eval()
    wave, rate = soundfile.read(DIGITS / "audio" / "7_jackson_0.wav", dtype="float32")
    assert rate == 8000
    up = torch.nn.functional.interpolate(torch.from_numpy(wave)[None, None], scale_factor=2, mode="linear")[0, 0]
    soundfile.write(tmp_path / "stereo16k.wav", np.stack([up.numpy(), up.numpy()], axis=1), 16000)
    vectors = model.embed(audio=[str(DIGITS / "audio" / "7_jackson_0.wav"), tmp_path / "stereo16k.wav", (wave, 8000)])
    assert vectors.shape == (3, 8) and torch.allclose(vectors.norm(dim=1), torch.ones(3))
    assert float(vectors[0] @ vectors[2]) == pytest.approx(1.0, abs=1e-5)  # the file and its samples
    assert float(vectors[0] @ vectors[1]) > 0.9  # resampled from 16 kHz stereo
    png = DIGITS / "images" / "7_0007.png"
    pixels = np.array(Image.open(png).convert("RGB"))
    images = model.embed(image=[str(png), png.read_bytes(), Image.open(png), pixels, pixels.astype(np.float32) / 255])
    torch.testing.assert_close(images, images[:1].expand(5, -1), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match=r"\(samples, rate\)"):
        model.embed(audio=[wave])
    with pytest.raises(BadMediaError, match=r"nothere\.wav: no such file"):
        model.embed(audio=[tmp_path / "nothere.wav"])
    with pytest.raises(ValueError, match=r"ids\[1\]: ID 12 is outside"):
        model.inputs["ids"].fit([[0], [9]])
        model.embed(ids=[[3], [12]])
    with pytest.raises(KeyError, match="no field 'video'"):
        model.embed(video=["x.mp4"])
    with pytest.raises(TypeError, match="a list of values"):
        model.embed(text="seven")


def test_classify_with_saved_prompts_and_given_labels() -> None:
    model = _model(10).eval()
    model.set_zero_shot(NAMES, [[f"the number {name}"] for name in NAMES], "text")
    result = model.classify(text=["the number seven", "the number three"])
    assert result.labels == ["seven", "three"] and result.scores.shape == (2, 10)  # each text is its own prompt
    torch.testing.assert_close(result.scores.max(dim=1).values, torch.ones(2))
    given = model.classify(text=["seven"], labels=["three", "seven"])
    assert given.labels == ["seven"] and given.indices.tolist() == [1]
    model.zero_shot = None
    with pytest.raises(ValueError, match="pass labels"):
        model.classify(text=["seven"])


def test_folder_is_self_contained_and_loads_in_eval_mode(tmp_path: Path) -> None:
    tokenizer = tiny_wordpiece_tokenizer(["seven", "the number seven", "three"], folder=str(tmp_path / "tok"))
    text = HFTextEncoder(**{**HFTextEncoder.tiny_config(), "tokenizer_name_or_path": tokenizer})
    model = _model(10)
    model = JointEmbeddingModel({"text": text, "audio": model.encoders["audio"]})
    model.set_zero_shot(["three", "seven"], [["three"], ["seven"]], "text")
    model.save_pretrained(tmp_path / "run" / "pretrained")
    shutil.rmtree(tmp_path / "tok")  # the tokenizer was copied into the folder
    shutil.move(tmp_path / "run" / "pretrained", tmp_path / "elsewhere")
    config = json.loads((tmp_path / "elsewhere" / "config.json").read_text())
    assert str(tmp_path) not in json.dumps(config)  # no path outside the folder
    loaded = JointEmbeddingModel.from_pretrained(tmp_path / "elsewhere")
    assert not loaded.training and all(not m.training for m in loaded.modules())
    model.eval()
    torch.testing.assert_close(loaded.embed(text=["the number seven"]), model.embed(text=["the number seven"]))
    assert loaded.classify(text=["seven"]).labels == model.classify(text=["seven"]).labels
    assert loaded.zero_shot == model.zero_shot


def test_interrupted_save_keeps_the_previous_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(10).eval()
    model.save_pretrained(tmp_path / "m")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "m").rglob("*") if p.is_file()}

    def crash(state: dict, path: str, metadata: dict | None = None) -> None:
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(tmp_path / "m")
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind
    with pytest.raises(FileExistsError, match="other files"):
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "mine.txt").write_text("keep me")
        monkeypatch.undo()
        model.save_pretrained(tmp_path / "notes")


def test_bad_folders_name_the_file_and_field(tmp_path: Path) -> None:
    _model(10).save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read safetensors"):
        JointEmbeddingModel.from_pretrained(tmp_path / "m")
    weights.write_bytes(data)
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["fields"]["audio"]["input"]["type"] = "smell"
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: cannot build field 'audio'.*unknown modality 'smell'"):
        JointEmbeddingModel.from_pretrained(tmp_path / "m")
    config["fields"]["audio"]["input"] = {"type": "audio", "config": {"sample_rate": 16000}}
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="16000 Hz but its encoder expects 8000 Hz"):
        JointEmbeddingModel.from_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no such file or folder"):
        JointEmbeddingModel.from_pretrained(tmp_path / "missing")


def test_checkpoint_of_a_fit_loads_as_model_and_as_task(tmp_path: Path) -> None:
    model = _model()
    task = ContrastiveTask(model, lr=0.01, class_prompts=["{}"])
    data = MultimodalDataModule(
        train=str(DIGITS / "train.jsonl"), val=str(DIGITS / "val.jsonl"), label_names=NAMES, batch_size=8
    )
    trainer = L.Trainer(
        max_steps=2, limit_val_batches=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(task, datamodule=data)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    from_ckpt = JointEmbeddingModel.from_pretrained(tmp_path / "last.ckpt")
    restored = ContrastiveTask.load_from_checkpoint(tmp_path / "last.ckpt")  # no model rebuilt by hand
    model.eval()
    texts = ["seven", "a spoken three"]
    for other in (from_ckpt, restored.model.eval()):
        torch.testing.assert_close(other.embed(text=texts), model.embed(text=texts))
        torch.testing.assert_close(other.embed(ids=[[7], [3]]), model.embed(ids=[[7], [3]]))
    assert from_ckpt.zero_shot is not None and from_ckpt.zero_shot.label_names == NAMES
    assert not from_ckpt.training


def test_two_fields_can_share_one_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    text = create_encoder("scratch_text", **get_encoder_class("scratch_text").tiny_config())
    image = create_encoder("cnn_image", **get_encoder_class("cnn_image").tiny_config())
    model = JointEmbeddingModel({"title": text, "poster": image}, share={"plot": "title"}).eval()
    assert model.fields == ["title", "poster", "plot"] and model.encoders["plot"] is model.encoders["title"]
    assert model.inputs["plot"].registry_name == "text"
    torch.testing.assert_close(model.embed(plot=["a heist in LA"]), model.embed(title=["a heist in LA"]))
    model.save_pretrained(tmp_path / "m")
    loaded = JointEmbeddingModel.from_pretrained(tmp_path / "m")
    assert loaded.encoders["plot"] is loaded.encoders["title"]
    torch.testing.assert_close(loaded.embed(plot=["a heist"]), model.embed(plot=["a heist"]))
    with pytest.raises(ValueError, match="'plot' uses 'nope'"):
        JointEmbeddingModel({"title": text, "poster": image}, share={"plot": "nope"})


def test_hub_repo_id_loads_offline_from_the_cache(tmp_path: Path) -> None:
    """A repo id resolves through huggingface_hub; here from a local cache laid out as the hub lays it out."""
    model = _model(10).eval()
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--jointembed--digits-tiny"
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        loaded = JointEmbeddingModel.from_pretrained("jointembed/digits-tiny", cache_dir=tmp_path / "cache")
        torch.testing.assert_close(loaded.embed(text=["seven"]), model.embed(text=["seven"]))
        with pytest.raises(CheckpointError, match=r"jointembed/absent: not a local path, and the local Hugging Face"):
            JointEmbeddingModel.from_pretrained("jointembed/absent", cache_dir=tmp_path / "cache")


def test_decoding_in_dataloader_workers_gives_the_same_vectors() -> None:
    model = _model(10).eval()
    files = sorted(str(p) for p in (DIGITS / "audio").glob("3_*_1*.wav"))[:6]
    torch.testing.assert_close(model.embed(audio=files, num_workers=2, batch_size=4), model.embed(audio=files))


def test_saved_folder_has_ordinary_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        _model(10).save_pretrained(tmp_path / "m")
    finally:
        os.umask(umask)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_killed_save_leaves_nothing_behind_at_the_next_save(tmp_path: Path) -> None:
    from jointembed.io import SAVE_MARKER

    ours = tmp_path / ".m.jointembed-1@host.abc123.tmp"  # what a save killed mid-way (SIGKILL) leaves: marked ours
    (ours / "folder").mkdir(parents=True)
    (ours / "folder" / "model.safetensors").write_bytes(b"half")
    (ours / SAVE_MARKER).write_text('{"by": "jointembed", "folder": "m", "purpose": "new"}')
    (tmp_path / ".m.def456.old").mkdir()  # named like a leftover but unmarked: the user's, left alone
    (tmp_path / ".mine.txt").write_text("not ours")
    _model(10).save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.def456.old", ".mine.txt", "m"]
