import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import jointembed
import jointembed.data.interactions as interactions_module
from jointembed.histories import Histories

PACKAGE = Path(jointembed.__file__).parent
ROWS = [[3, 1, 5], [4], [], [2, 4, 0]]


def _histories() -> Histories:
    return Histories.from_lists(ROWS, num_items=6)


def _rows(h: Histories) -> list[list[int]]:
    return [h.get(u).tolist() for u in range(len(h))]


def test_the_data_package_re_exports_the_same_class():
    assert interactions_module.Histories is Histories
    assert "Histories" in interactions_module.__all__


@pytest.mark.parametrize("module", ["metrics/ranking.py", "baselines.py"])
def test_metrics_and_baselines_do_not_import_the_data_package(module):
    # Histories sits below both layers, so the metrics never import the data readers (no data <-> metrics cycle)
    tree = ast.parse((PACKAGE / module).read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert "jointembed.histories" in imported
    assert [name for name in imported if name.startswith("jointembed.data")] == []


def test_rows_lengths_and_positions():
    h = _histories()
    assert _rows(h) == ROWS and len(h) == 4 and h.nnz == 7
    assert h.lengths().tolist() == [3, 1, 0, 3]
    assert h.row_ids().tolist() == [0, 0, 0, 1, 3, 3, 3]
    assert h.positions().tolist() == [0, 1, 2, 0, 0, 1, 2]


def test_to_sparse_batch_and_select():
    h = _histories()
    batch = h.to_sparse_batch([3, 2, 0])
    assert batch.tolist() == [[2, 4, 0], [], [3, 1, 5]]
    assert batch.offsets.dtype == torch.long
    assert _rows(h.select(torch.tensor([1, 1]).numpy())) == [[4], [4]]
    with pytest.raises(ValueError, match="out of range"):
        h.to_sparse_batch([4])


def test_mask_and_concat_rows():
    h = _histories()
    first = h.mask(h.positions() == 0)
    assert _rows(first) == [[3], [4], [], [2]]
    assert _rows(first.concat_rows(h.mask(h.positions() > 0))) == ROWS
    with pytest.raises(ValueError, match="cannot concatenate rows"):
        h.concat_rows(Histories.from_lists([[1]], num_items=6))


def test_csr_matrix_binary_collapses_repeats():
    h = Histories.from_lists([[1, 1, 2], []], num_items=3)
    assert h.to_csr_matrix().toarray().tolist() == [[0, 1, 1], [0, 0, 0]]
    assert h.to_csr_matrix(binary=False).toarray().tolist() == [[0, 2, 1], [0, 0, 0]]


def test_validation_names_the_problem():
    with pytest.raises(ValueError, match=r"items\[1\] = 9 is out of range: IDs must be in \[0, 6\)"):
        Histories(np.array([0, 2]), np.array([1, 9]), num_items=6)
    with pytest.raises(ValueError, match="indptr must start at 0 and end at nnz=2"):
        Histories(np.array([0, 1]), np.array([1, 2]), num_items=6)
    with pytest.raises(ValueError, match="timestamps has 1 entries, items has 2"):
        Histories(np.array([0, 2]), np.array([1, 2]), num_items=6, timestamps=np.array([5]))
