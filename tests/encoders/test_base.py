import pathlib

import pytest
import torch

from jointembed.encoders import IdEncoder, ProjectionHead, masked_mean


def test_projection_head_is_linear_then_l2_norm():
    torch.manual_seed(0)
    head = ProjectionHead(4, 3)
    x = torch.randn(5, 4)
    linear = head.mlp[0]
    expected = x @ linear.weight.T + linear.bias
    torch.testing.assert_close(head(x), expected / expected.norm(dim=1, keepdim=True))
    assert len(ProjectionHead(4, 3, hidden_sizes=[8]).mlp) == 3  # Linear, GELU, Linear
    with pytest.raises(ValueError, match="output_dim must be a positive integer"):
        ProjectionHead(4, 0)


def test_masked_mean_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def test_config_holds_json_types():
    encoder = IdEncoder(10, embedding_dim=4, hidden_sizes=(6,), head_hidden_sizes=(5,), output_dim=3)
    assert encoder.get_config() == {
        "num_embeddings": 10,
        "embedding_dim": 4,
        "combiner": "mean",
        "hidden_sizes": [6],
        "dropout": 0.0,
        "padding_idx": None,
        "sparse": False,
        "output_dim": 3,
        "head_hidden_sizes": [5],
    }
    config = encoder.get_config()
    config["hidden_sizes"].append(99)
    assert encoder.get_config()["hidden_sizes"] == [6]  # a copy


def test_paths_in_arguments_become_strings_and_other_objects_are_refused(tmp_path: pathlib.Path):
    from jointembed.encoders import TorchvisionImageEncoder

    model = TorchvisionImageEncoder("resnet18", output_dim=2)
    weights = tmp_path / "w.pt"
    torch.save(
        model.backbone.state_dict() | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, weights
    )
    assert TorchvisionImageEncoder("resnet18", weights_path=weights, output_dim=2).get_config()["weights_path"] == str(
        weights
    )
    with pytest.raises(TypeError, match="JSON-serialisable"):
        TorchvisionImageEncoder("resnet18", model_kwargs={"norm_layer": torch.nn.Identity})


def test_a_dict_of_encoders_parses_from_yaml_with_jsonargparse():
    """Recipes give ``encoders: dict[str, Encoder]`` as class_path / init_args per modality (LightningCLI style)."""
    from jsonargparse import ArgumentParser

    from jointembed.encoders import Encoder, ScratchTextEncoder

    yaml = """
    encoders:
      ids: {class_path: jointembed.encoders.IdEncoder, init_args: {num_embeddings: 20, output_dim: 8}}
      text: {class_path: ScratchTextEncoder, init_args: {num_buckets: 64, embedding_dim: 8, output_dim: 8}}
    """
    parser = ArgumentParser()
    parser.add_argument("--encoders", type=dict[str, Encoder])
    encoders = parser.instantiate(parser.parse_string(yaml)).encoders
    assert isinstance(encoders["ids"], IdEncoder) and isinstance(encoders["text"], ScratchTextEncoder)
    assert encoders["text"].get_config()["num_buckets"] == 64
