"""Download and unpack a MovieLens dataset from grouplens.org (needs internet; nothing else in jointembed does).

    python datasets/download_movielens.py ml-100k --dest ~/data/movielens
    # then: read_movielens("~/data/movielens/ml-100k")

MovieLens is published by GroupLens Research (University of Minnesota) for research use; it may not be
redistributed. Read the README inside the download for the full licence terms.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

BASE_URL = "https://files.grouplens.org/datasets/movielens"
DATASETS = ("ml-100k", "ml-1m", "ml-latest-small")
LICENCE = (
    "MovieLens data (c) GroupLens Research, University of Minnesota: research use only, no redistribution, "
    "cite Harper & Konstan (2015), ACM TiiS 5(4). See the README in the download for the full terms."
)


def download(name: str, dest: Path, force: bool = False) -> Path:
    """Download ``<name>.zip`` and unpack it to ``dest/<name>``; returns that folder."""
    target = dest / name
    if target.is_dir() and not force:
        print(f"{target} already exists (use --force to download again)")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    url = f"{BASE_URL}/{name}.zip"
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        print(f"downloading {url}")
        with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out)
        with zipfile.ZipFile(archive) as zf:
            root = (Path(tmp) / "unpacked").resolve()
            for member in zf.namelist():  # refuse entries that would land outside the folder
                if not (root / member).resolve().is_relative_to(root):
                    raise ValueError(f"{url}: archive entry {member!r} points outside the target folder")
            zf.extractall(root)
        if not (root / name).is_dir():
            found = sorted(p.name for p in root.iterdir())
            raise ValueError(f"{url}: expected a top-level folder {name!r} in the archive, found {found}")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(root / name), target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS, help="which MovieLens release")
    parser.add_argument("--dest", type=Path, required=True, help="folder to unpack into (created if missing)")
    parser.add_argument("--force", action="store_true", help="download again even if the folder exists")
    args = parser.parse_args()
    print(LICENCE)
    folder = download(args.dataset, args.dest.expanduser(), args.force)
    print(f"done: read it with jointembed.data.movielens.read_movielens({str(folder)!r})")


if __name__ == "__main__":
    main()
