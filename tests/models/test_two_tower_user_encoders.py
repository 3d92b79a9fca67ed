"""Every registered user encoder (jointembed.models.user_encoders) as the two-tower's user tower: shapes,
gradients, empty histories, order, folders old and new, and a short cold-start fit with ``sasrec``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from jointembed.data.coldstart import MovieWorldColdStartDataModule
from jointembed.encoders.text import ScratchTextEncoder
from jointembed.models.pretrained_two_tower import PretrainedTwoTower
from jointembed.models.two_tower import TwoTowerRecommender
from jointembed.models.user_encoders import BagUserEncoder, get_user_encoder_class, list_user_encoders
from jointembed.sparse import SparseBatch
from jointembed.tasks.coldstart import ColdStartTask

NUM_ITEMS, ID_DIM, DIM = 30, 8, 8
ENCODERS = list_user_encoders()
TEXTS = [f"movie {i} genre{i % 4} decade{i % 3}" for i in range(NUM_ITEMS)]
# The parameter names of this tiny model before user encoders were a choice (read off the code of then): a bag
# model keeps exactly these, so its old folders and checkpoints load strictly.
BAG_KEYS = [
    "content.embedding.bag.weight", "content.head.mlp.0.weight", "content.head.mlp.0.bias",
    "history_embedding.bag.weight", "user_tower.0.weight", "user_tower.0.bias", "user_tower.2.weight",
    "user_tower.2.bias", "item_ids.weight", "id_bias.weight", "content_bias.weight", "content_bias.bias",
]  # fmt: skip


def _settings(name: str, **overrides) -> dict:
    """The tiny preset's arguments, as a recipe's user_encoder_config would give them."""
    settings = get_user_encoder_class(name).tiny(ID_DIM).get_config()
    settings.pop("embedding_dim")
    return {**settings, **overrides}


def _model(name: str | None, **kwargs) -> TwoTowerRecommender:
    """A seeded tiny two-tower with user encoder ``name`` (``None``: the constructor's default)."""
    torch.manual_seed(0)
    content = ScratchTextEncoder(num_buckets=64, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=DIM)
    chosen = {} if name is None else {"user_encoder": name, "user_encoder_config": _settings(name)}
    return TwoTowerRecommender(content, num_items=NUM_ITEMS, id_dim=ID_DIM, hidden_sizes=[16], **chosen, **kwargs)


def _histories() -> SparseBatch:
    return SparseBatch.from_lists([[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2], [0, 29]])


def _scores(model: TwoTowerRecommender, history: SparseBatch) -> torch.Tensor:
    """``(B, N)`` the served scores of every movie (all warm) for each history."""
    warm = torch.ones(NUM_ITEMS, dtype=torch.bool)
    vectors, biases = model.catalogue(TEXTS, warm)
    return model.user_queries(history) @ model.item_rows(vectors, biases, TEXTS, warm).T


@pytest.mark.parametrize("name", ENCODERS)
def test_shapes_unit_norm_and_gradients_reach_the_history_table_and_the_encoder(name: str) -> None:
    model = _model(name, recent_items=2, history_content=True)
    history = _histories()
    users = model.user_vectors(history, history.tail(2), TEXTS)
    assert users.shape == (4, DIM) and torch.isfinite(users).all()
    torch.testing.assert_close(users.norm(dim=1), torch.ones(4))
    (users * torch.randn_like(users)).sum().backward()
    touched = model.history_embedding.weight.grad.abs().sum(1) > 0
    assert touched[[3, 9, 8, 29]].all() and not touched[[10, 11, 12]].any()  # only watched rows
    own = list(model.user_encoder.parameters())
    assert (len(own) > 0) == (name != "bag")
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)


@pytest.mark.parametrize("name", ENCODERS)
def test_empty_history_is_finite_and_a_row_ignores_the_others(name: str) -> None:
    model = _model(name).eval()
    alone = model.user_vectors(SparseBatch.from_lists([[4, 2, 7]]))
    with_others = model.user_vectors(SparseBatch.from_lists([[4, 2, 7], list(range(20)), []]))
    torch.testing.assert_close(with_others[0], alone[0])
    assert torch.isfinite(with_others).all()
    empty = model.user_vectors(SparseBatch.from_lists([[]]))
    assert empty.shape == (1, DIM) and torch.isfinite(empty).all()


@pytest.mark.parametrize("name", ENCODERS)
def test_order_matters_exactly_to_the_sequential_encoders(name: str) -> None:
    model = _model(name).eval()
    history = [3, 11, 17, 25, 6]
    forward = model.user_vectors(SparseBatch.from_lists([history]))
    backward = model.user_vectors(SparseBatch.from_lists([history[::-1]]))
    if get_user_encoder_class(name).order_sensitive:
        assert name != "bag" and (forward - backward).abs().max() > 1e-3
    else:
        assert name == "bag"
        torch.testing.assert_close(forward, backward)


@pytest.mark.parametrize("name", ENCODERS)
def test_folder_round_trip_gives_the_same_scores(name: str, tmp_path: Path) -> None:
    model = _model(name).eval()
    extra = {"item_keys": list(range(NUM_ITEMS)), "item_texts": TEXTS, "warm": [True] * NUM_ITEMS}
    folder = model.save_pretrained(tmp_path / name, extra)
    saved = json.loads((folder / "config.json").read_text())["model"]
    assert saved["user_encoder"] == name and saved["user_encoder_config"] == model.config["user_encoder_config"]
    served = PretrainedTwoTower.from_pretrained(folder)
    assert type(served.model.user_encoder) is type(model.user_encoder)
    assert served.model.config == model.config
    torch.testing.assert_close(_scores(served.model, _histories()), _scores(model, _histories()), rtol=0, atol=0)
    again = TwoTowerRecommender.from_config(model.get_config())  # what a checkpoint's configuration rebuilds
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(_scores(again.eval(), _histories()), _scores(model, _histories()), rtol=0, atol=0)


def test_config_holds_every_encoder_argument_defaults_included() -> None:
    torch.manual_seed(0)
    content = ScratchTextEncoder(num_buckets=64, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=DIM)
    model = TwoTowerRecommender(content, id_dim=ID_DIM, user_encoder="sasrec", user_encoder_config={"max_length": 5})
    assert model.config["user_encoder_config"] == {"max_length": 5}  # until the tables are built
    model.set_num_items(NUM_ITEMS)
    expected = {"max_length": 5, "num_layers": 2, "num_heads": 1, "ffn_factor": 1, "dropout": 0.2, "causal": True}
    assert model.config["user_encoder_config"] == expected
    assert model.user_encoder.positions.shape == (5, ID_DIM)  # the encoder is as wide as the ID table


def test_bag_is_the_model_of_before_same_keys_same_weights_same_vectors() -> None:
    default, bag = _model(None), _model("bag")
    assert default.config["user_encoder"] == "bag" and default.config["user_encoder_config"] == {}
    assert isinstance(default.user_encoder, BagUserEncoder) and not list(default.user_encoder.parameters())
    assert list(default.state_dict()) == BAG_KEYS and list(bag.state_dict()) == BAG_KEYS
    for key, value in default.state_dict().items():
        assert torch.equal(bag.state_dict()[key], value), key
    history = _histories()
    # the user tower of before, written out: normalize(MLP(pooled bag)), bit for bit
    before = F.normalize(default.user_tower(default.history_embedding(history)), dim=-1)
    assert torch.equal(default.user_vectors(history), before)


def test_a_folder_saved_before_user_encoders_loads_as_bag_with_the_same_weights(tmp_path: Path) -> None:
    model = _model(None).eval()
    extra = {"item_keys": list(range(NUM_ITEMS)), "item_texts": TEXTS, "warm": [True] * NUM_ITEMS}
    folder = model.save_pretrained(tmp_path / "old", extra)
    config = json.loads((folder / "config.json").read_text())
    del config["model"]["user_encoder"], config["model"]["user_encoder_config"]  # as written before the choice
    (folder / "config.json").write_text(json.dumps(config))
    served = PretrainedTwoTower.from_pretrained(folder)  # strict loading: no missing or unexpected key
    assert isinstance(served.model.user_encoder, BagUserEncoder)
    assert served.model.config["user_encoder"] == "bag"
    for key, value in model.state_dict().items():
        assert torch.equal(served.model.state_dict()[key], value), key
    assert torch.equal(_scores(served.model, _histories()), _scores(model, _histories()))


def test_unknown_encoder_or_argument_is_refused_by_name() -> None:
    content = ScratchTextEncoder(num_buckets=64, min_ngram=0, embedding_dim=8, architecture="bag", output_dim=DIM)
    with pytest.raises(ValueError, match=r"user_encoder must be one of \['bag', 'gru', 'sasrec'\], got 'lstm'"):
        TwoTowerRecommender(content, user_encoder="lstm")
    with pytest.raises(ValueError, match="does not fit user encoder 'gru'.*num_heads"):
        TwoTowerRecommender(content, user_encoder="gru", user_encoder_config={"num_heads": 2})
    with pytest.raises(ValueError, match="num_heads >= 1 dividing embedding_dim=8"):
        TwoTowerRecommender(content, NUM_ITEMS, id_dim=8, user_encoder="sasrec", user_encoder_config={"num_heads": 3})


@pytest.mark.slow
def test_coldstart_fit_with_sasrec_beats_random_on_warm_movies(tmp_path: Path) -> None:
    L.seed_everything(0)
    data = MovieWorldColdStartDataModule(num_movies=300, num_users=500, num_hidden_aspects=0, causal=True,
                                         max_history=50, batch_size=128)  # fmt: skip
    content = ScratchTextEncoder(num_buckets=512, min_ngram=0, embedding_dim=16, architecture="bag", output_dim=16)
    model = TwoTowerRecommender(content, id_dim=16, hidden_sizes=[32], user_encoder="sasrec",
                                user_encoder_config={"max_length": 20, "num_layers": 1, "dropout": 0.1})  # fmt: skip
    task = ColdStartTask(model, lr=0.01, num_negatives=64)
    task.bind_data(data)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data)
    metrics = task.extra_test_metrics()
    mine, random = (metrics[f"test_coldstart/warm/{name}/recall@10"] for name in ("two_tower", "random"))
    assert mine > 4 * random, (mine, random)  # measured: 0.41 against 0.05
    # its checkpoint rebuilds the sequential user tower from the configuration it carries
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = ColdStartTask.load_from_checkpoint(tmp_path / "last.ckpt")
    assert loaded.model.config["user_encoder"] == "sasrec" and loaded.model.config == task.model.config
    for key, value in task.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
