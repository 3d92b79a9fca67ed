"""Every data module refuses an impossible loader or generator setting when it is built, naming the argument and
the value (``batch_size 0`` once failed inside a DataLoader after the data was read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jointembed.data.class_folders import ClassFolderDataModule
from jointembed.data.digits import DigitsDataModule
from jointembed.data.housing import HousingDataModule
from jointembed.data.multimodal import MultimodalDataModule
from jointembed.data.recommendation import MovieLensDataModule, MovieWorldDataModule

MODULES: dict[str, Callable[..., Any]] = {
    "digits": DigitsDataModule,
    "housing": HousingDataModule,
    "multimodal": lambda **kw: MultimodalDataModule(train="train.jsonl", **kw),
    "class_folders": lambda **kw: ClassFolderDataModule(path="esc10", **kw),
    "movielens": lambda **kw: MovieLensDataModule(path="ml-100k", **kw),
    "movie_world": MovieWorldDataModule,
}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"batch_size": 0}, r"^batch_size must be >= 1, got 0$"),
        ({"num_workers": -1}, r"^num_workers must be >= 0, got -1$"),
    ],
)
def test_a_loader_setting_out_of_range_is_refused_when_the_module_is_built(module, setting, message):
    with pytest.raises(ValueError, match=message):
        MODULES[module](**setting)


def test_recommendation_modules_check_their_eval_batch_size_and_generator_settings():
    with pytest.raises(ValueError, match=r"^eval_batch_size must be >= 1, got 0$"):
        MovieWorldDataModule(eval_batch_size=0)
    with pytest.raises(ValueError, match=r"^temperature must be > 0, got 0\.0$"):
        MovieWorldDataModule(temperature=0.0)
