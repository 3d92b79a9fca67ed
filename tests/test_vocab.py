import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import jointembed.vocab
from jointembed.errors import VocabularyFormatError
from jointembed.vocab import Vocabulary, stable_hash


def test_from_values_orders_by_count_then_first_appearance():
    vocab = Vocabulary.from_values(["b", "a", "c", "a", "b", "d", "a"])
    assert vocab.values == ["a", "b", "c", "d"]
    assert vocab.counts == [3, 2, 1, 1]
    assert vocab.encode_many(["<pad>", "<oov>", "a", "b", "c", "d"]) == [0, 1, 2, 3, 4, 5]
    assert len(vocab) == 6
    assert list(vocab) == ["a", "b", "c", "d"]
    assert vocab.count("a") == 3 and vocab.count("zebra") == 0 and vocab.count("<pad>") == 0


def test_from_bags_counts_every_value_of_every_bag():
    vocab = Vocabulary.from_bags([["x", "y"], ["y", "y"], [], ("z",)], pad_token=None, oov_token=None)
    assert vocab.values == ["y", "x", "z"]
    assert vocab.counts == [3, 1, 1]
    assert vocab.encode_bags([["z", "y"], []]) == [[2, 0], []]


def test_min_count_drops_rare_values():
    vocab = Vocabulary.from_values(["a", "b", "a", "c", "c", "c"], min_count=2)
    assert vocab.values == ["c", "a"]


def test_max_size_keeps_most_frequent_and_breaks_ties_by_first_appearance():
    values = ["c", "b", "a", "b", "c", "a", "d", "e", "e"]
    assert Vocabulary.from_values(values).values == ["c", "b", "a", "e", "d"]
    assert Vocabulary.from_values(values, max_size=2).values == ["c", "b"]
    assert Vocabulary.from_values(values, max_size=4).values == ["c", "b", "a", "e"]
    empty = Vocabulary.from_values(values, max_size=0)
    assert empty.values == [] and len(empty) == 2


def test_order_is_deterministic_for_a_given_input_order():
    values = [f"v{i % 7}" for i in range(100)] + [f"w{i}" for i in range(20)]
    assert Vocabulary.from_values(values) == Vocabulary.from_values(list(values))


def test_reserved_ids_come_first():
    vocab = Vocabulary(["a", "b"], [5, 2], num_oov_buckets=3)
    assert (vocab.pad_id, vocab.oov_id, vocab.num_reserved, len(vocab)) == (0, 1, 5, 7)
    assert vocab.decode_many(range(7)) == ["<pad>", "<oov>", "<oov:0>", "<oov:1>", "<oov:2>", "a", "b"]
    assert "<pad>" in vocab and "<oov>" in vocab and "a" in vocab
    assert "<oov:0>" not in vocab and "zebra" not in vocab and None not in vocab and [1] not in vocab


def test_pad_disabled_moves_oov_to_zero():
    vocab = Vocabulary(["a"], pad_token=None)
    assert (vocab.pad_id, vocab.oov_id, vocab.encode("a"), vocab.encode("zebra")) == (None, 0, 1, 0)


def test_no_reserved_ids():
    vocab = Vocabulary(["a", "b"], pad_token=None, oov_token=None)
    assert (vocab.pad_id, vocab.oov_id, vocab.num_reserved) == (None, None, 0)
    assert vocab.encode_many(["a", "b"]) == [0, 1]
    with pytest.raises(KeyError, match="'zebra'.*neither an oov_token nor OOV buckets"):
        vocab.encode("zebra")


def test_unseen_value_goes_to_oov_token():
    vocab = Vocabulary.from_values(["a", "b"])
    assert vocab.encode("zebra") == vocab.oov_id == 1
    assert vocab.encode_many(["a", "zebra", 7]) == [2, 1, 1]


def test_unknown_error_names_value_and_size():
    vocab = Vocabulary.from_values(["a", "b", "c", "d"], num_oov_buckets=2)
    assert vocab.encode("a", unknown="error") == 4
    with pytest.raises(KeyError, match=r"'zebra'.*4 values"):
        vocab.encode("zebra", unknown="error")
    with pytest.raises(KeyError, match="42"):
        vocab.encode_bags([["a"], [42]], unknown="error")


def test_wrong_unknown_policy():
    vocab = Vocabulary(["a"])
    for call in (vocab.encode, vocab.encode_many, vocab.encode_bags):
        with pytest.raises(ValueError, match="unknown must be one of.*'ignore'"):
            call(["a"], unknown="ignore")


def test_stable_hash_is_pinned():
    # Saved models depend on these buckets: a change here must be a deliberate, versioned one.
    assert stable_hash("cat") == 14324727978296098896
    assert stable_hash(1) == stable_hash(1.0) == 14790918749051042728
    assert stable_hash("1") == 3005831521097250799
    assert stable_hash(2.5) == 15130519926697030256


def test_buckets_are_stable_across_processes():
    unseen = ["zebra", "yak", 12345, -7, 2.5, "ünïcödé"]
    vocab = Vocabulary(["a", "b"], num_oov_buckets=97)
    expected = vocab.encode_many(unseen)
    script = (
        "import json, sys\n"
        "from jointembed.vocab import Vocabulary\n"
        "vocab = Vocabulary(['a', 'b'], num_oov_buckets=97)\n"
        "print(json.dumps(vocab.encode_many(json.loads(sys.argv[1]))))\n"
    )
    root = Path(jointembed.vocab.__file__).resolve().parents[1]
    for seed in ("0", "12345"):
        pythonpath = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": pythonpath}
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps(unseen)], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(result.stdout) == expected


def test_unseen_values_spread_over_buckets():
    vocab = Vocabulary(["a"], num_oov_buckets=16)
    ids = vocab.encode_many([f"user{i}" for i in range(4000)] + list(range(10_000, 14_000)))
    per_bucket = Counter(ids)
    assert set(per_bucket) == set(range(2, 18))  # never the pad, OOV or a regular ID
    assert min(per_bucket.values()) > 400 and max(per_bucket.values()) < 600  # 500 expected in each


def test_same_unseen_value_same_bucket_and_type_matters():
    vocab = Vocabulary([], num_oov_buckets=1000)
    assert vocab.encode("zebra") == vocab.encode("zebra")
    assert vocab.encode(3) == vocab.encode(3.0)
    assert stable_hash("3") != stable_hash(3)


def test_encode_decode_round_trip():
    values = ["a", 3, 2.5, "b", -1]
    vocab = Vocabulary(values, num_oov_buckets=2)
    ids = vocab.encode_many(values)
    assert ids == [4, 5, 6, 7, 8]
    assert vocab.decode_many(ids) == values
    assert vocab.decode_many(np.array(ids)) == values
    assert vocab.decode(np.int64(5)) == 3


def test_one_and_one_point_zero_are_the_same_key():
    vocab = Vocabulary.from_values([1, 1.0, 2])
    assert vocab.values == [1, 2] and vocab.counts == [2, 1]
    assert vocab.encode(1.0) == vocab.encode(1)
    with pytest.raises(ValueError, match="appears twice"):
        Vocabulary([1, 1.0])


def test_decode_out_of_range():
    vocab = Vocabulary(["a"])
    with pytest.raises(IndexError, match=re.escape("ID 3 is out of range: valid IDs are in [0, 3)")):
        vocab.decode(3)
    with pytest.raises(IndexError, match="ID -1"):
        vocab.decode(-1)
    with pytest.raises(TypeError):
        vocab.decode("a")


def test_numpy_values_become_plain_python():
    vocab = Vocabulary.from_values(np.array([3, 3, 5]))
    assert vocab.values == [3, 5] and all(type(v) is int for v in vocab.values)
    strs = Vocabulary.from_values(np.array(["x", "y"]))
    assert all(type(v) is str for v in strs.values)
    assert vocab.encode(np.int32(5)) == 3


@pytest.mark.parametrize("value", [None, True, (1, 2), [1], b"x", {"a": 1}, np.bool_(True)])
def test_unsupported_value_types_are_rejected(value):
    pattern = re.escape(f"{value!r} (type {type(value).__name__})")
    with pytest.raises(TypeError, match=pattern):
        Vocabulary.from_values(["a", value])
    with pytest.raises(TypeError, match=pattern):
        Vocabulary(["a"]).encode(value)
    with pytest.raises(TypeError, match=pattern):
        Vocabulary.from_bags([["a"], [value]])


def test_nan_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        Vocabulary.from_values([1.0, float("nan")])
    with pytest.raises(ValueError, match="NaN"):
        Vocabulary(["a"]).encode(float("nan"))


def test_a_single_string_is_not_a_collection_of_values():
    with pytest.raises(TypeError, match="values must be a collection of values, not a single str"):
        Vocabulary.from_values("abc")
    with pytest.raises(TypeError, match="bag 1 must be a collection"):
        Vocabulary.from_bags([["a"], "bc"])
    with pytest.raises(TypeError, match="bag 0 must be a collection"):
        Vocabulary(["a"]).encode_bags(["a"])


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"min_count": 0}, ValueError, "min_count must be >= 1, got 0"),
        ({"max_size": -1}, ValueError, "max_size must be >= 0, got -1"),
        ({"num_oov_buckets": -1}, ValueError, "num_oov_buckets must be >= 0, got -1"),
        ({"pad_token": "x", "oov_token": "x"}, ValueError, "pad_token and oov_token must differ"),
        ({"min_count": 1.5}, TypeError, "min_count must be an int"),
        ({"max_size": True}, TypeError, "max_size must be an int"),
        ({"pad_token": 0}, TypeError, "pad_token must be a str or None"),
    ],
)
def test_bad_build_args(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        Vocabulary.from_values(["a"], **kwargs)
    with pytest.raises(error, match=pattern):
        Vocabulary.from_bags([["a"]], **kwargs)


def test_constructor_rejects_duplicates_reserved_values_and_bad_counts():
    with pytest.raises(ValueError, match="value 'a' appears twice"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="value '<pad>' equals a reserved token"):
        Vocabulary(["a", "<pad>"])
    with pytest.raises(ValueError, match="value '<oov>' equals a reserved token"):
        Vocabulary.from_values(["<oov>"])
    assert Vocabulary(["<pad>"], pad_token=None).encode("<pad>") == 1
    with pytest.raises(ValueError, match="counts has 1 entries but values has 2"):
        Vocabulary(["a", "b"], [1])
    with pytest.raises(ValueError, match=r"counts\[1\] must be >= 0"):
        Vocabulary(["a", "b"], [1, -1])
    assert Vocabulary(["a"]).counts == [0]


def test_values_and_counts_are_copies():
    vocab = Vocabulary(["a"], [2])
    vocab.values.append("b")
    vocab.counts.append(1)
    assert vocab.values == ["a"] and vocab.counts == [2]


def test_repr_and_eq():
    vocab = Vocabulary.from_values([f"v{i}" for i in range(10)])
    assert repr(vocab) == "Vocabulary(num_values=10, num_reserved=2, values=['v0', 'v1', 'v2', 'v3', 'v4', ...])"
    assert vocab == Vocabulary.from_values([f"v{i}" for i in range(10)])
    assert vocab != Vocabulary.from_values([f"v{i}" for i in range(10)], num_oov_buckets=1)
    assert Vocabulary([1]) != Vocabulary([1.0])
    assert vocab != "not a vocabulary"


def test_save_load_round_trip(tmp_path):
    vocab = Vocabulary.from_values(["b", 7, "a", 7, 2.5, -3, 1e20, "ünï"], pad_token=None, num_oov_buckets=4)
    path = vocab.save(tmp_path / "sub" / "vocab.json")
    loaded = Vocabulary.load(path)
    assert loaded == vocab
    assert [type(v) for v in loaded.values] == [int, str, str, float, int, float, str]
    assert loaded.encode_many(["zebra", 7, "a"]) == vocab.encode_many(["zebra", 7, "a"])
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == {
        "format": "jointembed.vocabulary",
        "version": 1,
        "pad_token": None,
        "oov_token": "<oov>",
        "num_oov_buckets": 4,
        "values": [7, "b", "a", 2.5, -3, 1e20, "ünï"],
        "counts": [2, 1, 1, 1, 1, 1, 1],
    }
    assert "ünï" in path.read_text(encoding="utf-8")  # human-readable, not \u-escaped


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        Vocabulary.load(tmp_path / "nothere.json")


def _saved(**changes):
    data = Vocabulary(["a", 1], [2, 1])._to_json()
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('{"format": "jointembed.vocabulary", "vers', "not valid UTF-8 JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (_saved(format="other.thing"), "format is 'other.thing', expected 'jointembed.vocabulary'"),
        (_saved(version=2), "version 2 is not supported; supported versions: 1"),
        (_saved(version="1"), "version '1' is not supported"),
        (json.dumps({"format": "jointembed.vocabulary", "version": 1, "values": []}), r"missing keys \['pad_token'"),
        (_saved(extra=1), r"unexpected keys \['extra'\]"),
        (_saved(counts=[2]), "counts has 1 entries but values has 2"),
        (_saved(values="a1"), "'values' must be a list, got str"),
        (_saved(values=["a", None]), r"None \(type NoneType\) cannot be a vocabulary value"),
        (_saved(counts=[2, "1"]), r"counts\[1\] must be an int"),
        (_saved(num_oov_buckets="3"), "num_oov_buckets must be an int"),
        (_saved(pad_token=3), "pad_token must be a str or None"),
        (_saved(values=["a", "a"]), "appears twice"),
    ],
)
def test_load_rejects_bad_files(tmp_path, text, pattern):
    path = tmp_path / "bad_vocab.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VocabularyFormatError, match=pattern) as info:
        Vocabulary.load(path)
    assert str(path) in str(info.value)


def test_load_rejects_binary_file(tmp_path):
    path = tmp_path / "vocab.bin"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(VocabularyFormatError, match="vocab.bin"):
        Vocabulary.load(path)


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "vocab.json"
    old = Vocabulary.from_values(["a", "b"])
    old.save(path)
    new = Vocabulary.from_values(["x", "y", "z"])

    def write_half_then_fail(self, text, encoding=None):
        with open(self, "w", encoding=encoding) as f:
            f.write(text[: len(text) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert Vocabulary.load(path) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.json"]  # no temporary file left behind


def test_unserialisable_save_leaves_old_file_intact(tmp_path):
    path = tmp_path / "vocab.json"
    old = Vocabulary.from_values(["a", "b"])
    old.save(path)
    broken = Vocabulary.from_values(["x"])
    broken._values.append(object())  # only reachable by bypassing the checks
    broken._counts.append(1)
    with pytest.raises(TypeError):
        broken.save(path)
    assert Vocabulary.load(path) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.json"]
