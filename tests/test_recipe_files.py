"""Recipes built on a base recipe: the merge rules, and the errors for a bad chain of bases."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jointembed.errors import DataFormatError
from jointembed.recipe_files import merge_configs, resolve_recipe

REPO = Path(__file__).resolve().parents[1]


def test_mappings_merge_lists_replace_and_another_class_replaces_its_node() -> None:
    base = {
        "trainer": {"max_epochs": 20, "callbacks": [{"class_path": "A"}], "logger": {"init_args": {"name": "x"}}},
        "model": {"encoders": {"ids": {"class_path": "Ids", "init_args": {"dim": 16}},
                               "text": {"class_path": "Scratch", "init_args": {"num_buckets": 4096}}}},
    }  # fmt: skip
    override = {
        "trainer": {"callbacks": [], "logger": {"init_args": {"name": "y"}}},
        "model": {"encoders": {"text": {"class_path": "HF", "init_args": {"pooling": "mean"}},
                               "ids": {"init_args": {"dim": 8}}}},
    }  # fmt: skip
    merged = merge_configs(base, override)
    assert merged["trainer"] == {"max_epochs": 20, "callbacks": [], "logger": {"init_args": {"name": "y"}}}
    assert merged["model"]["encoders"]["text"] == {"class_path": "HF", "init_args": {"pooling": "mean"}}
    assert merged["model"]["encoders"]["ids"] == {"class_path": "Ids", "init_args": {"dim": 8}}
    assert list(merged["model"]["encoders"]) == ["ids", "text"]  # the base's order is kept
    assert base["trainer"]["max_epochs"] == 20 and base["model"]["encoders"]["ids"]["init_args"] == {"dim": 16}


def test_chains_resolve_and_bad_chains_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"seed_everything": 1, "trainer": {"max_epochs": 3}}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(yaml.safe_dump({"base": "../a.yaml", "trainer": {"devices": 1}}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"base": "sub/b.yaml", "seed_everything": 2}))
    assert resolve_recipe(tmp_path / "c.yaml") == {"seed_everything": 2, "trainer": {"max_epochs": 3, "devices": 1}}
    assert resolve_recipe(tmp_path / "a.yaml") is None  # no base: the file is used as it is
    (tmp_path / "x.yaml").write_text("base: y.yaml\n")
    (tmp_path / "y.yaml").write_text("base: x.yaml\n")
    with pytest.raises(DataFormatError, match="cycle"):
        resolve_recipe(tmp_path / "x.yaml")
    (tmp_path / "m.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(DataFormatError, match=r"base recipe .*missing\.yaml does not exist"):
        resolve_recipe(tmp_path / "m.yaml")
    (tmp_path / "n.yaml").write_text("base: [1, 2]\n")
    with pytest.raises(DataFormatError, match="'base' must be the path of a recipe"):
        resolve_recipe(tmp_path / "n.yaml")


def test_the_minilm_recipe_is_its_base_with_another_text_encoder() -> None:
    merged = resolve_recipe(REPO / "recipes" / "digits_multimodal_minilm.yaml")
    base = yaml.safe_load((REPO / "recipes" / "digits_multimodal.yaml").read_text())
    encoders = merged["model"]["init_args"]["model"]["init_args"]["encoders"]
    assert encoders["text"]["class_path"] == "jointembed.encoders.text.HFTextEncoder"
    base_encoders = base["model"]["init_args"]["model"]["init_args"]["encoders"]
    assert {k: v for k, v in encoders.items() if k != "text"} == {k: v for k, v in base_encoders.items() if k != "text"}
    assert merged["data"] == base["data"] and merged["trainer"]["callbacks"] == base["trainer"]["callbacks"]
