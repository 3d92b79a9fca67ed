import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


# Blocks that use what a recipe's run wrote (a pretrained folder under runs/): run after that recipe, below.
_AFTER_RUN = re.compile(r'from_pretrained\("runs/(\w+)/')


def test_python_examples_run():
    blocks = [code for code in _blocks("python") if not _AFTER_RUN.search(code)]
    assert blocks, "the README shows no Python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


# Recipes that read data from the user's folder, and where the development copy is (skipped when absent).
_ML100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"
_DATA_ARGS = {
    "movielens": ("--data.init_args.path", _ML100K),
    "movielens_coldstart": ("--data.init_args.path", _ML100K),
}


_AFTER_RUN_COMMANDS = ("embed", "search", "export", "predict")


def _commands_after_run(recipe: str) -> list[list[str]]:
    """The ``jointembed embed|search|export|predict`` lines of the bash blocks that use ``runs/<recipe>/``, with
    ``NAME=value`` variables of the block substituted, as argument lists."""
    commands = []
    for block in _blocks("bash"):
        if f"runs/{recipe}/" not in block:
            continue
        variables: dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or " ... " in line:  # comments, and lines with placeholders
                continue
            if match := re.fullmatch(r"(\w+)=(\S+)", line):
                variables[match.group(1)] = match.group(2)
                continue
            for name, value in variables.items():
                line = line.replace(f"${name}", value)
            words = shlex.split(line, comments=True)
            if len(words) > 1 and words[0] == "jointembed" and words[1] in _AFTER_RUN_COMMANDS:
                commands.append(words[1:])
    return commands


def _recipes_used_after_a_run() -> list[str]:
    """Recipes whose run a README Python block loads, or a bash block's embed/search/export/predict line uses."""
    from_python = {m.group(1) for code in _blocks("python") if (m := _AFTER_RUN.search(code))}
    from_bash = {m.group(1) for code in _blocks("bash") for m in re.finditer(r"runs/(\w+)/", code)}
    return sorted(from_python | {recipe for recipe in from_bash if _commands_after_run(recipe)})


@pytest.mark.slow
@pytest.mark.parametrize("recipe", _recipes_used_after_a_run())
def test_python_examples_that_load_a_run_work_in_a_fresh_folder(recipe, tmp_path, monkeypatch, capsys):
    """Train the recipe the README loads from (one short epoch), then run its blocks there as a user would."""
    from jointembed.cli import main

    extra = []
    if recipe in _DATA_ARGS:
        flag, path = _DATA_ARGS[recipe]
        if not path.is_dir():
            pytest.skip(f"{path} is not present (the development data of the {recipe} recipe)")
        extra = [flag, str(path)]
    (tmp_path / "datasets").symlink_to(REPO / "datasets")
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    monkeypatch.chdir(tmp_path)
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1"]
    assert main(["fit", "--config", str(REPO / "recipes" / f"{recipe}.yaml"), *short, *extra]) == 0
    assert f"pretrained model written to runs/{recipe}/version_0/pretrained" in capsys.readouterr().out
    for code in _blocks("python"):
        if (match := _AFTER_RUN.search(code)) and match.group(1) == recipe:
            exec(compile(code, "README.md", "exec"), {})
    for argv in _commands_after_run(recipe):
        assert main(argv) == 0, f"README command failed: jointembed {' '.join(argv)}"


# The README's quick test command (slow tests left out by pyproject.toml's addopts) and the full one CI runs.
QUICK_TESTS = "python -m pytest"
ALL_TESTS = 'python -m pytest -m "slow or not slow"'


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (REPO / ".ci" / "run").read_text()
    bash = "\n".join(_blocks("bash"))
    install = 'pip install -e ".[dev]"'
    assert install in bash and install in ci
    assert re.search(rf"^{re.escape(QUICK_TESTS)}(\s+#.*)?$", bash, flags=re.M)
    assert re.search(rf"^{re.escape(ALL_TESTS)}(\s+#.*)?$", bash, flags=re.M)
    assert re.search(rf"^{re.escape(ALL_TESTS)}$", ci, flags=re.M)


def test_the_quick_command_leaves_out_the_slow_tests_and_the_full_one_runs_them():
    def collected(command: str) -> str:
        args = [sys.executable, *shlex.split(command)[1:], "--collect-only", "-q", "-p", "no:cacheprovider", __file__]
        return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True).stdout

    quick, full = collected(QUICK_TESTS), collected(ALL_TESTS)
    slow = "test_python_examples_that_load_a_run_work_in_a_fresh_folder"
    assert slow not in quick and "deselected" in quick
    assert slow in full and "deselected" not in full
