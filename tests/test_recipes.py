"""Every recipe parses against the real CLI, and the multimodal digits recipe meets its targets end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jointembed.cli import main

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
DIGITS = REPO / "datasets" / "digits_four_ways"

# Arguments a recipe leaves to the command line (print_config does not read them, so any value parses).
REQUIRED_OVERRIDES = {"movielens.yaml": ["--data.init_args.path", "/path/to/ml-100k"]}


def test_recipes_are_found():
    assert "digits_multimodal.yaml" in {path.name for path in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES, ids=[path.name for path in RECIPES])
def test_recipe_parses_against_the_cli(recipe: Path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["jointembed"])  # LightningCLI warns when pytest's own arguments are there
    first_lines = recipe.read_text().splitlines()[:4]
    assert first_lines[0].startswith("# "), f"{recipe.name} must open with a comment saying what it trains"
    assert any(f"jointembed fit --config recipes/{recipe.name}" in line for line in first_lines), recipe.name
    overrides = REQUIRED_OVERRIDES.get(recipe.name, [])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe), *overrides, "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not (DIGITS / "train.jsonl").is_file(), reason=f"{DIGITS} is not present")
def test_digits_multimodal_recipe_meets_its_targets(tmp_path, monkeypatch):
    """The full recipe (1-2 min on an idle 2-core CPU): held-out zero-shot accuracy from audio and from images
    >= 0.9, audio -> image Recall@1 (same digit = hit) >= 0.8 (the issue's targets; the recipe reaches about
    0.96, 1.0 and 0.95)."""
    monkeypatch.chdir(REPO)  # the recipe's manifest paths are relative to the repository root
    monkeypatch.setattr(sys, "argv", ["jointembed"])
    overrides = [
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    assert main(["fit", "--config", "recipes/digits_multimodal.yaml", *overrides]) == 0
    (path,) = tmp_path.glob("digits_multimodal/version_*/test_metrics.json")
    metrics = json.loads(path.read_text())
    assert metrics["test/zeroshot_audio"] >= 0.9
    assert metrics["test/zeroshot_image"] >= 0.9
    assert metrics["test/R@1_audio->image"] >= 0.8
    assert set(metrics["test/R@1_table"]) == {"ids", "text", "image", "audio"}
