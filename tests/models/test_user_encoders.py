"""Contract of every registered user encoder (jointembed.models.user_encoders), inside a Recommender."""

import random

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from jointembed.models.recommender import Recommender
from jointembed.models.user_encoders import (
    BagUserEncoder,
    create_user_encoder,
    get_user_encoder_class,
    list_user_encoders,
    padded_sequences,
)
from jointembed.sparse import SparseBatch
from jointembed.tasks.recommendation import RecommendationTask

NUM_ITEMS, DIM = 30, 8
ENCODERS = list_user_encoders()


def _settings(name: str, **overrides) -> dict:
    """The tiny preset's arguments, as a recipe's user_encoder_config would give them."""
    settings = get_user_encoder_class(name).tiny(DIM).get_config()
    settings.pop("embedding_dim")
    return {**settings, **overrides}


def _model(name: str, sparse: bool = True, **overrides) -> Recommender:
    torch.manual_seed(0)
    config = _settings(name, **overrides)
    return Recommender(NUM_ITEMS, DIM, hidden_sizes=(16,), sparse=sparse, user_encoder=name, user_encoder_config=config)


def _histories() -> SparseBatch:
    return SparseBatch.from_lists([[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2], [0, 29]])


def test_registry_holds_the_three_encoders_and_rebuilds_each_from_its_config():
    assert {"bag", "sasrec", "gru"} <= set(ENCODERS)
    for name in ENCODERS:
        encoder = get_user_encoder_class(name).tiny(DIM)
        assert encoder.registry_name == name
        again = create_user_encoder(name, **encoder.get_config())
        assert again.get_config() == encoder.get_config()


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("sparse", [True, False])
def test_shapes_finite_and_gradients_reach_the_item_table(name, sparse):
    model = _model(name, sparse=sparse)
    users = model(_histories())
    assert users.shape == (4, DIM) and torch.isfinite(users).all()
    model.logits(users, torch.tensor([0, 7])).sum().backward()
    grad = model.input_embeddings.grad
    assert grad is not None and grad.is_sparse == sparse
    rows = grad.coalesce().to_dense() if sparse else grad
    touched = rows.abs().sum(1) > 0
    # only watched items' rows get a gradient through the history (the table is not tied here)
    assert touched[[3, 9, 8, 29]].all() and not touched[[10, 11, 12]].any()


@pytest.mark.parametrize("name", ENCODERS)
def test_empty_history_is_finite_and_a_row_ignores_the_others_padding(name):
    model = _model(name).eval()
    alone = model(SparseBatch.from_lists([[4, 2, 7]]))
    with_longer = model(SparseBatch.from_lists([[4, 2, 7], list(range(20)), []]))
    torch.testing.assert_close(with_longer[0], alone[0])
    assert torch.isfinite(with_longer).all()
    empty = model(SparseBatch.from_lists([[]]))
    assert empty.shape == (1, DIM) and torch.isfinite(empty).all()
    # serving (no gradients, eval: PyTorch's fused attention path) gives the same vectors
    torch.testing.assert_close(model.serving_user_vectors(SparseBatch.from_lists([[4, 2, 7]])), alone)


@pytest.mark.parametrize("name", ENCODERS)
def test_order_matters_exactly_to_the_sequential_encoders(name):
    model = _model(name).eval()
    history = [3, 11, 17, 25, 6]
    forward = model(SparseBatch.from_lists([history]))
    backward = model(SparseBatch.from_lists([history[::-1]]))
    encoder = get_user_encoder_class(name)
    assert encoder.order_sensitive == (name != "bag")
    if encoder.order_sensitive:
        assert (forward - backward).abs().max() > 1e-3
    else:
        torch.testing.assert_close(forward, backward)


@pytest.mark.parametrize("name", [n for n in ENCODERS if get_user_encoder_class(n).order_sensitive])
def test_sequential_encoders_read_only_the_latest_max_length_items(name):
    model = _model(name, max_length=4).eval()
    long = list(range(10))
    torch.testing.assert_close(model(SparseBatch.from_lists([long])), model(SparseBatch.from_lists([long[-4:]])))
    assert (model(SparseBatch.from_lists([long])) - model(SparseBatch.from_lists([long[-3:]]))).abs().max() > 1e-4


def test_padded_sequences_right_align_the_newest_item():
    ids, mask = padded_sequences(SparseBatch.from_lists([[1, 2, 3, 4], [], [7]]), max_length=3)
    assert ids.tolist() == [[2, 3, 4], [0, 0, 0], [0, 0, 7]]
    assert mask.tolist() == [[True, True, True], [False, False, False], [False, False, True]]


def test_bag_is_the_pooled_history_unchanged():
    model = _model("bag")
    history = _histories()
    torch.testing.assert_close(model.user_encoder(history, model.history_embedding), model.history_embedding(history))
    assert isinstance(model.user_encoder, BagUserEncoder) and not list(model.user_encoder.parameters())
    # a recommender built without naming an encoder is a bag model with the same weights
    torch.manual_seed(0)
    default = Recommender(NUM_ITEMS, DIM, hidden_sizes=(16,))
    assert default.config["user_encoder"] == "bag" and default.config["user_encoder_config"] == {}
    assert default.state_dict().keys() == model.state_dict().keys()
    for key, value in default.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_unknown_encoder_or_argument_is_refused_by_name():
    with pytest.raises(ValueError, match=r"user_encoder must be one of \['bag', 'gru', 'sasrec'\]"):
        Recommender(NUM_ITEMS, user_encoder="lstm")
    with pytest.raises(ValueError, match="does not fit user encoder 'gru'.*num_heads"):
        Recommender(NUM_ITEMS, user_encoder="gru", user_encoder_config={"num_heads": 2})
    with pytest.raises(ValueError, match="num_heads >= 1 dividing embedding_dim=8"):
        Recommender(NUM_ITEMS, DIM, user_encoder="sasrec", user_encoder_config={"num_heads": 3})
    with pytest.raises(ValueError, match="ordered history, not weighted bags"):
        _model("sasrec")(SparseBatch.from_lists([[1, 2]], weights=[[1.0, 2.0]]))


@pytest.mark.parametrize("name", ENCODERS)
def test_save_and_load_round_trip(name, tmp_path):
    model = _model(name).eval()
    folder = model.save_pretrained(tmp_path / name)
    loaded = Recommender.from_pretrained(folder)
    assert loaded.config == model.config and loaded.config["user_encoder"] == name
    assert type(loaded.user_encoder) is type(model.user_encoder)
    torch.testing.assert_close(loaded(_histories()), model(_histories()))


# A next-item task no bag can solve: the history is distinct random items in random order and the next item is
# the successor of the LAST one. A bag knows the items but not which came last: its best is about 1/length.
def _successor_examples(count: int, seed: int) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        target = rng.randrange(NUM_ITEMS)
        last = (target - 1) % NUM_ITEMS
        others = rng.sample([i for i in range(NUM_ITEMS) if i not in (target, last)], rng.randint(2, 5))
        examples.append((others + [last], target))  # the target is never in the history, so never excluded
    return examples


class SuccessorWorld(pl.LightningDataModule):
    """Train and validation examples of :func:`_successor_examples`, with item counts for a unigram proposal."""

    def __init__(self) -> None:
        super().__init__()
        self.num_items, self.num_user_features = NUM_ITEMS, 0
        self.train, self.val = _successor_examples(3000, seed=1), _successor_examples(300, seed=2)
        self.item_counts = torch.bincount(torch.tensor([t for _, t in self.train]), minlength=NUM_ITEMS)

    def train_dataloader(self) -> DataLoader:
        collate = lambda rows: {  # noqa: E731
            "history": SparseBatch.from_lists([h for h, _ in rows]),
            "target": torch.tensor([t for _, t in rows]),
        }
        return DataLoader(self.train, batch_size=64, shuffle=True, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        collate = lambda rows: {  # noqa: E731
            "history": SparseBatch.from_lists([h for h, _ in rows]),
            "targets": SparseBatch.from_lists([[t] for _, t in rows]),
        }
        return DataLoader(self.val, batch_size=100, collate_fn=collate)


def _hit_rate_at_1(name: str) -> float:
    pl.seed_everything(0, verbose=False)
    model = Recommender(NUM_ITEMS, 16, hidden_sizes=(), user_encoder=name, user_encoder_config=_settings(name))
    # the project's sampled softmax with log-Q correction (unigram proposal from the data's counts)
    task = RecommendationTask(
        model, loss="sampled_softmax", loss_config={"num_samples": 10}, lr=0.02, dense_lr=0.01, eval_k=1
    )
    trainer = pl.Trainer(
        max_epochs=8,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    data = SuccessorWorld()
    trainer.fit(task, data)
    return float(trainer.validate(task, data, verbose=False)[0]["val/hr@1"])


@pytest.mark.slow
def test_sequential_encoders_learn_the_next_item_a_bag_cannot():
    hit = {name: _hit_rate_at_1(name) for name in ENCODERS}
    assert hit["bag"] < 0.5, hit  # about 1/length: it cannot tell which item came last
    assert hit["sasrec"] > 0.9 and hit["gru"] > 0.9, hit


def test_sasrec_last_block_computes_the_newest_position_as_the_full_block_does():
    from jointembed.models.user_encoders import _Block

    torch.manual_seed(0)
    block = _Block(8, num_heads=2, ffn_width=16, dropout=0.0)
    x = torch.randn(3, 5, 8)
    allowed = (torch.rand(3, 1, 5, 5) > 0.3) | torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(block(x, allowed, last_only=True), block(x, allowed)[:, -1:])
