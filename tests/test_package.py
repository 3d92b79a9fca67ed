import subprocess
import sys
from pathlib import Path

import pytest

import jointembed

REPO = Path(__file__).resolve().parents[1]


def test_public_api_is_exported():
    for name in jointembed.__all__:
        assert getattr(jointembed, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jointembed.nope  # noqa: B018


def test_import_is_lazy():
    code = "import sys, jointembed; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_datasets_folder_does_not_shadow_hugging_face_packages():
    """With the repository root first on sys.path (``python -c`` run from the root), the data folder
    ``datasets/`` must not break transformers, which probes for the Hugging Face ``datasets`` package."""
    assert not (REPO / "datasets" / "__init__.py").exists(), "datasets/ must stay a data folder, not a package"
    code = (
        "import transformers, jointembed\n"
        "from transformers import BertConfig, BertModel\n"
        "m = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))\n"
        "print(type(m).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "BertModel"


def test_all_matches_the_lazy_export_table():
    assert set(jointembed.__all__) - {"__version__"} == set(jointembed._EXPORTS)
