import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_python_examples_run():
    blocks = _blocks("python")
    assert blocks, "the README shows no Python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (REPO / ".ci" / "run").read_text()
    bash = "\n".join(_blocks("bash"))
    install = 'pip install -e ".[dev]"'
    assert install in bash and install in ci
    assert "python -m pytest" in bash and re.search(r"^python -m pytest$", ci, flags=re.M)
