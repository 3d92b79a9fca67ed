"""``jointembed embed``: raw files, manifests and texts → vectors (``.npy`` + JSONL) or entries of a search index."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jointembed.commands.common import ArgumentParser, UserError, load_joint_model, run_command

__all__ = ["build_parser", "run", "parse_backend_options"]

EXAMPLES = """\
  jointembed embed --model runs/digits_multimodal/version_0/pretrained \\
      --manifest datasets/digits_four_ways/test.jsonl --index digits-index
  jointembed embed --model MODEL --index digits-index --text seven "the number seven"
  jointembed embed --model MODEL --out recordings datasets/digits_four_ways/audio/*.wav --on-bad-file skip
  jointembed embed --model MODEL --manifest big.csv --index big-index --backend hnsw --backend-option M=32
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's options (``jointembed embed --help``)."""
    parser = ArgumentParser(
        "embed",
        "Embed images, recordings, texts and IDs with a trained joint model, into one search index (--index) or "
        "into vector files (--out).",
        EXAMPLES,
    )
    parser.add_argument("files", nargs="*", help="image and audio files (the field is chosen by the suffix)")
    parser.add_argument("--model", required=True, help="pretrained folder (printed by jointembed fit), .ckpt or hub id")
    parser.add_argument("--manifest", action="append", default=[], help="a JSONL/CSV manifest (repeatable)")
    parser.add_argument("--text", nargs="+", action="extend", default=[], help="texts to embed")
    parser.add_argument("--field", help="embed FILES / --text with this field (when the model has several)")
    out = parser.add_argument_group("output (one of)")
    out.add_argument(
        "--index",
        help="index folder: created, or updated in place (same key: replaced); runs updating one index take turns",
    )
    out.add_argument(
        "--out",
        help="write OUT.npy (vectors), OUT.jsonl (key, modality, metadata per row) and OUT.json (the pair's header, "
        "written last: Entries.load refuses a pair a failed run left mismatched)",
    )
    index = parser.add_argument_group("new index")
    index.add_argument("--backend", default="exact", help="exact (default), flat, hnsw, ivf_flat, ivf_pq (FAISS)")
    index.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=INT",
        help="backend setting, e.g. M=32, ef_search=64, nlist=1024 (repeatable)",
    )
    run_opts = parser.add_argument_group("running")
    run_opts.add_argument(
        "--on-bad-file",
        choices=("error", "skip"),
        default="error",
        help="error: stop at an unreadable file, naming it; skip: leave it out and count it",
    )
    run_opts.add_argument("--batch-size", type=int, default=64)
    run_opts.add_argument("--num-workers", type=int, default=0, help="DataLoader workers that decode files")
    run_opts.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_opts.add_argument(
        "--lock-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="wait this long for another process that is updating the same --index (default 600)",
    )
    return parser


def parse_backend_options(pairs: Sequence[str]) -> dict[str, int]:
    """``["M=32", "ef_search=64"]`` → ``{"M": 32, "ef_search": 64}``.

    Raises:
        UserError: A pair that is not ``KEY=INTEGER``.
    """
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key or not value.strip().lstrip("-").isdigit():
            raise UserError(f"--backend-option {pair!r}: expected KEY=INTEGER, e.g. M=32")
        options[key.strip()] = int(value)
    return options


def _embed(args: argparse.Namespace) -> int:
    from jointembed.search.entries import Entries, embed_files, embed_manifest, embed_values, field_of_type
    from jointembed.search.index import EmbeddingIndex, model_info

    if not (args.files or args.manifest or args.text):
        raise UserError("nothing to embed: give FILES, --manifest or --text")
    if bool(args.index) == bool(args.out):
        raise UserError("give exactly one of --index DIR or --out PREFIX")
    backend_options = parse_backend_options(args.backend_option)
    options: dict[str, Any] = {"batch_size": args.batch_size, "num_workers": args.num_workers}
    options["progress"] = False if args.no_progress else None
    model = load_joint_model(args.model)
    if args.index and _index_exists(args.index):  # refuse another model's index before embedding anything
        EmbeddingIndex.check_folder(args.index, model_info(model, args.model))
    entries = Entries(vectors=_empty(model))
    for manifest in args.manifest:
        entries.extend(embed_manifest(model, manifest, on_bad_file=args.on_bad_file, **options))
    if args.files:
        entries.extend(embed_files(model, args.files, args.field, args.on_bad_file, **options))
    if args.text:
        entries.extend(embed_values(model, field_of_type(model, "text", args.field), args.text, **options))
    if args.index:
        where = _add_to_index(args, model, entries, backend_options)
    else:
        npy, jsonl = entries.save(args.out)
        where = f"{npy} and {jsonl}"
    _report(entries, where)
    return 0


def _index_exists(folder: str) -> bool:
    from jointembed.io import recover_folder
    from jointembed.search.index_files import HEADER_NAME

    return recover_folder(folder) and (Path(folder) / HEADER_NAME).exists()


def _add_to_index(args: argparse.Namespace, model: Any, entries: Any, backend_options: dict[str, int]) -> str:
    """Add the entries to ``--index`` under the folder's lock: a concurrent ``embed --index`` of the same folder
    waits (up to ``--lock-timeout``), then loads the index again with this run's entries and adds its own."""
    from jointembed.search.index import EmbeddingIndex, model_info

    created = []

    def create() -> EmbeddingIndex:
        created.append(True)
        return EmbeddingIndex.for_model(model, args.model, args.backend, backend_options)

    def waiting(holder: str) -> None:
        print(f"note: {args.index} is being updated by {holder}; waiting for it to finish", file=sys.stderr)

    info = model_info(model, args.model)
    with EmbeddingIndex.edit(args.index, info, create, args.lock_timeout, waiting) as index:
        if not created and (args.backend_option or args.backend != "exact"):
            print(f"note: {args.index} exists; its backend ({index.backend_name}) is kept", file=sys.stderr)
        before = len(index)
        entries.add_to(index)
    return f"index {args.index}: {len(index)} entries ({len(index) - before:+d}), backend {index.backend_name}"


def _report(entries: Any, where: str) -> None:
    """Print what was embedded and where it went (stdout), and the skipped files (stderr)."""
    counts = {m: entries.modalities.count(m) for m in dict.fromkeys(entries.modalities)}
    summary = ", ".join(f"{m} {n}" for m, n in counts.items()) or "nothing"
    repeats = f"; {entries.repeats} repeated cells embedded once" if entries.repeats else ""
    print(f"embedded {len(entries)} ({summary}){repeats} -> {where}")
    if entries.skipped:
        print(f"skipped {len(entries.skipped)} unreadable file(s) (--on-bad-file skip):", file=sys.stderr)
        for line in entries.skipped[:10]:
            print(f"  {line}", file=sys.stderr)
        if len(entries.skipped) > 10:
            print(f"  ... and {len(entries.skipped) - 10} more", file=sys.stderr)


def _empty(model: Any) -> Any:
    import numpy as np

    return np.zeros((0, model.output_dim), np.float32)


def run(argv: Sequence[str]) -> int:
    """Run ``jointembed embed``; ``argv`` starts with ``"embed"``."""
    return run_command("embed", _embed, build_parser(), argv)
