import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jointembed.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def _recipe(tmp_path: Path, max_epochs: int = 3) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": max_epochs,
            "accelerator": "cpu",
            "default_root_dir": str(tmp_path / "runs"),
            "enable_progress_bar": False,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
        },
        "model": {"class_path": "cli_fixture.BagSumRegressor", "init_args": {"num_ids": 20}},
        "data": {"class_path": "cli_fixture.BagSumData", "init_args": {"num_ids": 20}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_top_level_help_lists_every_command_without_importing_torch():
    code = "import sys; from jointembed.cli import main; main(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name, command in COMMANDS.items():
        assert name in out and command.summary in out
    assert out.strip().endswith("False")


def test_console_script_help_and_version():
    script = Path(sys.executable).parent / "jointembed"
    if not script.exists():
        pytest.skip("the jointembed console script is not installed in this environment")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "fit" in out and "predict" in out
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("jointembed ")


def test_unknown_command_is_an_error(capsys):
    assert main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err


def test_fit_help_lists_lightning_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--print_config" in out and "--trainer.max_epochs" in out


def test_print_config_applies_overrides(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(recipe), "--model.init_args.lr", "0.5", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "cli_fixture.BagSumRegressor"
    assert printed["model"]["init_args"]["lr"] == 0.5


def test_fit_trains_tests_and_writes_metrics(tmp_path):
    recipe = _recipe(tmp_path, max_epochs=15)
    assert main(["fit", "--config", str(recipe)]) == 0
    [metrics_file] = tmp_path.glob("**/test_metrics.json")
    metrics = json.loads(metrics_file.read_text())
    # the per-ID values are learnable exactly: the test error falls far below the targets' variance (about 2.5)
    assert metrics["test/mse"] < 0.2
    assert list(tmp_path.glob("**/checkpoints/*.ckpt"))


def test_bad_override_names_the_key(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe), "--model.init_args.no_such_arg", "1"])
    assert exit_info.value.code != 0
    assert "no_such_arg" in capsys.readouterr().err
