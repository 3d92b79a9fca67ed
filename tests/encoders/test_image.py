import pytest
import torch
from torch import nn

from jointembed.encoders import HFImageEncoder, SmallCNNImageEncoder, TorchvisionImageEncoder
from jointembed.errors import CheckpointError


def test_resnet18_classifier_is_removed_and_trains_on_32px():
    torch.manual_seed(0)
    encoder = TorchvisionImageEncoder("resnet18", output_dim=16)
    assert isinstance(encoder.backbone.fc, nn.Identity)
    assert encoder.feature_dim == 512 and encoder.image_size is None
    out = encoder(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 16)
    out.sum().backward()
    assert encoder.backbone.conv1.weight.grad is not None


@pytest.mark.parametrize(("name", "attribute"), [("mobilenet_v3_small", "classifier.3"), ("vit_b_16", "heads.head")])
def test_classifier_of_other_families_is_removed(name, attribute):
    encoder = TorchvisionImageEncoder(name, output_dim=4)
    assert isinstance(encoder.backbone.get_submodule(attribute), nn.Identity)
    assert encoder.feature_dim == {"mobilenet_v3_small": 1024, "vit_b_16": 768}[name]
    if name == "vit_b_16":
        assert encoder.image_size == 224  # inputs are resized to the ViT's size
        assert encoder.preprocess(torch.rand(1, 3, 32, 32)).shape == (1, 3, 224, 224)


def test_normalisation_uses_imagenet_statistics_by_default():
    encoder = TorchvisionImageEncoder("resnet18", output_dim=4)
    x = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    torch.testing.assert_close(encoder.preprocess(x), torch.zeros(1, 3, 4, 4))
    assert "mean" not in encoder.state_dict()  # configuration, not weights


def _full_resnet18_state(tmp_path, **changes):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    state.update(changes)
    path = tmp_path / "resnet18.pt"
    torch.save(state, path)
    return path, state


def test_weights_path_loads_the_full_model_strictly(tmp_path):
    path, state = _full_resnet18_state(tmp_path)
    encoder = TorchvisionImageEncoder("resnet18", weights_path=str(path), output_dim=4)
    torch.testing.assert_close(encoder.backbone.conv1.weight, state["conv1.weight"])
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "resnet18.safetensors"))
    again = TorchvisionImageEncoder("resnet18", weights_path=str(tmp_path / "resnet18.safetensors"), output_dim=4)
    torch.testing.assert_close(again.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_weights_path_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    path, state = _full_resnet18_state(tmp_path, extra=torch.zeros(1), **{"fc.weight": torch.zeros(10, 512)})
    del state["conv1.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        TorchvisionImageEncoder("resnet18", weights_path=str(path))
    message = str(error.value)
    assert str(path) in message
    assert "missing keys ['conv1.weight']" in message
    assert "unexpected keys ['extra']" in message
    assert "fc.weight: file (10, 512) vs model (1000, 512)" in message
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        TorchvisionImageEncoder("resnet18", weights_path=str(tmp_path / "nope.pt"))
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        TorchvisionImageEncoder("resnet18", weights_path=str(tmp_path / "list.pt"))


def test_unknown_model_and_bad_inputs():
    with pytest.raises(
        ValueError, match="unknown torchvision classification model 'resnet99'; known models: .*resnet18"
    ):
        TorchvisionImageEncoder("resnet99")
    encoder = SmallCNNImageEncoder(**SmallCNNImageEncoder.tiny_config())
    with pytest.raises(ValueError, match=r"expects images \(n, 3, H, W\), got \(2, 1, 8, 8\)"):
        encoder(torch.rand(2, 1, 8, 8))


def test_small_cnn_handles_8px_digits_and_odd_sizes():
    encoder = SmallCNNImageEncoder(channels=(4, 8, 16), output_dim=5)
    assert encoder(torch.rand(3, 3, 8, 8)).shape == (3, 5)
    assert encoder(torch.rand(3, 3, 13, 9)).shape == (3, 5)
    gray = SmallCNNImageEncoder(channels=(4,), in_channels=1, mean=(0.5,), std=(0.5,), output_dim=5)
    assert gray(torch.rand(2, 1, 8, 8)).shape == (2, 5)


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_hf_vit_pooling_and_resizing(pooling):
    torch.manual_seed(0)
    encoder = HFImageEncoder(**{**HFImageEncoder.tiny_config(), "pooling": pooling}).eval()
    assert encoder.image_size == 32
    assert (encoder.backbone.pooler is not None) == (pooling == "pooler")
    with torch.no_grad():
        features = encoder.encode_backbone(torch.rand(2, 3, 16, 16))  # resized to 32
        hidden = encoder.backbone(pixel_values=encoder.preprocess(torch.rand(2, 3, 32, 32))).last_hidden_state
    assert features.shape == (2, 32) and hidden.shape == (2, 17, 32)  # CLS + 4×4 patches


def test_hf_clip_config_builds_the_vision_tower():
    from transformers import CLIPVisionModel

    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37}
    vision |= {"num_hidden_layers": 2, "num_attention_heads": 2, "projection_dim": 16}
    encoder = HFImageEncoder(config={"model_type": "clip", "vision_config": vision}, output_dim=8)
    assert isinstance(encoder.backbone, CLIPVisionModel)
    assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, 8)


def test_hf_pretrained_folder_reads_mean_and_std_from_its_image_processor(tmp_path):
    from transformers import ViTImageProcessor

    encoder = HFImageEncoder(**HFImageEncoder.tiny_config())
    encoder.backbone.save_pretrained(tmp_path)
    ViTImageProcessor(image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6]).save_pretrained(tmp_path)
    loaded = HFImageEncoder(str(tmp_path), output_dim=8)
    assert loaded.get_config()["mean"] == pytest.approx([0.1, 0.2, 0.3])
    torch.testing.assert_close(loaded.std.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    torch.testing.assert_close(loaded.backbone.state_dict(), encoder.backbone.state_dict())
    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.raises(OSError, match="pass mean and std"):
        HFImageEncoder(str(tmp_path))
    assert HFImageEncoder(str(tmp_path), mean=[0.5] * 3, std=[0.5] * 3).feature_dim == 32
