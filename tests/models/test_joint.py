"""The joint embedding model: construction checks, forward over present modalities, save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from multimodal_fixture import VectorEncoder, WordEncoder, make_batch
from safetensors.torch import load_file, save_file

from jointembed.errors import CheckpointError
from jointembed.models.joint import JointEmbeddingModel


def _model() -> JointEmbeddingModel:
    torch.manual_seed(0)
    return JointEmbeddingModel({"a": VectorEncoder(4, 8, 6), "b": VectorEncoder(5, 8, 6), "text": WordEncoder()})


def test_needs_two_encoders_with_one_output_dim() -> None:
    with pytest.raises(ValueError, match="at least two"):
        JointEmbeddingModel({"a": VectorEncoder()})
    with pytest.raises(ValueError, match="a=6, b=3"):
        JointEmbeddingModel({"a": VectorEncoder(output_dim=6), "b": VectorEncoder(output_dim=3)})


def test_forward_encodes_present_modalities_only() -> None:
    model = _model()
    features = {"a": torch.randn(3, 4), "b": torch.randn(3, 5), "text": ["x", "y", "z"]}
    batch = make_batch({"a": [1, 0, 1], "b": [0, 0, 0], "text": [1, 1, 1]}, features)
    out = model(batch)
    assert set(out) == {"a", "text"}
    assert out["a"].shape == (2, 6) and out["text"].shape == (3, 6)
    torch.testing.assert_close(out["a"].norm(dim=1), torch.ones(2))
    torch.testing.assert_close(out["a"], model.encode("a", features["a"][[0, 2]]))
    with pytest.raises(KeyError, match="has: a, b, text"):
        model.encode("audio", features["a"])


def test_similarity_is_cosine() -> None:
    sim = JointEmbeddingModel.similarity(torch.tensor([[2.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 3.0]]))
    torch.testing.assert_close(sim, torch.tensor([[0.0], [2**-0.5]]))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = _model().eval()
    model.save_pretrained(tmp_path / "joint")
    config = json.loads((tmp_path / "joint" / "config.json").read_text())
    assert config["format"] == "jointembed.joint" and config["version"] == 2
    assert config["fields"]["b"]["encoder"] == {
        "type": "test_vector",
        "config": {"in_features": 5, "hidden": 8, "output_dim": 6},
    }
    assert config["fields"]["text"]["encoder"]["type"] == "test_words"
    loaded = JointEmbeddingModel.from_pretrained(tmp_path / "joint").eval()
    x = torch.randn(4, 5)
    torch.testing.assert_close(loaded.encode("b", x), model.encode("b", x))
    torch.testing.assert_close(loaded.encode("text", ["hello there"]), model.encode("text", ["hello there"]))
    assert [p.name for p in (tmp_path / "joint").iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_strict_loading_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    _model().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(str(weights))
    del state["encoders.a.backbone.0.weight"]
    state["encoders.a.extra"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(
        CheckpointError,
        match=r"missing keys: \['encoders\.a\.backbone\.0\.weight'\]; unexpected keys: \['encoders\.a\.extra'\]",
    ):
        JointEmbeddingModel.from_pretrained(tmp_path)
    loaded = JointEmbeddingModel.from_pretrained(tmp_path, strict=False)
    assert loaded.output_dim == 6


def test_bad_folders_raise_checkpoint_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="config.json: config file not found"):
        JointEmbeddingModel.from_pretrained(tmp_path)
    _model().save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "format": "other"}))
    with pytest.raises(CheckpointError, match=r"config\.json: field 'format' is 'other'"):
        JointEmbeddingModel.from_pretrained(tmp_path)
    config_path.write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(CheckpointError, match=r"config\.json: field 'version' is 99"):
        JointEmbeddingModel.from_pretrained(tmp_path)
    fields = {**config["fields"], "a": {"encoder": {"type": "nope"}, "input": None}}
    config_path.write_text(json.dumps({**config, "fields": fields}))
    with pytest.raises(CheckpointError, match="cannot build field 'a'.*unknown encoder 'nope'"):
        JointEmbeddingModel.from_pretrained(tmp_path)
    config_path.write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read"):
        JointEmbeddingModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: weights file not found"):
        JointEmbeddingModel.from_pretrained(tmp_path)
