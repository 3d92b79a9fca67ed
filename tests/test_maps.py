import builtins
import re

import numpy as np
import pytest
from PIL import Image

from jointembed.maps import draw_map, escape_cell, is_numeric, pick_labels, reduce_to_2d, write_projector


def _clusters(num_clusters: int = 5, per_cluster: int = 40, dim: int = 16, seed: int = 0):
    """``(num_clusters * per_cluster, dim)`` points around well separated centres, and each point's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_clusters, dim)) * 4
    labels = np.repeat(np.arange(num_clusters), per_cluster)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def _unescape(cell: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[m.group(1)], cell)


def test_pca_of_clustered_vectors_keeps_the_clusters_apart():
    vectors, labels = _clusters()
    coords = reduce_to_2d(vectors)
    assert coords.shape == (len(vectors), 2) and coords.dtype == np.float32
    centres = np.stack([coords[labels == c].mean(0) for c in range(5)])
    nearest = ((coords[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == labels).mean() > 0.95  # nearest-centroid accuracy on the map itself


def test_pca_is_centred_deterministic_and_pads_a_one_dimensional_space():
    vectors, _ = _clusters()
    coords = reduce_to_2d(vectors)
    np.testing.assert_allclose(coords.mean(0), 0, atol=1e-4)
    np.testing.assert_array_equal(coords, reduce_to_2d(vectors.copy()))
    assert coords[:, 0].var() >= coords[:, 1].var()  # first axis = most variance
    line = reduce_to_2d([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(line, [[-4 / 3, 0], [-1 / 3, 0], [5 / 3, 0]], rtol=1e-5)


def test_tsne_gives_separable_clusters():
    vectors, labels = _clusters(num_clusters=3, per_cluster=20)
    coords = reduce_to_2d(vectors, "tsne", seed=0)
    centres = np.stack([coords[labels == c].mean(0) for c in range(3)])
    assert (((coords[:, None] - centres[None]) ** 2).sum(-1).argmin(1) == labels).mean() > 0.95


def test_umap_without_the_package_names_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_umap(name, *args, **kwargs):
        if name == "umap":
            raise ImportError("No module named 'umap'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_umap)
    with pytest.raises(ImportError, match="pip install umap-learn"):
        reduce_to_2d(np.eye(5), "umap")


@pytest.mark.parametrize(
    ("vectors", "method", "message"),
    [
        (np.zeros((0, 4)), "pca", "no vectors"),
        (np.zeros(4), "pca", "2-D array"),
        (np.zeros((3, 0)), "pca", "2-D array"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), "pca", "row 1 is not finite"),
        (np.eye(3), "mds", "unknown method 'mds'; choose from pca, tsne, umap"),
        (np.eye(3), "tsne", "at least 4 points"),
    ],
)
def test_bad_input_is_named(vectors, method, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        reduce_to_2d(vectors, method)


def test_projector_files_parse_back(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    rows = [{"key": i, "label_name": f"class {i % 2}", "score": i / 3} for i in range(6)]
    rows[2]["note"] = "tab\there\nnew line \\ backslash"
    written = write_projector(tmp_path, vectors, rows, tensor_name="digits")
    assert [p.name for p in written] == ["vectors.tsv", "metadata.tsv", "projector_config.pbtxt"]

    # what TensorBoard's projector does: split lines on "\n" and "\t", floats for the vectors
    lines = (tmp_path / "vectors.tsv").read_text().splitlines()
    parsed = np.array([[float(x) for x in line.split("\t")] for line in lines], dtype=np.float32)
    np.testing.assert_array_equal(parsed, vectors)  # exact: 9 significant digits round-trip a float32
    header, *body = (tmp_path / "metadata.tsv").read_text().split("\n")[:-1]
    assert header.split("\t") == ["key", "label_name", "score", "note"]
    assert len(body) == 6 and all(len(line.split("\t")) == 4 for line in body)
    assert body[1].split("\t") == ["1", "class 1", "0.333333", ""]
    assert _unescape(body[2].split("\t")[3]) == rows[2]["note"]

    config = (tmp_path / "projector_config.pbtxt").read_text()
    fields = dict(re.findall(r'^\s+(tensor_name|tensor_path|metadata_path): "([^"]*)"$', config, re.M))
    assert fields == {"tensor_name": "digits", "tensor_path": "vectors.tsv", "metadata_path": "metadata.tsv"}
    assert re.findall(r"tensor_shape: (\d+)", config) == ["6", "3"]
    assert config.startswith("embeddings {") and config.rstrip().endswith("}")


def test_a_single_metadata_column_gets_an_index_so_its_header_is_read_as_one(tmp_path):
    write_projector(tmp_path, np.eye(3), [{"label": "a"}, {"label": "b"}, {}])
    assert (tmp_path / "metadata.tsv").read_text() == "index\tlabel\n0\ta\n1\tb\n2\t\n"
    write_projector(tmp_path / "bare", np.eye(3))
    assert not (tmp_path / "bare" / "metadata.tsv").exists()
    assert "metadata_path" not in (tmp_path / "bare" / "projector_config.pbtxt").read_text()


def test_escape_cell():
    assert escape_cell(None) == ""
    assert escape_cell(0.1234567) == "0.123457"
    assert escape_cell(np.float32(2.5)) == "2.5"
    assert escape_cell(7) == "7"
    assert escape_cell(["a", 1]) == '["a", 1]'
    assert escape_cell("C:\\x\ty\r\n") == "C:\\\\x\\ty\\r\\n"


def test_projector_refuses_mismatched_rows_and_bad_names(tmp_path):
    with pytest.raises(ValueError, match="2 metadata rows for 3 vectors"):
        write_projector(tmp_path, np.eye(3), [{"a": 1}, {"a": 2}])
    with pytest.raises(TypeError, match="metadata row 1 must be a mapping"):
        write_projector(tmp_path, np.eye(2), [{"a": 1}, "b"])
    with pytest.raises(ValueError, match="tensor_name"):
        write_projector(tmp_path, np.eye(2), tensor_name='say "hi"')


def test_an_interrupted_export_keeps_the_previous_files(tmp_path, monkeypatch):
    write_projector(tmp_path, np.eye(3), [{"label": i, "name": "old"} for i in range(3)])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savetxt", crash)
    with pytest.raises(KeyboardInterrupt):
        write_projector(tmp_path, np.ones((4, 3)), [{"label": 0, "name": "new"}] * 4)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # and no temporary files left

    draw_map(tmp_path / "map.png", np.eye(2))
    png = (tmp_path / "map.png").read_bytes()
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", crash)
    with pytest.raises(KeyboardInterrupt):
        draw_map(tmp_path / "map.png", np.ones((3, 2)))
    assert (tmp_path / "map.png").read_bytes() == png


def test_draw_map_writes_a_png_with_a_legend_or_a_colour_bar(tmp_path):
    vectors, labels = _clusters()
    coords = reduce_to_2d(vectors)
    names = [f"point {i}" for i in range(len(coords))]
    path = draw_map(
        tmp_path / "map.png",
        coords,
        {"label": labels.tolist(), "score": coords[:, 0].tolist()},
        labels_to_draw=pick_labels(coords, names, labels.tolist(), k=5),
        title="five clusters",
    )
    image = Image.open(path)
    assert image.format == "PNG" and image.width > 800 and image.height > 300
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 50  # points, legend, colour bar: far from a blank canvas
    assert path.stat().st_size > 10_000


def test_draw_map_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="colour column 'label' has 2 values for 3 points"):
        draw_map(tmp_path / "map.png", np.zeros((3, 2)), {"label": [1, 2]})
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        draw_map(tmp_path / "map.png", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="no vectors"):
        draw_map(tmp_path / "map.png", np.zeros((0, 2)))
    assert not (tmp_path / "map.png").exists()


def test_draw_map_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=re.escape('pip install "jointembed[plot]"')):
        draw_map(tmp_path / "map.png", np.zeros((3, 2)))


def test_numbers_get_a_colour_bar_and_a_handful_of_integers_a_legend():
    assert is_numeric([0.5, None, -1.0, float("nan")])
    assert is_numeric(list(range(100)))
    assert not is_numeric([0, 1, 2, 1])  # class labels
    assert not is_numeric([True, False])
    assert not is_numeric(["1.5", "2"])
    assert not is_numeric([None])


def test_pick_labels_names_groups_at_their_centre_or_the_outermost_points():
    coords = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1], [-9.0, 0.0]])
    groups = ["a", "a", "b", "b", "b", "c"]
    assert pick_labels(coords, [str(i) for i in range(6)], groups, k=2) == {2: "b", 0: "a"}
    outer = pick_labels(coords, [f"p{i}" for i in range(6)], k=4)
    assert outer[5] == "p5" and len(outer) <= 4
    with pytest.raises(ValueError, match="5 names for 6 points"):
        pick_labels(coords, ["x"] * 5)
