"""The contrastive task: pair selection with masks, multi-positive labels, optimiser groups, evaluation, training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from multimodal_fixture import ClusterData, cluster_model, make_batch

from jointembed.errors import CheckpointError
from jointembed.models.joint import CHECKPOINT_KEY, JointEmbeddingModel
from jointembed.registry import create_encoder
from jointembed.tasks.contrastive import ContrastiveTask, format_results_table, positives_from_labels, select_pair

# training_step is called without a Trainer in the unit tests: Lightning warns that self.log has nowhere to go
pytestmark = pytest.mark.filterwarnings("ignore:.*self.trainer. reference is not registered")


def _features(size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(size, 4, generator=g), "b": torch.randn(size, 5, generator=g)}


def _task(**kwargs: object) -> ContrastiveTask:
    torch.manual_seed(0)
    return ContrastiveTask(cluster_model(with_text=kwargs.pop("with_text", False)), **kwargs)


def test_select_pair_maps_present_rows_back_to_examples() -> None:
    masks = {"a": torch.tensor([1, 0, 1, 1], dtype=torch.bool), "b": torch.tensor([0, 1, 1, 1], dtype=torch.bool)}
    emb = {"a": torch.tensor([[0.0], [2.0], [3.0]]), "b": torch.tensor([[1.0], [2.0], [3.0]])}  # rows = examples
    a, b, index = select_pair(emb, masks, ("a", "b"), dim=1)
    assert index.tolist() == [2, 3]
    assert a.flatten().tolist() == [2.0, 3.0] and b.flatten().tolist() == [2.0, 3.0]


def test_loss_uses_only_examples_with_both_sides() -> None:
    task = _task(use_labels_as_positives=False)
    features = _features(5)
    batch = make_batch({"a": [1, 1, 0, 1, 1], "b": [1, 0, 1, 1, 1]}, features)
    loss = task.training_step(batch, 0)
    both = torch.tensor([0, 3, 4])
    expected = task.loss_fn(task.model.encode("a", features["a"][both]), task.model.encode("b", features["b"][both]))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert task.loss_fn.log_scale.grad is not None


def test_pair_with_one_example_contributes_nothing_and_does_not_crash() -> None:
    task = _task(with_text=True)
    features = {**_features(3), "text": ["one", "two", "three"]}
    only_one = make_batch({"a": [1, 0, 0], "b": [1, 1, 1], "text": [0, 0, 0]}, features)
    assert task.training_step(only_one, 0) is None  # a-b has one example, the text pairs none
    batch = make_batch({"a": [1, 0, 0], "b": [1, 1, 1], "text": [0, 1, 1]}, features)
    loss = task.training_step(batch, 0)  # only b-text (examples 1, 2) counts
    b, text = task.model.encode("b", features["b"][1:]), task.model.encode("text", ["two", "three"])
    torch.testing.assert_close(loss, task.loss_fn(b, text))
    empty = make_batch({"a": [0, 0], "b": [0, 0]}, _features(2))
    assert task.training_step(empty, 0) is None


def test_labels_as_positives_by_hand() -> None:
    features = _features(4)
    labels = [0, 1, 0, -1]  # examples 0 and 2 share a label; -1 matches nothing
    batch = make_batch({"a": [1] * 4, "b": [1] * 4}, features, labels=labels)
    positives = torch.tensor(
        [[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool
    )  # fmt: skip
    assert torch.equal(positives_from_labels(torch.tensor(labels)), positives)
    for loss_name in ("info_nce", "siglip"):
        with_labels = _task(loss=loss_name)
        a, b = with_labels.model.encode("a", features["a"]), with_labels.model.encode("b", features["b"])
        expected = with_labels.loss_fn(a, b, positives)
        torch.testing.assert_close(with_labels.training_step(batch, 0), expected)
        without = _task(loss=loss_name, use_labels_as_positives=False).training_step(batch, 0)
        torch.testing.assert_close(without, with_labels.loss_fn(a, b))
        assert not torch.isclose(without, expected)
    by_group = make_batch({"a": [1] * 4, "b": [1] * 4}, features, groups=labels)
    grouped = _task(use_labels_as_positives=False, use_groups_as_positives=True)
    a, b = grouped.model.encode("a", features["a"]), grouped.model.encode("b", features["b"])
    torch.testing.assert_close(grouped.training_step(by_group, 0), grouped.loss_fn(a, b, positives))


def test_anchor_and_pair_weights() -> None:
    assert _task(with_text=True).pairs == [("a", "b"), ("a", "text"), ("b", "text")]
    task = _task(with_text=True, anchor="text", pair_weights={"text-a": 0.5}, use_labels_as_positives=False)
    assert task.pairs == [("a", "text"), ("b", "text")]
    features = {**_features(3), "text": ["one", "two", "three"]}
    batch = make_batch({"a": [1, 1, 1], "b": [1, 1, 1], "text": [1, 1, 1]}, features)
    a, b = task.model.encode("a", features["a"]), task.model.encode("b", features["b"])
    text = task.model.encode("text", features["text"])
    expected = 0.5 * task.loss_fn(a, text) + task.loss_fn(b, text)
    torch.testing.assert_close(task.training_step(batch, 0), expected)
    with pytest.raises(ValueError, match="not a trained pair; trained pairs: a-text, b-text"):
        _task(with_text=True, anchor="text", pair_weights={"a-b": 1.0})
    with pytest.raises(ValueError, match="anchor 'audio'"):
        _task(anchor="audio")


def test_optimiser_groups_and_frozen_backbone() -> None:
    task = _task(with_text=True, lr=0.01, backbone_lr={"a": 0.0, "b": 0.001}, weight_decay=0.1)
    assert not any(p.requires_grad for p in task.model.encoders["a"].backbone_parameters())
    groups = {g["name"]: g for g in task.configure_optimizers().param_groups}
    assert "a.backbone" not in groups
    assert groups["b.backbone"]["lr"] == 0.001 and groups["a.head"]["lr"] == 0.01
    assert groups["loss"]["weight_decay"] == 0.0 and groups["text.head"]["weight_decay"] == 0.1
    trainable = {id(p) for p in task.parameters() if p.requires_grad}
    assert {id(p) for g in groups.values() for p in g["params"]} == trainable
    with pytest.raises(ValueError, match="backbone_lr names 'c'"):
        _task(backbone_lr={"c": 0.1})


def test_prompts_from_templates_or_a_dict() -> None:
    task = _task(with_text=True, class_prompts=["{}", "the colour {}"])
    task.label_names = lambda: ["red", "green"]  # type: ignore[method-assign]
    assert task.prompts_by_class() == [["red", "the colour red"], ["green", "the colour green"]]
    task = _task(with_text=True, class_prompts={"green": ["g"], "red": ["r", "rouge"]})
    task.label_names = lambda: ["red", "green"]  # type: ignore[method-assign]
    assert task.prompts_by_class() == [["r", "rouge"], ["g"]]
    task.label_names = lambda: ["red", "blue"]  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=r"no prompts for label\(s\) \['blue'\]"):
        task.prompts_by_class()
    assert _task(with_text=True).prompts_by_class() is None


def test_predict_step_gives_each_fields_vectors_with_their_rows() -> None:
    task = _task(with_text=True).eval()
    features = {**_features(4), "text": ["w0", "w1", "w2", "w3"]}
    batch = make_batch({"a": [1, 0, 1, 1], "b": [0, 0, 0, 0], "text": [0, 1, 1, 0]}, features)
    batch["row"] = torch.tensor([7, 3, 9, 12])
    with torch.no_grad():
        out = task.predict_step(batch, 0)
        expected = {
            "a": task.model.encode("a", features["a"][[0, 2, 3]]),
            "text": task.model.encode("text", ["w1", "w2"]),
        }
    assert out["rows"].tolist() == [7, 3, 9, 12] and set(out["fields"]) == {"a", "text"}  # no example has b
    assert out["fields"]["a"]["rows"].tolist() == [7, 9, 12] and out["fields"]["text"]["rows"].tolist() == [3, 9]
    for field, vectors in expected.items():
        torch.testing.assert_close(out["fields"][field]["vectors"], vectors)
        assert out["fields"][field]["rows"].dtype == torch.long
    del batch["row"]
    with pytest.raises(ValueError, match="predict batches need 'row'"):
        task.predict_step(batch, 0)


def test_restore_inputs_takes_the_fitted_units_a_checkpoint_holds(tmp_path: Path) -> None:
    def ids_and_text() -> JointEmbeddingModel:
        ids = create_encoder("ids", num_embeddings=None, embedding_dim=4, hidden_sizes=[], output_dim=8)
        text = create_encoder("scratch_text", num_buckets=64, embedding_dim=8, architecture="bag", output_dim=8)
        return JointEmbeddingModel({"ids": ids, "text": text})

    trained = ids_and_text()
    trained.inputs["ids"].fit([["heat", "up"], ["up"]])
    trained.bind_inputs()
    path = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}, CHECKPOINT_KEY: trained.get_config()}, path)
    task = ContrastiveTask(ids_and_text())
    task.restore_inputs(path)
    assert task.model.inputs["ids"].get_config() == trained.inputs["ids"].get_config()
    assert task.model.inputs["ids"].vocab.values == ["up", "heat"]
    assert task.model.encoders["ids"].embedding.num_embeddings == 4  # <pad>, <oov>, up, heat: sized from it
    with pytest.raises(CheckpointError, match=r"x\.ckpt: saved fields \['ids', 'text'\], the model's \['a', 'b'\]"):
        _task().restore_inputs(path)


def test_results_table_format() -> None:
    table = {"a": {"b": 0.5, "zero-shot": 0.75}, "b": {"a": 1.0}}
    lines = format_results_table(table).splitlines()
    assert lines[0].split() == ["query\\gallery", "a", "b", "zero-shot"]
    assert lines[1].split() == ["a", "-", "0.500", "0.750"]
    assert lines[2].split() == ["b", "1.000", "-", "-"]


def _trainer(tmp_path: Path, epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


@pytest.mark.slow
def test_training_on_clusters_reaches_high_recall_and_zero_shot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    L.seed_everything(0, verbose=False)
    data = ClusterData(with_text=True, per_split=200, batch_size=32)
    task = ContrastiveTask(cluster_model(with_text=True), lr=0.01, class_prompts=["{}", "the colour {}"])
    trainer = _trainer(tmp_path, epochs=6)
    trainer.fit(task, datamodule=data)
    metrics = trainer.test(task, datamodule=data, verbose=False)[0]
    assert metrics["test/R@1_a->b"] > 0.9 and metrics["test/R@1_b->a"] > 0.9
    assert metrics["test/zeroshot_a"] > 0.9 and metrics["test/zeroshot_b"] > 0.9
    assert "cross-modal retrieval R@1" in capsys.readouterr().out
    table = task.extra_test_metrics()["test/R@1_table"]
    assert table["a"]["b"] == pytest.approx(metrics["test/R@1_a->b"])
    # checkpoint round trip: the restored task embeds exactly as the trained one
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    restored = ContrastiveTask.load_from_checkpoint(tmp_path / "last.ckpt", model=cluster_model(with_text=True))
    assert restored.hparams.class_prompts == ["{}", "the colour {}"]
    x = torch.randn(3, 4)
    task.eval(), restored.eval()
    torch.testing.assert_close(restored.model.encode("a", x), task.model.encode("a", x))
    torch.testing.assert_close(restored.loss_fn.scale, task.loss_fn.scale)


def test_evaluation_without_labels_uses_exact_pairs(tmp_path: Path) -> None:
    data = ClusterData(per_split=40, batch_size=16)
    for split in data.splits.values():
        for ex in split:
            ex["label"] = -1
    task = ContrastiveTask(cluster_model(), lr=0.01, class_prompts=["{}"])
    metrics = _trainer(tmp_path, epochs=1).validate(task, datamodule=data, verbose=False)[0]
    assert 0.0 <= metrics["val/R@1_a->b"] <= 1.0 and "val/MRR_b->a" in metrics
    assert not any(k.startswith("val/zeroshot") for k in metrics)  # no labels, no text encoder
