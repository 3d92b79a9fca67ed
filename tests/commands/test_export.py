"""``jointembed export``: projector files and a map of a manifest, an index and a recommender's items; errors a user
can act on; and, on the synthetic movie world, a map whose 2-D coordinates recover the planted aspects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from jointembed.cli import main
from jointembed.metrics.probe import linear_probe_r2
from jointembed.modalities import IdsModality
from jointembed.models.joint import JointEmbeddingModel
from jointembed.models.recommender import Recommender
from jointembed.registry import create_encoder, get_encoder_class

NAMES = ["zero", "one", "two"]
PROJECTOR_FILES = ["vectors.tsv", "metadata.tsv", "projector_config.pbtxt"]


def _read_metadata(folder: Path) -> tuple[list[str], list[list[str]]]:
    header, *rows = (folder / "metadata.tsv").read_text(encoding="utf-8").split("\n")[:-1]
    return header.split("\t"), [row.split("\t") for row in rows]


def _column(folder: Path, name: str) -> list[str]:
    header, rows = _read_metadata(folder)
    return [row[header.index(name)] for row in rows]


@pytest.fixture(scope="module")
def joint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny random joint model (ids + text fields) saved as a folder, and a 12-row manifest of 3 classes."""
    folder = tmp_path_factory.mktemp("joint")
    torch.manual_seed(0)
    encoders = {name: create_encoder(kind, **get_encoder_class(kind).tiny_config())
                for name, kind in (("ids", "ids"), ("text", "scratch_text"))}  # fmt: skip
    model = JointEmbeddingModel(encoders, {"ids": IdsModality(mode="integer", num_ids=20)})
    model.bind_inputs()
    model.set_zero_shot(NAMES, [[name] for name in NAMES], "text")
    model.save_pretrained(folder / "model")
    rows = [{"ids": [i], "text": f"digit {NAMES[i % 3]}\t#{i}", "label": i % 3} for i in range(12)]
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return folder / "model", folder / "test.jsonl"


def test_manifest_export_writes_projector_files_and_a_map(joint, tmp_path, capsys):
    model, manifest = joint
    out = tmp_path / "map"
    assert main(["export", "--model", str(model), "--manifest", str(manifest), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*PROJECTOR_FILES, "map.png"])
    header, rows = _read_metadata(out)
    assert header[:2] == ["key", "modality"] and {"label_name", "value", "map_x", "map_y"} <= set(header)
    assert len(rows) == 24 and all(len(row) == len(header) for row in rows)  # 12 ids cells + 12 text cells
    assert len((out / "vectors.tsv").read_text().splitlines()) == 24
    assert sorted(set(_column(out, "label_name"))) == sorted(NAMES)
    assert _column(out, "value")[12] == "digit zero\\t#0"  # the tab inside the text cell is escaped
    image = Image.open(out / "map.png")
    assert image.format == "PNG" and len(image.convert("RGB").getcolors(1 << 16) or []) > 50
    printed = capsys.readouterr().out
    assert "exported 24 points (8-d)" in printed and "coloured by label_name, modality" in printed


def test_index_export_with_and_without_the_model(joint, tmp_path, capsys):
    model, manifest = joint
    index = tmp_path / "index"
    assert main(["embed", "--model", str(model), "--manifest", str(manifest), "--index", str(index)]) == 0
    out = tmp_path / "map"
    args = ["export", "--index", str(index), "--out", str(out), "--color-by", "field", "label", "--labels", "3"]
    assert main(args) == 0
    assert len(_read_metadata(out)[1]) == 24
    assert "coloured by field, label" in capsys.readouterr().out
    assert main([*args, "--model", str(model), "--method", "tsne"]) == 0


def test_unknown_colour_key_names_the_available_ones(joint, tmp_path, capsys):
    model, manifest = joint
    args = ["export", "--model", str(model), "--manifest", str(manifest), "--out", str(tmp_path / "m")]
    assert main([*args, "--color-by", "label", "colour"]) == 1
    error = capsys.readouterr().err
    assert "--color-by colour: no such metadata column" in error
    assert re.search(r"the points have key, modality, field, value, row, manifest, label, label_name", error)
    assert not (tmp_path / "m" / "map.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "runs/no/such/pretrained"], "--model runs/no/such/pretrained: no such folder"),
        ([], "give --model"),
        (["--index", "x", "--manifest", "y"], "give --index or --manifest, not both"),
    ],
)
def test_bad_sources_are_named(tmp_path, capsys, args, message):
    assert main(["export", *args, "--out", str(tmp_path / "m")]) == 1
    assert message in capsys.readouterr().err


def test_a_joint_model_alone_asks_for_a_manifest_and_an_empty_index_is_refused(joint, tmp_path, capsys):
    from jointembed.search import EmbeddingIndex

    model, _ = joint
    assert main(["export", "--model", str(model), "--out", str(tmp_path / "m")]) == 1
    assert "is a joint model: give --manifest" in capsys.readouterr().err
    EmbeddingIndex(8).save(tmp_path / "empty")
    assert main(["export", "--index", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 1
    assert "empty: nothing to map" in capsys.readouterr().err


def test_help_lists_the_options_with_examples_and_an_unknown_method_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--model", "--index", "--manifest", "--out", "--method", "--color-by", "--max-points"):
        assert option in help_text
    assert "examples:" in help_text and "jointembed export --model" in help_text
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--index", "x", "--out", "y", "--method", "mds"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'mds'" in capsys.readouterr().err


def _recommender_folder(folder: Path, num_items: int = 30) -> Path:
    torch.manual_seed(0)
    model = Recommender(num_items, embedding_dim=4, hidden_sizes=(8,))
    rng = np.random.default_rng(0)
    metadata = {
        "watches": rng.integers(0, 100, num_items),
        "children_adult": rng.normal(size=num_items).round(3),
        "blockbuster_arthouse": rng.normal(size=num_items).round(3),
        "hidden_0": rng.normal(size=num_items),
    }
    keys = [f"m{i}" for i in range(num_items)]
    return model.save_pretrained(folder, keys, [f"Movie {i}" for i in range(num_items)], item_metadata=metadata)


def test_a_recommender_exports_its_items_coloured_by_their_metadata(tmp_path, capsys):
    folder = _recommender_folder(tmp_path / "pretrained")
    out = tmp_path / "map"
    assert main(["export", "--model", str(folder), "--out", str(out)]) == 0
    header, rows = _read_metadata(out)
    assert header == ["key", "title", "watches", "children_adult", "blockbuster_arthouse", "hidden_0", "map_x", "map_y"]
    assert len(rows) == 30 and rows[1][:2] == ["m1", "Movie 1"]
    vectors = np.loadtxt(out / "vectors.tsv", delimiter="\t")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)  # cosine geometry, as similar_items
    assert "coloured by children_adult, blockbuster_arthouse" in capsys.readouterr().out

    assert (
        main(["export", "--model", str(folder), "--out", str(out), "--max-points", "5", "--color-by", "watches"]) == 0
    )
    watches = json.loads((folder / "config.json").read_text())["item_metadata"]["watches"]
    assert sorted(map(int, _column(out, "watches"))) == sorted(watches)[-5:]  # the most-watched items


@pytest.mark.slow
def test_the_movie_world_map_separates_the_planted_aspects(tmp_path):
    """A movie world with only the two named aspects, trained for 5 epochs (~5 s): a linear probe from the
    exported 2-D map coordinates to each true aspect explains a large share of its variance (chance: R² ≈ 0;
    0.56-0.80 children↔adult and 0.57-0.73 blockbuster↔arthouse over seeds 0-9, 0.79 and 0.59 here)."""
    from jointembed.data.recommendation import MovieWorldDataModule
    from jointembed.tasks.recommendation import RecommendationTask

    L.seed_everything(0, verbose=False)
    data = MovieWorldDataModule(num_movies=1000, num_users=3000, num_hidden_aspects=0, world_seed=0)
    model = Recommender(None, embedding_dim=8, num_user_features=None, hidden_sizes=(64,), sparse=True)
    task = RecommendationTask(model, compare_baselines=False)
    trainer = L.Trainer(
        max_epochs=5, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(task, data)
    folder = task.export_pretrained(tmp_path / "pretrained")
    out = tmp_path / "map"
    assert main(["export", "--model", str(folder), "--out", str(out)]) == 0
    coords = np.array([_column(out, "map_x"), _column(out, "map_y")], dtype=np.float64).T
    aspects = np.array([_column(out, "children_adult"), _column(out, "blockbuster_arthouse")], dtype=np.float64).T
    np.testing.assert_allclose(aspects, data.world.movie_aspects, atol=1e-4)  # the world's truth reached the map
    r2 = linear_probe_r2(coords, aspects)
    assert r2.min() > 0.4, f"probe R² on the map: {r2}"
