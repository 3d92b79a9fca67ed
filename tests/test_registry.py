import pytest
import torch
from torch import nn

from jointembed import registry
from jointembed.encoders import IdEncoder
from jointembed.registry import create_encoder, get_encoder_class, list_encoders, list_losses, register_loss


def test_builtin_encoders_are_registered_lazily():
    assert {
        "ids",
        "hf_text",
        "scratch_text",
        "torchvision_image",
        "cnn_image",
        "hf_image",
        "audio_cnn",
        "hf_audio",
    } <= set(list_encoders())
    assert get_encoder_class("ids") is IdEncoder
    assert IdEncoder.registry_name == "ids"


def test_unknown_name_lists_registered_names():
    with pytest.raises(KeyError, match="unknown encoder 'nope'; registered encoders: .*hf_text.*scratch_text"):
        create_encoder("nope")
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        registry.create_loss("nope")


def test_create_encoder_passes_arguments_even_one_called_name():
    encoder = create_encoder("torchvision_image", name="resnet18", output_dim=4)
    assert encoder.output_dim == 4 and encoder.feature_dim == 512


def test_register_loss_and_duplicates(monkeypatch):
    monkeypatch.setattr(registry.LOSSES, "table", {})

    @register_loss("toy")
    class Toy(nn.Module):
        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale

    assert "toy" in list_losses()
    assert registry.create_loss("toy", scale=2.0).scale == 2.0
    assert register_loss("toy")(Toy) is Toy  # the same class again (a reloaded module) is fine

    class Other(nn.Module):
        pass

    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_loss("toy")(Other)
    with pytest.raises(ValueError, match="non-empty string"):
        register_loss("")


def test_registry_does_not_import_torch_until_used():
    import subprocess
    import sys

    code = "import sys, jointembed.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert torch.is_tensor(torch.zeros(1))
