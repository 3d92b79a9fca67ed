"""Contract tests run on every registered encoder, built from its ``tiny_config()`` (timm-style)."""

import json

import pytest
import torch

from jointembed.encoders import Encoder
from jointembed.registry import create_encoder, get_encoder_class, list_encoders

NAMES = list_encoders()


@pytest.fixture(params=NAMES)
def encoder(request) -> Encoder:
    torch.manual_seed(0)
    return create_encoder(request.param, **get_encoder_class(request.param).tiny_config())


def _assert_embeddings(out: torch.Tensor, n: int, dim: int) -> None:
    assert out.shape == (n, dim)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(n), atol=1e-5, rtol=0)


def test_every_modality_has_an_encoder():
    modalities = {get_encoder_class(name).modality for name in NAMES}
    assert {"ids", "text", "image", "audio"} <= modalities


def test_registry_name_config_and_output_dim(encoder):
    assert encoder.registry_name in NAMES
    assert isinstance(encoder, Encoder)
    config = encoder.get_config()
    assert json.loads(json.dumps(config)) == config
    for key, value in type(encoder).tiny_config().items():
        assert config[key] == value
    assert encoder.output_dim == config["output_dim"] == 8


def test_forward_gives_unit_vectors(encoder):
    encoder.eval()
    with torch.no_grad():
        _assert_embeddings(encoder(encoder.example_inputs(3)), 3, encoder.output_dim)
        assert encoder.encode_backbone(encoder.example_inputs(3)).shape == (3, encoder.feature_dim)


def test_empty_batch_gives_no_rows(encoder):
    encoder.eval()
    with torch.no_grad():
        assert encoder(encoder.example_inputs(0)).shape == (0, encoder.output_dim)


def test_backward_reaches_head_and_backbone(encoder):
    encoder.train()
    out = encoder(encoder.example_inputs(3))
    (out * torch.randn_like(out)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.head_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.backbone_parameters())


def test_parameter_groups_partition_the_parameters(encoder):
    head = {id(p) for p in encoder.head_parameters()}
    backbone = {id(p) for p in encoder.backbone_parameters()}
    assert head and backbone and not head & backbone
    assert head | backbone == {id(p) for p in encoder.parameters()}


def test_freeze_stops_backbone_gradients_and_keeps_it_in_eval_mode(encoder):
    assert encoder.freeze() is encoder
    encoder.train()
    assert encoder.head.training
    assert not any(m.training for name, m in encoder.named_modules() if name and not name.startswith("head"))
    out = encoder(encoder.example_inputs(3))
    (out * torch.randn_like(out)).sum().backward()
    assert all(p.grad is None for p in encoder.backbone_parameters())
    assert all(p.grad is not None for p in encoder.head_parameters())
    encoder.freeze(False)
    assert all(p.requires_grad for p in encoder.parameters())
    assert all(m.training for m in encoder.modules())


def test_config_and_state_dict_round_trip(encoder):
    encoder.eval()
    inputs = encoder.example_inputs(3)
    config = json.loads(json.dumps(encoder.get_config()))
    torch.manual_seed(123)  # a different random initialisation, overwritten by the state dict
    rebuilt = create_encoder(encoder.registry_name, **config)
    rebuilt.load_state_dict(encoder.state_dict(), strict=True)
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(inputs), encoder(inputs), atol=1e-6, rtol=0)


def test_eval_is_deterministic(encoder):
    encoder.eval()
    inputs = encoder.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(encoder(inputs), encoder(inputs), atol=0, rtol=0)
