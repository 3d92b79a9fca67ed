"""Texts are embedded in batches of similar length (longest first by the encoder's own token count) and come back
in the caller's order, equal to embedding them in that order: through ``JointEmbeddingModel.embed``, the two-tower
catalogue and its cached content features."""

from __future__ import annotations

import torch

from jointembed.encoders.base import longest_first
from jointembed.encoders.text import HFTextEncoder
from jointembed.modalities import TextModality
from jointembed.models.joint import JointEmbeddingModel
from jointembed.models.two_tower import TwoTowerRecommender
from jointembed.registry import create_encoder

TEXTS = [
    "seven",
    "zero one two three four five six seven eight nine zero one two three",
    "",
    "the number seven",
    "a photo of a cat",
    "7",
    "six five four three two one zero",
    "the number seven",
    "zero one two three four five six",
]


def _hf_text() -> HFTextEncoder:
    torch.manual_seed(0)
    return create_encoder("hf_text", **HFTextEncoder.tiny_config()).eval()


def _in_given_order(encoder: HFTextEncoder, texts: list[str], batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encoder(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])


def test_longest_first_is_stable() -> None:
    assert longest_first([1, 3, 2, 3, 1]) == [1, 3, 2, 0, 4]
    assert longest_first([]) == []


def test_hf_text_lengths_are_the_tokens_the_backbone_gets() -> None:
    encoder = _hf_text()
    tokens = encoder.tokenizer(TEXTS, padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt")
    assert encoder.input_lengths(TEXTS) == tokens["attention_mask"].sum(1).tolist()
    assert encoder.input_lengths(["seven " * 100]) == [encoder.max_length]  # truncated, as in forward
    assert create_encoder("scratch_text", **{"num_buckets": 8, "output_dim": 8}).input_lengths(["a b", ""]) == [2, 1]


def test_embed_sorts_by_length_and_returns_the_callers_order() -> None:
    encoder = _hf_text()
    # the empty text (one token pair, the shortest batch) is embedded on purpose here: allowed by its input
    model = JointEmbeddingModel({"text": encoder}, {"text": TextModality(empty="allow")}, share={"title": "text"})
    model.eval()
    batches: list[list[str]] = []
    encoder.register_forward_pre_hook(lambda module, args: batches.append(list(args[0])))
    vectors = model.embed(text=TEXTS, batch_size=4)
    lengths = encoder.input_lengths(TEXTS)
    seen = [lengths[TEXTS.index(text)] for batch in batches for text in batch]
    assert seen == sorted(lengths, reverse=True)  # every batch holds neighbours in length
    torch.testing.assert_close(vectors, _in_given_order(encoder, TEXTS, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(vectors, _in_given_order(encoder, TEXTS, 1), atol=1e-6, rtol=0)
    readable = model.embed_readable(text=TEXTS, batch_size=4, output="numpy")
    assert readable.indices == list(range(len(TEXTS))) and not readable.skipped
    torch.testing.assert_close(torch.from_numpy(readable.vectors), vectors)


def test_two_tower_catalogue_and_cache_are_in_item_order() -> None:
    torch.manual_seed(0)
    model = TwoTowerRecommender(_hf_text(), num_items=len(TEXTS), id_dim=4, hidden_sizes=[]).eval()
    warm = torch.arange(len(TEXTS)) % 2 == 0
    ids = torch.arange(len(TEXTS))
    with torch.no_grad():
        expected = model.items(ids, TEXTS, warm)  # one batch, in ID order
        vectors, biases = model.catalogue(TEXTS, warm, batch_size=3)
    torch.testing.assert_close(vectors, expected[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(biases, expected[1], atol=1e-6, rtol=0)
    model.content.freeze()
    model.cache_content(TEXTS)
    with torch.no_grad():
        features = torch.cat([model.content.encode_backbone([text]) for text in TEXTS])
    torch.testing.assert_close(model._feature_cache, features, atol=1e-6, rtol=0)
