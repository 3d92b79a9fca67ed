"""Maps of an embedding space: vectors down to 2-D, TensorBoard projector files, and a PNG of the map.

- :func:`reduce_to_2d`: ``(n, D)`` vectors to ``(n, 2)`` coordinates by PCA (numpy), t-SNE (scikit-learn) or
  UMAP (the ``umap-learn`` package, when installed).
- :func:`write_projector`: ``vectors.tsv``, ``metadata.tsv`` and ``projector_config.pbtxt`` for TensorBoard's
  Embedding Projector (``tensorboard --logdir <folder>``, "Projector" tab), written here without TensorBoard.
- :func:`draw_map`: a scatter plot PNG (matplotlib, the ``plot`` extra), coloured by a category (legend) or a
  number (colour bar), with a few points named; :func:`pick_labels` chooses which.

Every file is written atomically: an interrupted export leaves the previous file whole.
"""

from __future__ import annotations

import json
import numbers
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from jointembed.io import atomic_write, atomic_write_text

__all__ = [
    "METHODS",
    "VECTORS_NAME",
    "METADATA_NAME",
    "PROJECTOR_CONFIG_NAME",
    "reduce_to_2d",
    "write_projector",
    "escape_cell",
    "is_numeric",
    "pick_labels",
    "draw_map",
]

METHODS = ("pca", "tsne", "umap")
VECTORS_NAME = "vectors.tsv"
METADATA_NAME = "metadata.tsv"
PROJECTOR_CONFIG_NAME = "projector_config.pbtxt"  # the name TensorBoard's projector plugin looks for
PLOT_INSTALL = 'pip install "jointembed[plot]"'
_MAX_CATEGORIES = 20  # more than tab20 can tell apart: the rest are drawn grey as "other"


def _check_vectors(vectors: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``vectors`` as a finite ``(n, D)`` float array with ``n, D >= 1``; else a ValueError naming the problem."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"vectors must be a 2-D array (n, D) with D >= 1, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("no vectors to map (n = 0)")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise ValueError(f"vector row {bad[0]} is not finite (NaN or inf; {bad.size} such rows)")
    return array


def reduce_to_2d(
    vectors: np.ndarray | Sequence[Sequence[float]], method: Literal["pca", "tsne", "umap"] = "pca", seed: int = 0
) -> np.ndarray:
    """Project ``(n, D)`` vectors to ``(n, 2)`` map coordinates.

    Args:
        vectors: ``(n, D)`` vectors, finite, ``n >= 1``.
        method: ``pca`` (the two directions of largest variance; linear, so distances along them mean something;
            axis signs are fixed so the same vectors give the same map), ``tsne`` (scikit-learn; keeps
            neighbourhoods, slow beyond ~10,000 points) or ``umap`` (needs ``pip install umap-learn``).
        seed: Seed of t-SNE and UMAP (PCA is deterministic).

    Returns:
        ``(n, 2)`` float32 coordinates (a second column of zeros when the vectors span one direction only).

    Raises:
        ValueError: Not a 2-D array, no rows, a non-finite row (named), an unknown method, or fewer than 4
            points for t-SNE / UMAP.
        ImportError: ``umap`` without the ``umap-learn`` package (the message says how to install it).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    x = _check_vectors(vectors)
    if method != "pca" and x.shape[0] < 4:
        raise ValueError(f"method {method!r} needs at least 4 points, got {x.shape[0]}; use 'pca'")
    if method == "pca":
        coords = _pca(x)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (x.shape[0] - 1) / 3)  # scikit-learn needs perplexity < n
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    else:
        coords = _umap(x, seed)
    return np.ascontiguousarray(coords, dtype=np.float32)


def _pca(x: np.ndarray) -> np.ndarray:
    """``(n, 2)`` projection on the top two principal axes, each signed so its largest loading is positive."""
    centred = x - x.mean(axis=0)
    # The D x D scatter matrix, not an SVD of the n x D data: cheap and small for a million rows.
    values, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, np.argsort(-values)[:2]].T  # (k, D), k = min(2, D)
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    coords = centred @ axes.T
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise ImportError("method 'umap' needs the umap-learn package: pip install umap-learn") from None
    return umap.UMAP(n_components=2, n_neighbors=min(15, x.shape[0] - 1), random_state=seed).fit_transform(x)


# TensorBoard splits metadata lines on "\t" and "\n" and unescapes nothing, so a tab or newline inside a value
# would shift columns or rows. They are written as the two characters "\t" / "\n" (and "\\" for a backslash,
# so the escaping can be undone unambiguously), as in PostgreSQL's text COPY format.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape_cell(value: Any) -> str:
    """One metadata value as TSV text: ``None`` is empty, floats have 6 significant digits, lists and dicts are
    JSON, and backslashes, tabs and newlines are escaped (``\\\\``, ``\\t``, ``\\n``, ``\\r``)."""
    if value is None:
        return ""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        text = f"{float(value):.6g}"
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text.translate(_ESCAPES)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys of all rows, in order of first appearance."""
    seen: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"metadata row {i} must be a mapping of column -> value, got {type(row).__name__}")
        seen.update(dict.fromkeys(row))
    return list(seen)


def write_projector(
    out_dir: str | os.PathLike,
    vectors: np.ndarray | Sequence[Sequence[float]],
    metadata_rows: Sequence[Mapping[str, Any]] | None = None,
    tensor_name: str = "jointembed",
) -> list[Path]:
    """Write TensorBoard Embedding Projector files: view them with ``tensorboard --logdir out_dir``.

    The files follow the format TensorBoard's projector plugin reads (written by hand, so TensorBoard need not
    be installed): ``vectors.tsv`` has one tab-separated row of floats per point and no header;
    ``metadata.tsv`` has a header row of column names, then one row per point; ``projector_config.pbtxt`` is a
    text ``ProjectorConfig`` proto whose ``embeddings`` entry names both files relative to itself. TensorBoard
    takes a metadata file's first line as a header only when it holds a tab (a one-column file is read as
    labels without a header), so a single metadata column gets an ``index`` column in front.

    Args:
        out_dir: Folder to write into (created).
        vectors: ``(n, D)`` finite vectors.
        metadata_rows: ``n`` mappings ``column -> value``, one per vector (missing keys are empty cells);
            ``None`` writes no metadata file.
        tensor_name: Name of the embedding in TensorBoard (no quotes, backslashes or newlines).

    Returns:
        The written paths: vectors, metadata (when given), config.

    Raises:
        ValueError: Vectors not ``(n, D)``, empty or non-finite; a metadata row count other than ``n``; a bad
            ``tensor_name``.
        TypeError: A metadata row that is not a mapping (its index named).
    """
    array = _check_vectors(vectors).astype(np.float32)
    if not tensor_name or any(c in tensor_name for c in '"\\\n\r'):
        raise ValueError(f"tensor_name must be non-empty without quotes, backslashes or newlines: {tensor_name!r}")
    out = Path(out_dir)
    written = [atomic_write(out / VECTORS_NAME, lambda tmp: np.savetxt(tmp, array, fmt="%.9g", delimiter="\t"))]
    lines = [
        "embeddings {",
        f'  tensor_name: "{tensor_name}"',
        *(f"  tensor_shape: {size}" for size in array.shape),
        f'  tensor_path: "{VECTORS_NAME}"',
    ]
    if metadata_rows is not None:
        if len(metadata_rows) != len(array):
            raise ValueError(f"{len(metadata_rows)} metadata rows for {len(array)} vectors: need one row per vector")
        written.append(atomic_write_text(out / METADATA_NAME, _metadata_text(metadata_rows)))
        lines.append(f'  metadata_path: "{METADATA_NAME}"')
    written.append(atomic_write_text(out / PROJECTOR_CONFIG_NAME, "\n".join([*lines, "}", ""])))
    return written


def _metadata_text(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = _columns(rows)
    if len(columns) < 2:
        rows = [{"index": i, **row} for i, row in enumerate(rows)]
        columns = ["index", *columns]
    lines = ["\t".join(escape_cell(c) for c in columns)]
    lines += ["\t".join(escape_cell(row.get(c)) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def is_numeric(values: Sequence[Any]) -> bool:
    """Whether ``values`` are drawn with a colour bar: all real numbers (or missing: ``None``, NaN), at least
    one present, and not a handful of integers (class labels 0..9 are categories)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not present or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return False
    integral = all(float(v).is_integer() for v in present)
    return not (integral and len(set(present)) <= _MAX_CATEGORIES)


def pick_labels(
    coords: np.ndarray, names: Sequence[str], groups: Sequence[Any] | None = None, k: int = 10
) -> dict[int, str]:
    """Choose a few points to name on a map.

    With ``groups`` (the categories the map is coloured by), each of the ``k`` largest groups is named at its
    most central point, by the group; otherwise the ``k`` outermost points in evenly spaced directions are
    named by ``names``.

    Args:
        coords: ``(n, 2)`` map coordinates.
        names: ``n`` point names (titles, keys, values).
        groups: ``n`` category values, or ``None``.
        k: How many labels at most.

    Returns:
        ``{row index: text}``.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if len(names) != len(coords):
        raise ValueError(f"{len(names)} names for {len(coords)} points: need one name per point")
    if groups is not None:
        labels = {}
        for group, _ in Counter(map(str, groups)).most_common(k):
            members = np.flatnonzero(np.array([str(g) == group for g in groups]))
            centre = np.median(coords[members], axis=0)
            labels[int(members[np.argmin(((coords[members] - centre) ** 2).sum(1))])] = group
        return labels
    angles = np.linspace(0, 2 * np.pi, num=k, endpoint=False)
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    centred = coords - coords.mean(axis=0)
    scale = centred.std(axis=0)
    outermost = ((centred / np.where(scale > 0, scale, 1.0)) @ directions.T).argmax(axis=0)
    return {int(i): str(names[i]) for i in dict.fromkeys(outermost.tolist())}


def draw_map(
    path: str | os.PathLike,
    coords: np.ndarray,
    colour_values: Sequence[Any] | Mapping[str, Sequence[Any]] | None = None,
    labels_to_draw: Mapping[int, str] | None = None,
    title: str | None = None,
    seed: int = 0,
) -> Path:
    """Draw the points of a map as a PNG (matplotlib's Agg renderer: no display, pyplot untouched).

    Args:
        path: The PNG to write (atomically).
        coords: ``(n, 2)`` map coordinates.
        colour_values: ``n`` values to colour the points by, or ``{name: n values}`` for one panel per name
            (the name titles its panel). Categories get a legend (the 20 largest; the rest grey), numbers
            (see :func:`is_numeric`) a colour bar; missing values are grey. ``None``: one colour.
        labels_to_draw: ``{row index: text}`` drawn next to those points (e.g. from :func:`pick_labels`).
        title: Figure title.
        seed: Seed of the drawing order (points are drawn shuffled so no category always lies on top).

    Returns:
        The PNG's path.

    Raises:
        ValueError: ``coords`` not ``(n, 2)``, empty or non-finite; a colour column of another length (named).
        ImportError: matplotlib is not installed (the message says ``pip install "jointembed[plot]"``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"drawing a map needs matplotlib: {PLOT_INSTALL}") from None
    coords = _check_vectors(coords)
    if coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (n, 2), got {coords.shape}")
    panels = colour_values if isinstance(colour_values, Mapping) else {"": colour_values}
    for name, values in panels.items():
        if values is not None and len(values) != len(coords):
            raise ValueError(f"colour column {name!r} has {len(values)} values for {len(coords)} points")
    order = np.random.default_rng(seed).permutation(len(coords))
    figure = Figure(figsize=(6.4 * len(panels), 5.6), dpi=100, layout="constrained")
    for axes, (name, values) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels.items(), strict=True):
        _draw_panel(axes, coords, values, order, name)
        for index, text in (labels_to_draw or {}).items():
            _annotate(axes, coords[index], text)
    if title:
        figure.suptitle(title)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def _draw_panel(axes: Any, coords: np.ndarray, values: Sequence[Any] | None, order: np.ndarray, name: str) -> None:
    size = float(np.clip(10_000 / len(coords), 5, 40))  # smaller points as they multiply, never invisible
    style = {"s": size, "linewidths": 0, "alpha": 0.8}
    axes.set_title(name)
    axes.set_xticks([])
    axes.set_yticks([])
    if values is None:
        axes.scatter(*coords[order].T, color="tab:blue", **style)
    elif is_numeric(values):
        numeric = np.array([np.nan if v is None else float(v) for v in values])
        missing = np.isnan(numeric)
        low, high = np.percentile(numeric[~missing], [2, 98])
        if low < 0 < high:  # centred data (e.g. an aspect from -1 to +1): a diverging map with 0 in the middle
            low, high, cmap = -max(-low, high), max(-low, high), "coolwarm"
        else:
            cmap = "viridis"
        axes.scatter(*coords[missing].T, color="lightgrey", **style)
        shown = order[~missing[order]]
        drawn = axes.scatter(*coords[shown].T, c=numeric[shown], cmap=cmap, vmin=low, vmax=high, **style)
        axes.figure.colorbar(drawn, ax=axes, shrink=0.8)
    else:
        _draw_categories(axes, coords, values, order, style)


def _draw_categories(axes: Any, coords: np.ndarray, values: Sequence[Any], order: np.ndarray, style: dict) -> None:
    from matplotlib import colormaps

    keys = ["" if v is None else str(v) for v in values]
    counts = Counter(keys)
    named = [key for key, _ in counts.most_common(_MAX_CATEGORIES if len(counts) <= _MAX_CATEGORIES else 19)]
    named.sort(key=_legend_order(keys))
    palette = colormaps["tab10" if len(named) <= 10 else "tab20"].colors
    colour_of = {key: palette[i % len(palette)] for i, key in enumerate(named)}
    order = order[np.argsort([-counts[keys[i]] for i in order], kind="stable")]  # rare categories drawn on top
    colours = [colour_of.get(keys[i], (0.75, 0.75, 0.75)) for i in order]
    axes.scatter(*coords[order].T, c=colours, **style)
    handles = [_dot(colour_of[key], f"{key or '(none)'} ({counts[key]})") for key in named]
    rest = len(keys) - sum(counts[key] for key in named)
    if rest:
        handles.append(_dot((0.75, 0.75, 0.75), f"other ({rest})"))
    axes.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", frameon=False)


def _dot(colour: Any, label: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", linestyle="", color=colour, label=label)


def _legend_order(keys: Sequence[str]) -> Any:
    """Numbers in numeric order ("2" before "10"); names in order of first appearance (the data's own order,
    e.g. zero, one, two... rather than eight, five, four...)."""
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    try:
        numeric = {key: float(key) for key in first}
        return numeric.__getitem__
    except ValueError:
        return first.__getitem__


def _annotate(axes: Any, point: np.ndarray, text: str) -> None:
    from matplotlib import patheffects

    label = text if len(text) <= 30 else text[:29] + "…"
    axes.annotate(
        label,
        point,
        xytext=(3, 3),
        textcoords="offset points",
        fontsize=8,
        path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
    )
