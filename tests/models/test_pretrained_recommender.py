import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import jointembed.pretrained as pretrained_module
from jointembed.data.interactions import Interactions
from jointembed.errors import CheckpointError, UnknownItemError
from jointembed.models.pretrained_recommender import PretrainedRecommender
from jointembed.models.recommender import Recommender
from jointembed.sparse import SparseBatch
from jointembed.vocab import Vocabulary

TITLES = [f"movie {i}" for i in range(12)]


def _histories() -> SparseBatch:
    return SparseBatch.from_lists([[0, 1, 2], [5], [7, 8, 9, 10]])


KEYS = [100 + 7 * i for i in range(12)]  # MovieLens-style raw movie IDs, not 0..N-1


def _catalogue_model(**kwargs) -> Recommender:
    torch.manual_seed(0)
    return Recommender(12, embedding_dim=4, hidden_sizes=(8,), dropout=0.3, **kwargs)


def test_save_load_round_trip_gives_identical_logits_in_eval_mode(tmp_path):
    model = _catalogue_model(num_user_features=12)
    model.train()
    folder = model.save_pretrained(tmp_path / "rec", KEYS, TITLES, recent_items=2)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert (config["format"], config["version"], config["recent_items"]) == ("jointembed.recommender", 1, 2)
    assert config["model"] == model.config and config["item_keys"] == KEYS and config["item_titles"] == TITLES
    loaded = Recommender.from_pretrained(folder)
    assert not loaded.training and loaded.config == model.config
    model.eval()
    history = _histories()
    with torch.no_grad():
        expected = model.logits(model(history, history.tail(2)))
        got = loaded.logits(loaded(history, history.tail(2)))
    assert torch.equal(got, expected)


def test_recommend_by_raw_keys_equals_recommend_by_ids(tmp_path):
    # a tiny log with MovieLens-style raw IDs: the vocabulary maps them to 0..N-1 in count order
    raw = [(1, 128), (1, 114), (2, 128), (2, 142), (3, 177), (3, 128), (3, 114), (4, 100)]
    vocab = Vocabulary.from_values([m for _, m in raw] + KEYS, pad_token=None, oov_token=None)
    items = vocab.encode_many([m for _, m in raw])
    data = Interactions(
        users=[u - 1 for u, _ in raw], items=items, timestamps=list(range(len(raw))), num_users=4,
        num_items=12, item_titles=[f"title of {key}" for key in vocab.values], item_vocab=vocab,
    )  # fmt: skip
    model = _catalogue_model()
    model.save_pretrained(tmp_path / "rec", data.item_vocab.values, data.item_titles)
    recommender = PretrainedRecommender.from_pretrained(tmp_path / "rec")
    histories = [[128, 114], [177, 128, 114]]
    by_ids = model.eval().recommend(SparseBatch.from_lists([vocab.encode_many(h) for h in histories]), k=5)
    got = recommender.recommend(histories, k=5)
    for row, ids, scores in zip(got, by_ids.ids.tolist(), by_ids.scores.tolist(), strict=True):
        assert [item.key for item in row] == vocab.decode_many(ids)
        assert [item.title for item in row] == [f"title of {vocab.decode(i)}" for i in ids]
        torch.testing.assert_close([item.score for item in row], scores)
    assert not {item.key for item in got[0]} & {128, 114}  # watched items are excluded
    # one history gives one list; keys as strings, titles and numpy ints find the same items
    single = recommender.recommend([128, 114], k=5)
    assert [item[:2] for item in single] == [item[:2] for item in got[0]]
    torch.testing.assert_close([item.score for item in single], [item.score for item in got[0]])
    assert recommender.recommend(["128", "title of 114"], k=5) == single
    assert recommender.recommend([np.int64(128), torch.tensor(114)], k=5) == single
    assert len(recommender.recommend([128, 114], k=12)) == 10  # only 10 unwatched items are left
    assert len(recommender.recommend([128, 114], k=12, exclude_seen=False)) == 12


def test_unknown_or_ambiguous_keys_are_named(tmp_path):
    titles = TITLES[:-1] + [TITLES[0]]  # two items share a title
    _catalogue_model().save_pretrained(tmp_path / "rec", KEYS, titles)
    recommender = PretrainedRecommender.from_pretrained(tmp_path / "rec")
    with pytest.raises(UnknownItemError, match=r"history 1: item 99 is neither a key nor a title .* 12 items"):
        recommender.recommend([[100], [107, 99]])
    with pytest.raises(UnknownItemError, match=r"title 'movie 0' names 2 items \(keys \[100, 177\]\)"):
        recommender.similar_items("movie 0")
    with pytest.raises(UnknownItemError, match="item keys must be ints or strs, got True"):
        recommender.item_id(True)
    with pytest.warns(UserWarning, match="history 0: skipped item 'nope'"):
        skipped = recommender.recommend([100, "nope", 107], unknown="skip")
    assert skipped == recommender.recommend([100, 107])
    with pytest.raises(ValueError, match="user at position 0 has no history"):
        recommender.recommend([])


def test_similar_items_by_raw_key(tmp_path):
    model = _catalogue_model()
    recommender = PretrainedRecommender(model, KEYS, TITLES)
    by_ids = model.similar_items([3], k=4)
    got = recommender.similar_items(KEYS[3], k=4)
    assert [item.key for item in got] == [KEYS[j] for j in by_ids.ids[0].tolist()]
    assert [item.title for item in got] == [TITLES[j] for j in by_ids.ids[0].tolist()]
    assert KEYS[3] not in [item.key for item in got]


def test_recent_watches_bag_is_built_from_the_latest_watches(tmp_path):
    model = _catalogue_model(num_user_features=12)
    recommender = PretrainedRecommender(model, recent_items=2)  # keys are the item IDs
    history = SparseBatch.from_lists([[0, 1, 2], [5], [7, 8, 9, 10]])
    expected = model.recommend(history, k=3, user_features=SparseBatch.from_lists([[1, 2], [5], [9, 10]]))
    got = recommender.recommend(history.tolist(), k=3)
    assert [[item.key for item in row] for row in got] == expected.ids.tolist()
    with pytest.raises(ValueError, match="user features beyond the watch history"):
        PretrainedRecommender(model).recommend([1, 2])
    with pytest.raises(ValueError, match="needs num_user_features=12"):
        _catalogue_model().save_pretrained(tmp_path / "bad", recent_items=2)


def test_bad_catalogues_are_refused_before_writing(tmp_path):
    model = _catalogue_model()
    with pytest.raises(ValueError, match="'item_keys' must list the model's 12 items, got 2"):
        model.save_pretrained(tmp_path / "rec", [1, 2])
    with pytest.raises(ValueError, match="repeats the key 100"):
        model.save_pretrained(tmp_path / "rec", [100] * 12)
    with pytest.raises(ValueError, match="item keys must be ints or strs"):
        model.save_pretrained(tmp_path / "rec", [1.5] * 12)
    assert not (tmp_path / "rec").exists()


def _corrupt(folder, how):
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    if how == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif how == "tampered header":
        weights.write_bytes(data[:8] + b"{not json" + data[17:])
    else:  # a valid file whose tensors do not fit the model
        save_file({"history_embedding.weight": torch.zeros(3, 3)}, str(weights))


@pytest.mark.parametrize("how", ["truncated", "tampered header", "wrong tensors"])
def test_damaged_weights_are_a_checkpoint_error(tmp_path, how):
    folder = _catalogue_model().save_pretrained(tmp_path / "rec", KEYS)
    _corrupt(folder, how)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        PretrainedRecommender.from_pretrained(folder)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"format": "jointembed.joint"}, "field 'format' is 'jointembed.joint', expected 'jointembed.recommender'"),
        ({"version": 2}, "field 'version' is 2"),
        ({"model": {"num_items": 12, "layers": 3}}, "field 'model' does not fit .* 'layers'"),
        ({"item_keys": [1, 2]}, "'item_keys' must list the model's 12 items"),
        ({"recent_items": -1}, "'recent_items' must be an integer >= 0"),
    ],
)
def test_bad_config_is_a_checkpoint_error_naming_the_field(tmp_path, change, match):
    folder = _catalogue_model().save_pretrained(tmp_path / "rec", KEYS)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=match):
        Recommender.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="no such file or folder"):
        Recommender.from_pretrained(tmp_path / "missing")


def test_interrupted_save_leaves_the_previous_folder_whole(tmp_path, monkeypatch):
    old = _catalogue_model()
    folder = old.save_pretrained(tmp_path / "rec", KEYS, TITLES)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def crash(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained_module, "save_file", crash)
    new = Recommender(12, embedding_dim=4, hidden_sizes=(8,))
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(folder, KEYS)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["rec"]  # no temporary folder left behind
    loaded = PretrainedRecommender.from_pretrained(folder)
    assert loaded.item_titles == TITLES and torch.equal(loaded.model.item_table, old.item_table)


def test_names_moved_here_still_import_from_the_recommender_module():
    import jointembed.errors
    import jointembed.models.pretrained_recommender as moved
    import jointembed.models.recommender as old

    assert old.PretrainedRecommender is moved.PretrainedRecommender and old.ItemScore is moved.ItemScore
    assert old.UnknownItemError is jointembed.errors.UnknownItemError is UnknownItemError
    assert issubclass(UnknownItemError, KeyError) and str(UnknownItemError("item 3")) == "item 3"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        old.Nope  # noqa: B018


def test_a_model_sized_from_the_data_saves_its_final_sizes(tmp_path):
    model = Recommender(None, hidden_sizes=(8,), num_user_features=None)
    with pytest.raises(RuntimeError, match="left to the data"):
        PretrainedRecommender(model)
    model.set_sizes(12, 12)
    folder = model.save_pretrained(tmp_path / "rec", KEYS, recent_items=2)
    config = json.loads((folder / "config.json").read_text())["model"]
    assert (config["num_items"], config["num_user_features"], config["embedding_dim"]) == (12, 12, 2)
    loaded = PretrainedRecommender.from_pretrained(folder)  # no data needed
    assert loaded.model.config == model.config and loaded.recent_items == 2


def test_a_folder_that_leaves_sizes_to_the_data_is_refused(tmp_path):
    folder = _catalogue_model().save_pretrained(tmp_path / "rec", KEYS)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["num_items"] = None
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="leaves num_items or num_user_features to the data"):
        Recommender.from_pretrained(folder)


def test_item_metadata_travels_with_the_folder_and_bad_columns_are_named(tmp_path):
    metadata = {"watches": np.arange(12), "children_adult": np.linspace(-1, 1, 12).round(4), "genre": ["x"] * 12}
    folder = _catalogue_model().save_pretrained(tmp_path / "rec", KEYS, TITLES, item_metadata=metadata)
    loaded = PretrainedRecommender.from_pretrained(folder)
    assert loaded.item_metadata == {name: list(values) for name, values in metadata.items()}
    loaded.save_pretrained(tmp_path / "copy")  # a saved copy keeps it
    assert PretrainedRecommender.from_pretrained(tmp_path / "copy").item_metadata == loaded.item_metadata
    plain = _catalogue_model().save_pretrained(tmp_path / "plain")
    assert "item_metadata" not in json.loads((plain / "config.json").read_text())  # absent, not null
    with pytest.raises(ValueError, match="column 'watches' must list the model's 12 items, got 3"):
        _catalogue_model().save_pretrained(tmp_path / "bad", item_metadata={"watches": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"column 'tags' holds \['a'\]; only numbers, strs and null"):
        _catalogue_model().save_pretrained(tmp_path / "bad", item_metadata={"tags": [["a"]] * 12})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "item_metadata": {"watches": [1]}}))
    with pytest.raises(CheckpointError, match="config.json: field 'item_metadata' column 'watches'"):
        PretrainedRecommender.from_pretrained(folder)


@pytest.mark.parametrize(
    ("history_keys", "message"),
    [
        (
            None,
            r"history_keys must be a list of item keys or titles \(one history, oldest first\) or a list of such "
            r"lists, got NoneType None",
        ),
        ("movie 3", r"got the string 'movie 3': pass \['movie 3'\] for a history of that one item"),
        (107, r"history_keys must be a list of item keys .* got int 107"),
        ({107, 114}, r"history_keys must be a list of item keys .* got set"),
        ([[100], 107], r"got a list that mixes both: item 0 is a list, item 1 is int 107"),
        ([100, None], r"history 0, position 1: an item key must be an int or a str .* got NoneType None"),
        ([[100], [107, 1.5]], r"history 1, position 1: an item key must be an int or a str .* got float 1\.5"),
    ],
)
def test_a_history_of_the_wrong_type_is_named_not_read_letter_by_letter(history_keys, message):
    """recommend("Star Wars") once looked up "item 'S'"; recommend(None) raised "NoneType has no len()"."""
    recommender = PretrainedRecommender(_catalogue_model(), KEYS, TITLES)
    with pytest.raises(TypeError, match=message):
        recommender.recommend(history_keys)


def test_arrays_are_histories_too():
    recommender = PretrainedRecommender(_catalogue_model(), KEYS, TITLES)
    single = recommender.recommend([100, 107], k=3)
    assert recommender.recommend(np.array([100, 107]), k=3) == single
    assert recommender.recommend(torch.tensor([100, 107]), k=3) == single
    batch = recommender.recommend(np.array([[100, 107], [114, 121]]), k=3)  # a batch of two histories
    assert len(batch) == 2 and [item.key for item in batch[0]] == [item.key for item in single]


def test_similar_items_takes_one_key():
    recommender = PretrainedRecommender(_catalogue_model(), KEYS, TITLES)
    with pytest.raises(
        TypeError, match=r"key must be one item key or title \(an int or a str\), got list \['movie 3'\]"
    ):
        recommender.similar_items(["movie 3"])
