import json

import pytest
import torch

from jointembed.errors import CheckpointError
from jointembed.models.embedding_net import EmbeddingNet, load_network
from jointembed.nn import suggest_embedding_dim
from jointembed.pretrained import WEIGHTS_NAME, state_for_saving, write_folder
from jointembed.sparse import SparseBatch


def _batch() -> SparseBatch:
    return SparseBatch.from_lists([[0, 3], [5], [], [1, 1, 2]], weights=[[0.5, 1.0], [2.0], [], [1.0, 1.0, 0.25]])


def test_shapes_rule_of_thumb_and_embed():
    torch.manual_seed(0)
    net = EmbeddingNet(64, out_features=10, hidden_sizes=[16])
    assert net.embedding_dim == suggest_embedding_dim(64) == 3
    assert net.embed(_batch()).shape == (4, 3)
    out = net(_batch())
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()


def test_backward_reaches_embedding_and_tower():
    torch.manual_seed(0)
    net = EmbeddingNet(6, out_features=1, embedding_dim=4, num_dense_features=2, hidden_sizes=[8, 8])
    net(_batch(), torch.randn(4, 2)).sum().backward()
    grad = net.embedding.weight.grad
    assert grad is not None
    # rows of IDs in the batch get gradient, the unused row 4 gets none
    assert grad[[0, 1, 2, 3, 5]].abs().sum(dim=1).gt(0).all()
    assert grad[4].abs().sum() == 0
    assert all(p.grad is not None for p in net.tower.parameters())


def test_dense_features_are_concatenated_after_the_embedding():
    torch.manual_seed(0)
    net = EmbeddingNet(6, out_features=3, embedding_dim=4, num_dense_features=2, hidden_sizes=[])
    batch, dense = _batch(), torch.randn(4, 2)
    linear = net.tower[0]
    expected = torch.cat([net.embed(batch), dense], dim=1) @ linear.weight.T + linear.bias
    torch.testing.assert_close(net(batch, dense), expected)


def test_dense_feature_checks():
    net = EmbeddingNet(6, out_features=1, embedding_dim=2, num_dense_features=3)
    with pytest.raises(ValueError, match="takes 3 dense features but got none"):
        net(_batch())
    with pytest.raises(ValueError, match=r"dense features must have shape \(4, 3\), got \(4, 2\)"):
        net(_batch(), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="takes no dense features"):
        EmbeddingNet(6, out_features=1)(_batch(), torch.zeros(4, 1))


def test_check_input_sizes_and_parameter_count():
    net = EmbeddingNet(64, out_features=10, embedding_dim=8, hidden_sizes=[32])
    net.check_input_sizes(64, 0)
    with pytest.raises(ValueError, match="produces 400 sparse IDs .* set the model's num_embeddings to 400"):
        net.check_input_sizes(400, 0)
    with pytest.raises(ValueError, match="set the model's num_dense_features to 8"):
        net.check_input_sizes(64, 8)
    counts = net.num_parameters()
    assert counts == {"embedding": 64 * 8, "total": 64 * 8 + (8 * 32 + 32) + (32 * 10 + 10)}


def test_bad_arguments():
    with pytest.raises(ValueError, match="out_features must be positive"):
        EmbeddingNet(4, out_features=0)
    with pytest.raises(ValueError, match="num_dense_features must be >= 0"):
        EmbeddingNet(4, out_features=1, num_dense_features=-1)


def test_config_rebuilds_the_same_architecture_with_the_resolved_width():
    net = EmbeddingNet(81, out_features=2, num_dense_features=3, hidden_sizes=(8, 4), dropout=0.1, norm="layer")
    config = net.get_config()
    assert config["embedding_dim"] == suggest_embedding_dim(81) and config["hidden_sizes"] == [8, 4]
    again = EmbeddingNet.from_config(json.loads(json.dumps(config)))
    assert again.get_config() == config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"unknown EmbeddingNet argument\(s\) \['width'\]"):
        EmbeddingNet.from_config(config | {"width": 3})
    with pytest.raises(ValueError, match="cannot build an EmbeddingNet"):
        EmbeddingNet.from_config({"num_embeddings": 4, "out_features": 1, "hidden_sizes": 3})


def test_load_network_reads_weights_and_names_bad_files(tmp_path):
    torch.manual_seed(0)
    net = EmbeddingNet(6, out_features=2, embedding_dim=3, hidden_sizes=[4])
    config = {"format": "test", "version": 1, "network": net.get_config()}
    write_folder(tmp_path / "f", config, state_for_saving(net))
    loaded = load_network(tmp_path / "f", config)
    torch.testing.assert_close(loaded(_batch()), net(_batch()), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match=r"config\.json: field 'network': unknown EmbeddingNet argument"):
        load_network(tmp_path / "f", config | {"network": {**net.get_config(), "depth": 2}})
    with pytest.raises(CheckpointError, match="field 'network' must hold"):
        load_network(tmp_path / "f", {"format": "test", "version": 1})
    wider = config | {"network": {**net.get_config(), "embedding_dim": 5}}
    with pytest.raises(CheckpointError, match=r"shape mismatch: embedding\.bag\.weight"):
        load_network(tmp_path / "f", wider)
    weights = tmp_path / "f" / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read safetensors weights"):
        load_network(tmp_path / "f", config)


def test_sizes_left_to_the_data_build_the_same_network_as_sizes_given():
    torch.manual_seed(0)
    given = EmbeddingNet(81, out_features=3, num_dense_features=2, hidden_sizes=[8], norm="layer")
    torch.manual_seed(0)
    late = EmbeddingNet(None, out_features=None, num_dense_features=None, hidden_sizes=[8], norm="layer")
    assert not late.sized and list(late.parameters()) == []
    assert late.get_config()["num_embeddings"] is None and late.get_config()["embedding_dim"] is None
    with pytest.raises(RuntimeError, match="leaves num_embeddings, num_dense_features, out_features to the data"):
        late(_batch())
    late.set_sizes(81, 2, 3)
    # the rule of thumb of the final table, and the same weights drawn in the same order
    assert late.embedding_dim == suggest_embedding_dim(81) == given.embedding_dim
    assert late.get_config() == given.get_config()
    for (name, a), b in zip(given.state_dict().items(), late.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    weights = late.embedding.weight
    late.set_sizes(81, 2, 3)  # idempotent: nothing rebuilt
    assert late.embedding.weight is weights


def test_a_size_given_that_differs_from_the_data_names_both():
    net = EmbeddingNet(None, out_features=10, embedding_dim=4, num_dense_features=0)
    with pytest.raises(ValueError, match="needs 3 output.* out_features=10: set the model's out_features to 3"):
        net.set_sizes(64, 0, 3)
    with pytest.raises(ValueError, match="the data has 8 dense features .* num_dense_features=0"):
        net.set_sizes(64, 8, 10)
    assert not net.sized  # a refused size builds nothing
    net.set_sizes(64, 0, 10)
    with pytest.raises(ValueError, match="produces 50 sparse IDs but the network's table has num_embeddings=64"):
        net.set_sizes(50, 0, 10)
    with pytest.raises(ValueError, match="num_embeddings must be positive, got 0"):
        EmbeddingNet(None, None).set_sizes(0, 0, 1)


def test_sizes_from_a_state_dict():
    net = EmbeddingNet(20, out_features=3, embedding_dim=5, num_dense_features=4, hidden_sizes=[8, 6], norm="batch")
    prefixed = {f"model.{k}": v for k, v in net.state_dict().items()}
    late = EmbeddingNet(None, None, embedding_dim=5, num_dense_features=None, hidden_sizes=[8, 6], norm="batch")
    late.set_sizes_from_state_dict(prefixed, prefix="model.")
    assert late.get_config() == net.get_config()
    flat = EmbeddingNet(None, None, embedding_dim=2, num_dense_features=None, hidden_sizes=[])
    one_layer = EmbeddingNet(6, 2, embedding_dim=2, num_dense_features=1, hidden_sizes=[])
    flat.set_sizes_from_state_dict(one_layer.state_dict())
    assert (flat.num_embeddings, flat.num_dense_features, flat.out_features) == (6, 1, 2)


def test_a_folder_must_record_the_sizes(tmp_path):
    net = EmbeddingNet(6, out_features=2, embedding_dim=3, hidden_sizes=[4])
    config = {"format": "test", "version": 1, "network": net.get_config()}
    write_folder(tmp_path / "f", config, state_for_saving(net))
    unsized = config | {"network": {**net.get_config(), "num_embeddings": None, "out_features": None}}
    with pytest.raises(CheckpointError, match=r"'network' leaves num_embeddings, out_features null; .* final sizes"):
        load_network(tmp_path / "f", unsized)
