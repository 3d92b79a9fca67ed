"""Loading models from others: a pretrained folder, an index folder or a checkpoint is data, never code.

Each test builds a hostile folder or checkpoint the way an attacker would publish one, loads it the way a user
would, and checks three things: the load is refused with a ``CheckpointError`` naming the file and the field,
nothing ran (a marker file that the hostile code would create does not exist), and nothing outside the folder
was read or fetched.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import pytest
import torch

from jointembed.encoders.text import HFTextEncoder
from jointembed.errors import CheckpointError
from jointembed.modalities import IdsModality
from jointembed.models.joint import JointEmbeddingModel
from jointembed.registry import create_encoder, get_encoder_class

CONFIG = "config.json"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to open a connection is recorded and fails, so a test can assert that none was made."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"test: network access to {address} refused")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def _model() -> JointEmbeddingModel:
    torch.manual_seed(0)
    text = HFTextEncoder(**HFTextEncoder.tiny_config())
    ids = create_encoder("ids", **{**get_encoder_class("ids").tiny_config(), "num_embeddings": 8})
    units = {"ids": IdsModality(mode="vocabulary", vocabulary=["a", "b", "c"])}
    return JointEmbeddingModel({"text": text, "ids": ids}, units)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("published") / "model"
    _model().save_pretrained(folder)
    return folder


def _copy(saved: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "downloads" / "model"
    shutil.copytree(saved, folder)
    return folder


def _edit_config(folder: Path, change: object) -> None:
    config = json.loads((folder / CONFIG).read_text())
    change(config)
    (folder / CONFIG).write_text(json.dumps(config))


def _text_config(config: dict) -> dict:
    return config["fields"]["text"]["encoder"]["config"]


def _plant_module(where: Path, name: str, marker: Path) -> None:
    """A module that would leave ``marker`` behind if it were ever imported."""
    (where / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\ndef get_model_path():\n    return '.'\n"
    )


def test_a_saved_folder_loads_when_nothing_is_hostile(saved: Path, tmp_path: Path) -> None:
    loaded = JointEmbeddingModel.from_pretrained(_copy(saved, tmp_path))
    assert sorted(loaded.modalities) == ["ids", "text"]


@pytest.mark.parametrize("field", ["tokenizer_name_or_path", "model_name_or_path"])
def test_a_package_named_by_the_folder_is_never_imported(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    folder = _copy(saved, tmp_path)
    marker = tmp_path / "marker"
    # the module sits inside the folder, whose parent is on Python's path (a notebook started there)
    _plant_module(folder.parent, "model_helpers", marker)
    monkeypatch.syspath_prepend(str(folder.parent))
    _edit_config(folder, lambda c: _text_config(c).update({field: "package:model_helpers"}))
    with pytest.raises(CheckpointError, match=rf"config\.json: field '{field}' is 'package:model_helpers'"):
        JointEmbeddingModel.from_pretrained(folder)
    assert not marker.exists() and "model_helpers" not in sys.modules


def test_a_folder_the_caller_fetched_from_the_hub_may_link_to_the_caches_blobs(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one download that happens is the caller's: a hub id given to from_pretrained. The cache's snapshot
    links every file to the repo's blobs folder beside it, which is not outside the download."""
    import huggingface_hub

    repo = tmp_path / "hub" / "models--someone--digits"
    snapshot = repo / "snapshots" / "abc123"
    for file in saved.rglob("*"):
        if file.is_file():
            blob = repo / "blobs" / file.relative_to(saved).as_posix().replace("/", "_")
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, blob)
            (snapshot / file.relative_to(saved)).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / file.relative_to(saved)).symlink_to(blob)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(snapshot))
    loaded = JointEmbeddingModel.from_pretrained("someone/digits")
    assert sorted(loaded.modalities) == ["ids", "text"]
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: a link to .*elsewhere\.safetensors, outside"):
        JointEmbeddingModel.from_pretrained("someone/digits")


def test_a_path_outside_the_folder_is_never_read(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    shutil.copytree(folder / "fields" / "text" / "encoder" / "tokenizer", tmp_path / "elsewhere")
    _edit_config(folder, lambda c: _text_config(c).update(tokenizer_name_or_path="../../elsewhere"))
    with pytest.raises(CheckpointError, match=r"field 'tokenizer_name_or_path' is '\.\./\.\./elsewhere'.*outside"):
        JointEmbeddingModel.from_pretrained(folder)


def test_an_absolute_path_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    elsewhere = shutil.copytree(folder / "fields" / "text" / "encoder" / "tokenizer", tmp_path / "elsewhere")
    _edit_config(folder, lambda c: _text_config(c).update(tokenizer_name_or_path=str(elsewhere)))
    with pytest.raises(CheckpointError, match=r"field 'tokenizer_name_or_path' .*outside the folder"):
        JointEmbeddingModel.from_pretrained(folder)


def test_a_link_leading_out_of_the_folder_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    tokenizer = folder / "fields" / "text" / "encoder" / "tokenizer"
    shutil.move(tokenizer, tmp_path / "elsewhere")
    tokenizer.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match=r"tokenizer: a link to .*elsewhere, outside the folder"):
        JointEmbeddingModel.from_pretrained(folder)


def test_a_weights_file_linked_from_outside_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    shutil.move(folder / "model.safetensors", tmp_path / "weights.safetensors")
    (folder / "model.safetensors").symlink_to(tmp_path / "weights.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: a link to .*outside the folder"):
        JointEmbeddingModel.from_pretrained(folder)


def test_a_vocabulary_file_outside_the_folder_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    vocabulary = folder / "fields" / "ids" / "input" / "vocab.json"
    shutil.copy(vocabulary, tmp_path / "downloads" / "vocab.json")
    _edit_config(folder, lambda c: c["fields"]["ids"]["input"]["config"].update(vocabulary="../../../../vocab.json"))
    with pytest.raises(CheckpointError, match=r"field 'vocabulary' is '(\.\./){4}vocab\.json'.*outside the folder"):
        JointEmbeddingModel.from_pretrained(folder)


def test_a_hub_id_in_the_folder_never_reaches_the_network(
    saved: Path, tmp_path: Path, no_network: list[object]
) -> None:
    folder = _copy(saved, tmp_path)

    def to_hub(config: dict) -> None:
        _text_config(config).update(
            model_name_or_path="sentence-transformers/all-MiniLM-L6-v2", config=None, local_files_only=False
        )

    _edit_config(folder, to_hub)
    with pytest.raises(CheckpointError, match=r"field 'model_name_or_path' is 'sentence-transformers/all-MiniLM"):
        JointEmbeddingModel.from_pretrained(folder)
    assert no_network == []


def test_custom_code_named_by_a_tokenizer_is_never_run(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    tokenizer = folder / "fields" / "text" / "encoder" / "tokenizer"
    marker = tmp_path / "marker"
    _plant_module(tokenizer, "tokenization_evil", marker)
    settings = json.loads((tokenizer / "tokenizer_config.json").read_text())
    settings["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(settings))
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json: field 'auto_map' names custom code"):
        JointEmbeddingModel.from_pretrained(folder)
    assert not marker.exists()


def test_custom_code_named_by_a_model_config_is_never_run(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    _edit_config(folder, lambda c: _text_config(c)["config"].update(auto_map={"AutoModel": "modeling_evil.Evil"}))
    with pytest.raises(CheckpointError, match=r"field 'text'.*'auto_map'"):
        JointEmbeddingModel.from_pretrained(folder)


def test_a_torchvision_weights_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    image = create_encoder("torchvision_image", **get_encoder_class("torchvision_image").tiny_config())
    text = create_encoder("scratch_text", **get_encoder_class("scratch_text").tiny_config())
    folder = JointEmbeddingModel({"image": image, "text": text}).save_pretrained(tmp_path / "model")
    outside = tmp_path / "backbone.pt"
    torch.save(torch.nn.Module().state_dict(), outside)
    _edit_config(folder, lambda c: c["fields"]["image"]["encoder"]["config"].update(weights_path=str(outside)))
    with pytest.raises(CheckpointError, match=r"field 'weights_path' is .*backbone\.pt'.*outside the folder"):
        JointEmbeddingModel.from_pretrained(folder)


def test_an_index_whose_vectors_are_linked_from_outside_is_refused(tmp_path: Path) -> None:
    from jointembed.search.index import EmbeddingIndex

    index = EmbeddingIndex(4)
    index.add(torch.eye(4)[:2], ["a", "b"], "text")
    folder = index.save(tmp_path / "index")
    shutil.move(folder / "vectors.npy", tmp_path / "secret.npy")
    (folder / "vectors.npy").symlink_to(tmp_path / "secret.npy")
    with pytest.raises(CheckpointError, match=r"vectors\.npy: a link to .*secret\.npy, outside the folder"):
        EmbeddingIndex.load(folder)


# ----- checkpoints -----------------------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this object creates a marker file: what a pickled checkpoint can do to whoever loads it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "ran"))


def _checkpoint(path: Path, **entries: object) -> Path:
    state = {"state_dict": {}, "pytorch-lightning_version": "2.6.0", **entries}
    torch.save(state, path)
    return path


def test_a_pickled_checkpoint_is_never_unpickled(tmp_path: Path) -> None:
    from jointembed.tasks.contrastive import ContrastiveTask

    marker = tmp_path / "marker"
    path = _checkpoint(tmp_path / "evil.ckpt", payload=_RunsCode(marker))
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: cannot read the checkpoint safely \(weights_only=True\)"):
        JointEmbeddingModel.from_pretrained(path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: cannot read the checkpoint safely"):
        ContrastiveTask.load_from_checkpoint(path, model=_model())
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()


def test_a_foreign_class_path_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    from jointembed.tasks.contrastive import ContrastiveTask

    hparams = {"lr": 0.01, "_class_path": "os.system", "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    path = _checkpoint(tmp_path / "foreign.ckpt", hyper_parameters=hparams)
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt: field 'hyper_parameters\._class_path' is 'os\.system'"):
        ContrastiveTask.load_from_checkpoint(path, model=_model())
    nested = {"model": {"class_path": "evil_module.Evil", "init_args": {}}}
    path = _checkpoint(tmp_path / "nested.ckpt", hyper_parameters=nested)
    with pytest.raises(CheckpointError, match=r"field 'hyper_parameters\.model\.class_path' is 'evil_module\.Evil'"):
        JointEmbeddingModel.from_pretrained(path)


def test_a_class_of_this_package_in_a_checkpoint_is_honoured() -> None:
    from jointembed.trust import is_package_class

    assert is_package_class("jointembed.tasks.contrastive.ContrastiveTask")
    assert not is_package_class("jointembed_evil.Task") and not is_package_class("jointembed.no_such_module.X")
    assert not is_package_class("jointembed.trust.PACKAGE_PREFIX")  # not a class


def test_a_model_config_in_a_checkpoint_may_not_name_a_package(tmp_path: Path) -> None:
    config = _model().get_config()
    config["fields"]["text"]["encoder"]["config"].update(model_name_or_path="package:model_helpers", config=None)
    path = _checkpoint(tmp_path / "named.ckpt", jointembed_model=config)
    with pytest.raises(CheckpointError, match=r"named\.ckpt: field 'model_name_or_path' is 'package:model_helpers'"):
        JointEmbeddingModel.from_pretrained(path)
    config["fields"]["text"]["encoder"]["config"].update(model_name_or_path=str(tmp_path), config=None)
    torch.save({"state_dict": {}, "jointembed_model": config}, path)
    with pytest.raises(CheckpointError, match=r"a checkpoint may not name a file, package or hub repo"):
        JointEmbeddingModel.from_pretrained(path)


@pytest.mark.parametrize("value", ["https://example.org/model.ckpt", "s3://bucket/model.ckpt", "missing.ckpt"])
def test_ckpt_path_is_a_local_file_or_last(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jointembed.checkpoint_io import check_checkpoint_path

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=rf"--ckpt_path {value}: (only a local|no such checkpoint file)"):
        check_checkpoint_path(value)
