import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jointembed.cli import COMMANDS, main
from jointembed.lightning_cli import format_metrics

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


def test_metrics_are_tabled_rounded_by_row_and_column():
    metrics = {
        "test/warm/hr@10": 0.15676482021808624,
        "test/warm/users": 2633.0,
        "test/cold/hr@10": 0.0012345678,
        "test/mse": 12345.678,
        "test/confusion": [[1, 0], [0, 1]],  # not a scalar: left to test_metrics.json
        "test/loss": "nan",  # how write_test_metrics stores a non-finite value
    }
    assert format_metrics(metrics).splitlines() == [
        "              hr@10  loss      mse  users",
        "test              -   nan  12345.7      -",
        "test/cold  0.001235     -        -      -",
        "test/warm    0.1568     -        -   2633",
    ]


def test_metrics_too_many_for_a_table_go_down_columns():
    metrics = {f"test/R@{k}_{pair}": k / 10 for k in (1, 5) for pair in ("a->b", "b->a", "a->c")}
    assert format_metrics(metrics, width=40).splitlines() == [
        "test/R@1_a->b  0.1   test/R@5_a->b  0.5",
        "test/R@1_a->c  0.1   test/R@5_a->c  0.5",
        "test/R@1_b->a  0.1   test/R@5_b->a  0.5",
    ]
    assert format_metrics({}) == ""


def test_console_fit_output_ends_with_what_it_wrote(tmp_path):
    """Run as a user would: one line on threads, no advertisement or deprecation noise, a rounded metrics table,
    and the checkpoint and metrics paths last."""
    recipe = _recipe(tmp_path, max_epochs=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "jointembed", "fit", "--config", str(recipe)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^jointembed: \d+ intra-op threads? \(", done.stderr, flags=re.M)
    assert "💡" not in done.stdout + done.stderr and "LeafSpec" not in done.stderr
    assert "Test metric" not in done.stdout  # Lightning's table, with every float32 digit
    table = done.stdout[done.stdout.index("test metrics:") :]
    assert re.search(r"^test\s+[\d.e+-]+$", table.splitlines()[2]) and not re.search(r"\d\.\d{5}", table)
    *_, checkpoint, metrics = done.stdout.strip().splitlines()
    assert re.fullmatch(r"checkpoint written to .+\.ckpt", checkpoint)
    assert metrics == f"test metrics written to {next(tmp_path.glob('**/test_metrics.json'))}"
