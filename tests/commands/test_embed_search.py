"""``jointembed embed`` and ``jointembed search`` on a tiny randomly initialised model over the shipped digits:
an index of every field, queries of each kind, vector files, unreadable files skipped or named, and the errors
a user meets (a truncated index, another model's index, a query type the model lacks, an empty index)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jointembed.cli import main
from jointembed.data.multimodal import MultimodalDataModule
from jointembed.modalities import AudioModality, ImageModality
from jointembed.models.joint import JointEmbeddingModel
from jointembed.registry import create_encoder, get_encoder_class
from jointembed.search import EmbeddingIndex

DIGITS = Path(__file__).resolve().parents[2] / "datasets" / "digits_four_ways"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
AUDIO_7 = str(DIGITS / "audio" / "7_george_3.wav")


def _tiny(tmp: Path, types: dict[str, str], seed: int = 0) -> str:
    torch.manual_seed(seed)
    encoders = {field: create_encoder(name, **get_encoder_class(name).tiny_config()) for field, name in types.items()}
    inputs = {"image": ImageModality(image_size=16)} if "image" in types else {}
    if "audio" in types:
        inputs["audio"] = AudioModality()
    model = JointEmbeddingModel(encoders, inputs)
    data = MultimodalDataModule(train=str(DIGITS / "train.jsonl"), label_names=NAMES, batch_size=8)
    data.setup()
    data.bind(model.inputs)
    model.bind_inputs()
    model.set_zero_shot(NAMES, [[name] for name in NAMES], "text")
    return str(model.save_pretrained(tmp))


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    types = {"ids": "ids", "text": "scratch_text", "image": "cnn_image", "audio": "audio_cnn"}
    return _tiny(tmp_path_factory.mktemp("model") / "pretrained", types)


@pytest.fixture(scope="module")
def index_folder(model_folder: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = str(tmp_path_factory.mktemp("index") / "digits")
    assert main(["embed", "--model", model_folder, "--manifest", str(DIGITS / "test.jsonl"), "--index", folder]) == 0
    return folder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_manifest_becomes_one_index_of_every_field(index_folder: str) -> None:
    index = EmbeddingIndex.load(index_folder)
    modalities = index.modalities()
    assert {m: modalities.count(m) for m in set(modalities)} == {"ids": 10, "text": 78, "image": 250, "audio": 250}
    vector, modality, meta = index.get("audio:audio/7_george_3.wav")
    assert modality == "audio" and meta["label_name"] == "seven" and meta["group"] == "george"
    model = JointEmbeddingModel.from_pretrained(index.model["name"])
    assert np.allclose(vector, model.embed(audio=[AUDIO_7], output="numpy")[0], atol=1e-5)


def test_search_lists_each_modality_other_ones_first(
    model_folder: str, index_folder: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys, "search", "--model", model_folder, "--index", index_folder, "--audio", AUDIO_7, "-k", "2"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[:4] == ["rank", "key", "modality", "score"]
    modalities = [line.split()[2] for line in lines[2:]]
    assert len(modalities) == 8 and modalities[-2:] == ["audio", "audio"] and set(modalities) == {
        "ids", "text", "image", "audio"}  # fmt: skip
    assert lines[-2].split()[1] == "audio:audio/7_george_3.wav" and lines[-2].split()[3] == "1.000"


def test_search_json_filters_and_keys(model_folder: str, index_folder: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["search", "--model", model_folder, "--index", index_folder, "--json"]
    code, out, _ = _run(capsys, *base, "--text", "seven", "--modality", "image", "--where", "label=3", "-k", "4")
    results = json.loads(out)["results"]
    assert code == 0 and len(results) == 4
    assert all(r["modality"] == "image" and r["metadata"]["label"] == 3 for r in results)
    assert [r["rank"] for r in results] == [1, 2, 3, 4] and results[0]["score"] >= results[-1]["score"]
    code, out, _ = _run(capsys, *base, "--key", "image:images/7_0698.png", "--mixed", "-k", "3")
    results = json.loads(out)["results"]
    assert results[0]["key"] == "image:images/7_0698.png" and results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    code, _, err = _run(capsys, *base, "--key", "image:not/there.png")
    assert code == 1 and "the index has no entry 'image:not/there.png'" in err
    code, out, _ = _run(capsys, *base, "--ids", "7", "--modality", "ids", "-k", "1")
    assert json.loads(out)["results"][0]["key"] == "ids:[7]"


def test_files_and_texts_into_vector_files_with_unreadable_files(
    model_folder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes((DIGITS / "audio" / "7_george_3.wav").read_bytes()[:30])
    image = str(DIGITS / "images" / "7_0007.png")
    argv = ["embed", "--model", model_folder, "--out", str(tmp_path / "vec"), AUDIO_7, str(broken), image]
    code, _, err = _run(capsys, *argv)
    assert code == 1 and "broken.wav" in err and not (tmp_path / "vec.npy").exists()
    code, out, err = _run(capsys, *argv, "--text", "seven", "--on-bad-file", "skip")
    assert code == 0 and "embedded 3 (audio 1, image 1, text 1)" in out
    assert "skipped 1 unreadable file(s)" in err and "broken.wav" in err
    vectors = np.load(tmp_path / "vec.npy")
    rows = [json.loads(line) for line in (tmp_path / "vec.jsonl").read_text().splitlines()]
    assert vectors.shape == (3, 8) and [r["key"] for r in rows] == [AUDIO_7, image, "text:seven"]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_errors_a_user_meets(
    model_folder: str, index_folder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a query type the model lacks
    no_audio = _tiny(tmp_path / "text_ids", {"ids": "ids", "text": "scratch_text"})
    code, _, err = _run(capsys, "search", "--model", no_audio, "--index", index_folder, "--audio", AUDIO_7)
    assert code == 1 and "holds vectors of model" in err  # first: the index is not this model's
    other_index = str(tmp_path / "other")
    assert main(["embed", "--model", no_audio, "--index", other_index, "--text", "seven", "eight"]) == 0
    code, _, err = _run(capsys, "search", "--model", no_audio, "--index", other_index, "--audio", AUDIO_7)
    assert code == 1 and "the model has no audio field, so it cannot embed audio queries" in err
    # adding another model's vectors to an index
    code, _, err = _run(capsys, "embed", "--model", model_folder, "--index", other_index, "--text", "nine")
    assert code == 1 and "not comparable" in err
    # an empty index
    empty = str(tmp_path / "empty")
    model = JointEmbeddingModel.from_pretrained(model_folder)
    EmbeddingIndex.for_model(model, model_folder).save(empty)
    code, _, err = _run(capsys, "search", "--model", model_folder, "--index", empty, "--text", "seven")
    assert code == 1 and f"index {empty} is empty" in err
    # a truncated index
    broken = tmp_path / "truncated"
    EmbeddingIndex.load(index_folder).save(broken)
    entries = broken / "entries.jsonl"
    entries.write_bytes(entries.read_bytes()[:100])
    code, _, err = _run(capsys, "search", "--model", model_folder, "--index", str(broken), "--text", "seven")
    assert code == 1 and "entries.jsonl is truncated or altered" in err
    # no output chosen, a missing model folder
    code, _, err = _run(capsys, "embed", "--model", model_folder, "--text", "seven")
    assert code == 1 and "give exactly one of --index DIR or --out PREFIX" in err
    code, _, err = _run(capsys, "search", "--model", str(tmp_path / "nope"), "--index", index_folder, "--text", "a")
    assert code == 1 and "nope" in err


def test_a_killed_embed_leaves_the_index_whole(
    model_folder: str, index_folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = str(tmp_path / "copy")
    EmbeddingIndex.load(index_folder).save(copy)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("jointembed.search.index_files.describe_file", killed)
    with pytest.raises(KeyboardInterrupt):
        main(["embed", "--model", model_folder, "--index", copy, "--text", "a new text"])
    monkeypatch.undo()
    index = EmbeddingIndex.load(copy)
    assert len(index) == 588 and "text:a new text" not in index


@pytest.mark.parametrize("command", ["embed", "search"])
def test_help_lists_options_and_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--model" in out and "examples:" in out and f"jointembed {command}" in out
