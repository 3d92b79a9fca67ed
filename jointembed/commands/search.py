"""``jointembed search``: the entries of an index nearest a text, a recording, an image, IDs or a stored key."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from jointembed.commands.common import ArgumentParser, UserError, load_index, load_joint_model, run_command

__all__ = ["build_parser", "run"]

EXAMPLES = """\
  jointembed search --model MODEL --index digits-index --audio datasets/digits_four_ways/audio/7_george_3.wav -k 5
  jointembed search --model MODEL --index digits-index --text seven --modality image audio
  jointembed search --model MODEL --index digits-index --image photo.png --where label_name=seven --json
  jointembed search --model MODEL --index digits-index --key text:seven --mixed -k 20
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's options (``jointembed search --help``)."""
    parser = ArgumentParser(
        "search",
        "Find the entries of an index nearest a query of any field of the model. By default the k nearest of "
        "each modality in the index are listed (other modalities first); --mixed ranks all together.",
        EXAMPLES,
    )
    parser.add_argument("--model", required=True, help="the model that made the index (pretrained folder)")
    parser.add_argument("--index", required=True, help="index folder written by jointembed embed")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query")
    query.add_argument("--audio", help="a recording (WAV, FLAC, OGG)")
    query.add_argument("--image", help="an image file")
    query.add_argument("--ids", nargs="+", help="a bag of raw IDs")
    query.add_argument("--key", help="an entry already in the index, by key")
    parser.add_argument("--field", help="the model field that embeds the query (when it has several of its type)")
    parser.add_argument("-k", type=int, default=10, help="results (per modality unless --mixed); default 10")
    parser.add_argument("--modality", nargs="+", help="only entries of these modalities (fields)")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only entries whose metadata KEY equals VALUE (repeatable)",
    )
    parser.add_argument("--mixed", action="store_true", help="one ranking over all modalities")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def _query(args: argparse.Namespace, model: Any, index: Any) -> tuple[Any, str, str]:
    """``(vector (D,), query modality, description)``."""
    from jointembed.search.entries import field_of_type

    if args.key is not None:
        key: Any = args.key
        if key not in index and key.lstrip("-").isdigit():
            key = int(key)
        vector, modality, _ = index.get(key)
        return vector, modality, f"entry {args.key}"
    kind, value = next((k, getattr(args, k)) for k in ("text", "audio", "image", "ids") if getattr(args, k))
    field = field_of_type(model, kind, args.field)
    if kind == "ids":
        from pathlib import Path

        value = model.inputs[field].parse_cell(" ".join(value), Path.cwd(), True)
    return model.embed(output="numpy", progress=False, **{field: [value]})[0], field, f"{kind} {value}"


def _filter(pairs: Sequence[str]) -> dict[str, Any] | None:
    where: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--where {pair!r}: expected KEY=VALUE, e.g. label_name=seven")
        values = where.setdefault(key, [])
        values.append(value)
        if value.lstrip("-").isdigit():  # metadata holds JSON numbers as numbers
            values.append(int(value))
    return where or None


def _search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UserError(f"-k must be at least 1, got {args.k}")
    model = load_joint_model(args.model)
    index = load_index(args.index, model, args.model)
    if len(index) == 0:
        raise UserError(f"index {args.index} is empty: add entries with jointembed embed --index {args.index}")
    vector, own, description = _query(args, model, index)
    where = _filter(args.where)
    groups: list[str | None]
    if args.mixed:
        groups = [None]
    else:
        present = list(dict.fromkeys(index.modalities()))
        chosen = [m for m in present if args.modality is None or m in args.modality]
        if args.modality and (unknown := [m for m in args.modality if m not in present]):
            raise UserError(f"--modality {' '.join(unknown)}: the index holds {', '.join(present)}")
        groups = chosen
    found = []
    for group in groups:
        modality = group if group is not None else args.modality
        found.append((group, index.search(vector, args.k, modality=modality, filter=where)))
    # other modalities first (what a joint space is for), nearest group first; the query's own modality last
    found.sort(key=lambda item: (item[0] == own, -(item[1][0].score if item[1] else -2.0)))
    results = [(rank, hit) for _, hits in found for rank, hit in enumerate(hits, start=1)]
    if args.json:
        rows = [
            {"rank": r, "key": h.key, "modality": h.modality, "score": h.score, "metadata": h.metadata}
            for r, h in results
        ]
        print(json.dumps({"query": description, "results": rows}, ensure_ascii=False))
    else:
        print(f"query: {description} ({len(index)} entries in {args.index})")
        print(_table(results))
    return 0


def _table(results: Sequence[tuple[int, Any]]) -> str:
    if not results:
        return "(no entry passes the filters)"
    hidden = {"field", "manifest", "value", "row", "label", "label_name"}  # the key and label columns show them
    rows = [("rank", "key", "modality", "score", "label", "metadata")]
    for rank, hit in results:
        meta = hit.metadata
        label = meta.get("label_name", meta.get("label", ""))
        rest = json.dumps({k: v for k, v in meta.items() if k not in hidden}, ensure_ascii=False)
        rest = "" if rest == "{}" else rest[:60] + ("…" if len(rest) > 60 else "")
        rows.append((str(rank), _short(str(hit.key)), hit.modality, f"{hit.score:.3f}", str(label), rest))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def run(argv: Sequence[str]) -> int:
    """Run ``jointembed search``; ``argv`` starts with ``"search"``."""
    return run_command("search", _search, build_parser(), argv)
