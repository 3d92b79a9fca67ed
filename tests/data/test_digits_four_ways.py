"""The shipped "digits four ways" demo: its manifests reference only shipped files, its splits never leak, and
its build script reproduces it exactly."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from jointembed.data.manifest import read_manifest
from jointembed.modalities.image import resolve_path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "datasets" / "digits_four_ways"
SIZES = {
    "train": 2200,
    "val": 274,
    "test": 250,
    "train_speaker_split": 1760,
    "val_speaker_split": 220,
    "test_speaker_split": 500,
}


def fsdd_folder() -> Path:
    shared = os.environ.get("JOINTEMBED_SHARED_DATA")
    return (Path(shared) if shared else REPO / ".." / "shared" / "data") / "fsdd" / "recordings"


@functools.cache
def rows(name: str) -> list[SimpleNamespace]:
    """The rows with their file columns resolved against the manifest's folder (as the image/audio units do)."""
    manifest = read_manifest(DEMO / f"{name}.jsonl")
    out = []
    for row in manifest.rows:
        files = {c: resolve_path(row.cells[c], manifest.base) if c in row.cells else None for c in ("image", "audio")}
        ids = tuple(row.cells["ids"]) if "ids" in row.cells else None
        out.append(
            SimpleNamespace(row=row.row, label=row.label, group=row.group, columns=row.columns, ids=ids, **files)
        )
    return out


def test_manifests_reference_only_shipped_files() -> None:
    shipped = {p.resolve() for p in (DEMO / "images").glob("*.png")} | {p.resolve() for p in (DEMO / "audio").iterdir()}
    used = set()
    for name, size in SIZES.items():
        manifest = rows(name)
        assert len(manifest) == size, name
        for row in manifest:
            for file in (row.image, row.audio):
                if file is not None:
                    assert file.is_file() and file.is_relative_to(DEMO), f"{name} row {row.row}: {file}"
                    used.add(file.resolve())
            assert row.label is not None and (row.audio is None or row.group in str(row.audio))
    assert used == shipped  # nothing shipped that no manifest uses
    assert len(list((DEMO / "audio").iterdir())) == 2500 and len(list((DEMO / "images").glob("*.png"))) == 1797


def test_splits_do_not_leak() -> None:
    def files(name: str, column: str) -> set[Path]:
        return {getattr(r, column) for r in rows(name) if getattr(r, column) is not None}

    for suffix in ("", "_speaker_split"):
        train_images, train_audio = files(f"train{suffix}", "image"), files(f"train{suffix}", "audio")
        for held_out in (f"val{suffix}", f"test{suffix}"):
            assert not train_images & files(held_out, "image") and not train_audio & files(held_out, "audio")
    assert {r.group for r in rows("test_speaker_split")} == {"yweweler"}
    assert "yweweler" not in {r.group for r in rows("train_speaker_split") + rows("val_speaker_split")}
    for row in rows("test") + rows("test_speaker_split"):  # test rows are complete and paired by digit
        assert row.columns == ("ids", "text", "image", "audio") and row.ids == (row.label,)
        assert row.image.name.startswith(f"{row.label}_") and row.audio.name.startswith(f"{row.label}_")
    missing = [r for r in rows("train") if len(r.columns) < 4]
    assert 0.15 < len(missing) / SIZES["train"] < 0.35


@pytest.mark.slow
@pytest.mark.skipif(not fsdd_folder().is_dir(), reason="the FSDD recordings (../shared/data/fsdd) are not available")
def test_build_script_reproduces_the_shipped_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("digits_four_ways_build", DEMO / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    sizes = build.build(fsdd_folder(), tmp_path)
    assert sizes == SIZES
    for name in SIZES:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (DEMO / f"{name}.jsonl").read_bytes(), name
    built_audio = sorted(p.name for p in (tmp_path / "audio").iterdir())
    assert built_audio == sorted(p.name for p in (DEMO / "audio").iterdir())
    for name in built_audio[::97]:
        assert (tmp_path / "audio" / name).read_bytes() == (DEMO / "audio" / name).read_bytes()
    built_images = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert built_images == sorted(p.name for p in (DEMO / "images").glob("*.png"))
    for name in built_images:  # pixels, not bytes: another zlib may compress the same pixels differently
        built, shipped = (np.array(Image.open(folder / "images" / name)) for folder in (tmp_path, DEMO))
        assert np.array_equal(built, shipped), name
