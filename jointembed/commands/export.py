"""``jointembed export``: a map of an embedding space, as TensorBoard projector files and a 2-D PNG.

The points come from one of three places: a search index (``--index``), a manifest embedded with a joint model
(``--model`` + ``--manifest``), or a recommender's own items (``--model`` alone: its output table, one unit
vector per item, with the item metadata the run kept, e.g. a synthetic movie world's true aspects).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jointembed.commands.common import ArgumentParser, UserError, load_index, load_joint_model, run_command

__all__ = ["build_parser", "run", "Points", "recommender_points"]

MAP_NAME = "map.png"

EXAMPLES = """\
  jointembed export --model runs/digits_multimodal/version_0/pretrained \\
      --manifest datasets/digits_four_ways/test.jsonl --out maps/digits
  jointembed export --index digits-index --out maps/digits --method tsne --color-by group
  jointembed export --model runs/movie_world/version_0/pretrained --out maps/movies \\
      --color-by children_adult blockbuster_arthouse
  tensorboard --logdir maps/digits    # the projector files, in TensorBoard's "Projector" tab
"""


@dataclass
class Points:
    """What a map is drawn from.

    Attributes:
        vectors: ``(n, D)`` float32 vectors.
        rows: ``n`` metadata rows (``key`` first), the columns of ``metadata.tsv`` and of ``--color-by``.
        name_column: The column that names a point on the map (a title, a value, a key).
        source: What the points are, for the map's title and messages.
        default_colour: Columns to colour by when ``--color-by`` is not given.
    """

    vectors: np.ndarray
    rows: list[dict[str, Any]]
    name_column: str
    source: str
    default_colour: list[str]


def build_parser() -> argparse.ArgumentParser:
    """The command's options (``jointembed export --help``)."""
    parser = ArgumentParser(
        "export",
        "Draw an embedding space: write TensorBoard projector files (vectors.tsv, metadata.tsv, "
        "projector_config.pbtxt) and a 2-D map (map.png) of an index, of a manifest embedded with a joint model, "
        "or of a recommender's items.",
        EXAMPLES,
    )
    source = parser.add_argument_group("points (one of)")
    source.add_argument("--model", help="pretrained folder: a joint model (with --manifest) or a recommender (alone)")
    source.add_argument("--index", help="a search index folder (jointembed embed --index); --model is then optional")
    source.add_argument("--manifest", help="a JSONL/CSV manifest to embed with --model")
    parser.add_argument("--out", required=True, help="folder to write the projector files and map.png into")
    drawing = parser.add_argument_group("map")
    drawing.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca", help="2-D projection (pca)")
    drawing.add_argument(
        "--color-by",
        nargs="+",
        metavar="KEY",
        help="metadata column(s) to colour by, one panel each (default: label_name or label, then modality; for "
        "a recommender its item metadata, e.g. a movie world's first two aspects)",
    )
    drawing.add_argument("--labels", type=int, default=10, help="how many points or groups to name on the map (10)")
    drawing.add_argument("--max-points", type=int, help="keep this many points (a recommender's most-watched items)")
    drawing.add_argument("--title", help="map title (default: what the points are)")
    drawing.add_argument("--seed", type=int, default=0, help="seed of t-SNE / UMAP and of --max-points sampling")
    parser.add_argument(
        "--on-bad-file",
        choices=("error", "skip"),
        default="error",
        help="with --manifest: stop at an unreadable file (error) or leave it out (skip)",
    )
    return parser


def run(argv: Sequence[str]) -> int:
    """``jointembed export ...``: ``argv`` starts with the command's name; returns the exit code."""
    return run_command("export", _export, build_parser(), argv)


def _export(args: argparse.Namespace) -> int:
    from jointembed.maps import draw_map, is_numeric, pick_labels, reduce_to_2d, write_projector

    points = _load_points(args)
    if not points.rows:
        raise UserError(f"{points.source}: nothing to map (no entries)")
    if args.max_points is not None:
        points = _subsample(points, args.max_points, args.seed)
    columns = list(dict.fromkeys(key for row in points.rows for key in row))
    colour_by = args.color_by or points.default_colour
    unknown = [key for key in colour_by if key not in columns]
    if unknown:
        raise UserError(
            f"--color-by {' '.join(unknown)}: no such metadata column; the points have {', '.join(columns)}"
        )
    coords = reduce_to_2d(points.vectors, args.method, seed=args.seed)
    for row, (x, y) in zip(points.rows, coords.tolist(), strict=True):
        row.update(map_x=x, map_y=y)  # the map's own coordinates, so it can be re-drawn or probed elsewhere
    out = Path(args.out)
    written = write_projector(out, points.vectors, points.rows)
    colours = {key: [row.get(key) for row in points.rows] for key in colour_by}
    first = colours[colour_by[0]] if colour_by else None
    names = [str(row.get(points.name_column, "")) for row in points.rows]
    groups = first if first is not None and not is_numeric(first) else None
    labels = pick_labels(coords, names, groups, k=args.labels) if args.labels > 0 else None
    title = args.title or f"{points.source}: {len(points.rows)} points, {args.method.upper()}"
    png = draw_map(out / MAP_NAME, coords, colours or None, labels_to_draw=labels, title=title, seed=args.seed)
    print(f"exported {len(points.rows)} points ({points.vectors.shape[1]}-d) of {points.source} to {out}:")
    print(f"  {', '.join(p.name for p in written)}  (view: tensorboard --logdir {out}, 'Projector' tab)")
    print(f"  {png.name}  ({args.method.upper()}, coloured by {', '.join(colour_by) or 'nothing'})")
    return 0


def _load_points(args: argparse.Namespace) -> Points:
    if args.index and args.manifest:
        raise UserError("give --index or --manifest, not both")
    if args.index:
        return _index_points(args)
    if not args.model:
        raise UserError("give --model (a joint model with --manifest, or a recommender), or --index")
    if _model_format(args.model) == "jointembed.recommender":
        if args.manifest:
            raise UserError(f"--model {args.model} is a recommender: it maps its own items, without --manifest")
        return recommender_points(args.model)
    if not args.manifest:
        raise UserError(f"--model {args.model} is a joint model: give --manifest M (or --index DIR) to map")
    from jointembed.search.entries import embed_manifest

    model = load_joint_model(args.model)
    entries = embed_manifest(model, args.manifest, on_bad_file=args.on_bad_file, progress=False)
    return _entry_points(entries.keys, entries.vectors, entries.modalities, entries.metadata, Path(args.manifest).name)


def _model_format(folder: str) -> str | None:
    """The ``format`` of a pretrained folder's ``config.json`` (``None`` for a ``.ckpt`` or hub id)."""
    config = Path(folder) / "config.json"
    if not Path(folder).is_dir():
        if not Path(folder).exists() and folder.startswith((".", "/", "~", "runs")):
            raise UserError(f"--model {folder}: no such folder (give the pretrained folder that fit printed)")
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"--model {folder}: cannot read {config.name} ({error}); is it a pretrained folder?") from None


def _index_points(args: argparse.Namespace) -> Points:
    model = load_joint_model(args.model) if args.model else None
    index = load_index(args.index, model, args.model)
    source = Path(args.index).name
    return _entry_points(index.keys(), index.vectors(), index.modalities(), index.metadata(), source)


def _entry_points(
    keys: Sequence[Any], vectors: np.ndarray, modalities: Sequence[str], metadata: Sequence[dict], source: str
) -> Points:
    rows = []
    for key, modality, meta in zip(keys, modalities, metadata, strict=True):
        row = {"key": key, "modality": modality}
        row.update((name, value) for name, value in (meta or {}).items() if name not in row)
        rows.append(row)
    present = {name for row in rows for name in row}
    default = next(([name] for name in ("label_name", "label") if name in present), [])
    if len(set(modalities)) > 1 or not default:
        default.append("modality")  # do the fields mix within each class, or sit apart?
    name_column = "value" if "value" in present else "key"
    return Points(np.asarray(vectors, dtype=np.float32), rows, name_column, source, default)


def recommender_points(folder: str) -> Points:
    """The items of a pretrained recommender: ``(N, d)`` unit rows of its output table (cosine geometry, as
    ``similar_items`` ranks them), with key, title and the item metadata saved with it.

    Args:
        folder: A pretrained recommender folder.

    Returns:
        :class:`Points`; by default coloured by the first two metadata columns besides ``watches`` (a movie
        world's named aspects), else by ``watches``.
    """
    from jointembed.models.pretrained_recommender import PretrainedRecommender

    recommender = PretrainedRecommender.from_pretrained(folder)
    table = recommender.model.item_embeddings().float().cpu().numpy()
    vectors = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    titles = recommender.item_titles or [None] * len(vectors)
    metadata = recommender.item_metadata or {}
    rows = []
    for i, (key, title) in enumerate(zip(recommender.item_keys, titles, strict=True)):
        row = {"key": key, "title": title} if title is not None else {"key": key}
        rows.append(row | {name: values[i] for name, values in metadata.items()})
    facts = [name for name in metadata if name != "watches"][:2]
    default = facts or (["watches"] if "watches" in metadata else [])
    path = Path(folder).resolve()
    name = f"{path.parent.parent.name}/{path.parent.name}" if path.name == "pretrained" else path.name  # run/version
    return Points(vectors.astype(np.float32), rows, "title" if recommender.item_titles else "key", name, default)


def _subsample(points: Points, max_points: int, seed: int) -> Points:
    """At most ``max_points`` points: the most-watched when the rows say, else a seeded random sample."""
    if max_points < 1:
        raise UserError(f"--max-points must be >= 1, got {max_points}")
    if len(points.rows) <= max_points:
        return points
    if all(isinstance(row.get("watches"), int) for row in points.rows):
        keep = np.sort(np.argsort([-row["watches"] for row in points.rows], kind="stable")[:max_points])
    else:
        keep = np.sort(np.random.default_rng(seed).choice(len(points.rows), max_points, replace=False))
    rows = [points.rows[i] for i in keep]
    return Points(points.vectors[keep], rows, points.name_column, points.source, points.default_colour)
