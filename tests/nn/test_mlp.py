import pytest
import torch
from torch import nn

from jointembed.nn import MLP


def test_shapes_and_layers():
    mlp = MLP(8, [16, 4], out_features=3, activation="gelu", dropout=0.1, norm="layer")
    assert mlp.out_dim == 3
    assert mlp(torch.randn(5, 8)).shape == (5, 3)
    kinds = [type(m) for m in mlp]
    assert kinds == [
        nn.Linear,
        nn.LayerNorm,
        nn.GELU,
        nn.Dropout,
        nn.Linear,
        nn.LayerNorm,
        nn.GELU,
        nn.Dropout,
        nn.Linear,
    ]


def test_without_output_layer_ends_on_last_hidden_and_empty_is_identity():
    assert MLP(8, [16]).out_dim == 16
    x = torch.randn(2, 8)
    assert torch.equal(MLP(8)(x), x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "swish"}, "activation must be one of"),
        ({"norm": "group"}, "norm must be one of"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"hidden_sizes": [4, 0]}, "hidden sizes must be positive"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(8, **kwargs)
