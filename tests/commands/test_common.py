"""Which exceptions a command reports in one line (:func:`jointembed.commands.common.user_error_message`)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from jointembed.commands.common import UserError, user_error_message
from jointembed.errors import DataFormatError, UnknownItemError


class _BadRow(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        raise DataFormatError(f"train.jsonl, line {index + 1}: column 'image': no such file")


def test_errors_in_the_users_input_are_one_line_and_bugs_are_not():
    assert user_error_message(UserError("-k must be at least 1, got 0")) == "-k must be at least 1, got 0"
    assert user_error_message(FileNotFoundError("manifest m.jsonl does not exist")) == "manifest m.jsonl does not exist"
    assert (
        user_error_message(UnknownItemError("item 'S' is not in the catalogue")) == "item 'S' is not in the catalogue"
    )
    assert user_error_message(KeyError("field 'x'")) == "field 'x'"  # without KeyError's quotes
    for bug in (TypeError("unsupported operand"), AttributeError("no attribute 'lengths'"), IndexError("3"),
                RuntimeError("shape mismatch"), ZeroDivisionError()):  # fmt: skip
        assert user_error_message(bug) is None, bug


def test_an_error_in_a_data_loader_worker_is_reported_without_the_workers_traceback():
    """torch re-raises it with the worker's whole traceback as its message."""
    try:
        next(iter(DataLoader(_BadRow(), num_workers=1)))
    except DataFormatError as error:
        assert "Original Traceback" in str(error)
        assert user_error_message(error) == "train.jsonl, line 1: column 'image': no such file"
    else:
        raise AssertionError("the worker's error was not raised")
