"""The checks of constructor arguments that every task and data module shares (:mod:`jointembed.config`)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from jointembed.config import check_at_least, check_non_negative, check_positive


def test_a_valid_value_comes_back_unchanged():
    assert check_positive("lr", 1e-3) == 1e-3
    assert check_positive("lr", np.float32(0.5)) == np.float32(0.5)
    assert check_non_negative("weight_decay", 0) == 0
    assert check_at_least("batch_size", np.int64(3), 1) == 3


@pytest.mark.parametrize(
    ("check", "value", "error", "message"),
    [
        (check_positive, -1.0, ValueError, "lr must be > 0, got -1.0"),
        (check_positive, 0, ValueError, "lr must be > 0, got 0"),
        (check_positive, math.inf, ValueError, "lr must be a finite number > 0, got inf"),
        (check_non_negative, -1e-4, ValueError, "lr must be >= 0, got -0.0001"),
        (check_non_negative, math.nan, ValueError, "lr must be a finite number >= 0, got nan"),
        (check_positive, "0.1", TypeError, "lr must be a number > 0, got str '0.1'"),
        (check_positive, True, TypeError, "lr must be a number > 0, got bool True"),
        (check_positive, None, TypeError, "lr must be a number > 0, got NoneType None"),
    ],
)
def test_an_impossible_value_is_named_with_what_would_be_valid(check, value, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        check("lr", value)


def test_a_count_must_be_an_integer():
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got 0$"):
        check_at_least("batch_size", 0, 1)
    with pytest.raises(TypeError, match=r"^batch_size must be an integer >= 1, got float 2\.5$"):
        check_at_least("batch_size", 2.5, 1)
