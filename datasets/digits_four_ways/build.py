"""Build the "digits four ways" demo: the ten digits as images, speech, text and IDs, paired in JSONL manifests.

Run from the repository root (about half a minute; the result is identical on every run):

    python datasets/digits_four_ways/build.py --fsdd ../shared/data/fsdd/recordings

It writes, under ``--out``:

* ``images/{digit}_{index:04d}.png``: all 1,797 of scikit-learn's 8×8 digits, upscaled to 32×32 (bilinear),
  grayscale. They are split per digit, seeded, into train (70 %), val (10 %) and test (20 %) pools, so a test
  manifest only ever shows images that no training manifest shows.
* ``audio/{digit}_{speaker}_{index}.wav``: copies of all 2,500 Free Spoken Digit Dataset recordings.
* Manifests, one row per recording, pairing it with an image of the same digit from the split's pool (each image
  used once before any repeats), a phrase ("seven", "the number seven", "7", ...), the ID bag ``[digit]``,
  ``label`` = digit and ``group`` = speaker:

  - by recording, the FSDD convention: ``test.jsonl`` indices 0-4, ``val.jsonl`` 5-9, ``train.jsonl`` 10-49;
  - by speaker: ``test_speaker_split.jsonl`` all recordings of the held-out speaker; ``train_speaker_split.jsonl``
    and ``val_speaker_split.jsonl`` the other four speakers, indices 10-49 and 5-9.

  Training and validation manifests exercise missing modalities: about 10 % of the recordings' rows lack text,
  5 % IDs and 5 % the image; 5 % extra rows have image, text and IDs but no audio, and 5 % more an image alone.
  Test manifests are complete. Every shipped file is referenced by some manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

REPO = Path(__file__).resolve().parents[2]
SEED = 20240607
SIZE = 32
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
HELD_OUT_SPEAKER = "yweweler"
NUM_RECORDINGS = 50
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = ("{w}", "the number {w}", "{n}", "digit {w}", "number {n}", "a spoken {w}", "the digit {w}", "{w} ({n})")
IMAGE_SPLIT = {"train": 0.7, "val": 0.1, "test": 0.2}
DROP = {"text": 0.10, "ids": 0.05, "image": 0.05}
EXTRA_FRACTION = 0.05


def default_fsdd() -> Path:
    """``$JOINTEMBED_SHARED_DATA/fsdd/recordings`` if that variable is set, else ``../shared/data/...``."""
    shared = os.environ.get("JOINTEMBED_SHARED_DATA")
    base = Path(shared) if shared else REPO / ".." / "shared" / "data"
    return base / "fsdd" / "recordings"


def write_images(out: Path) -> tuple[np.ndarray, dict[str, dict[int, list[str]]]]:
    """Write every sklearn digit as a PNG; return the labels and, per split, per digit, the image paths."""
    digits = load_digits()
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (pixels, digit) in enumerate(zip(digits.images, digits.target, strict=True)):
        gray = np.clip(np.rint(pixels * 255.0 / 16.0), 0, 255).astype(np.uint8)
        name = f"{digit}_{index:04d}.png"
        Image.fromarray(gray).resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(folder / name, optimize=False)
        paths.append(f"images/{name}")
    rng = np.random.default_rng([SEED, 0])
    pools: dict[str, dict[int, list[str]]] = {name: {} for name in IMAGE_SPLIT}
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(digits.target == digit))
        n_test = round(IMAGE_SPLIT["test"] * len(members))
        n_val = round(IMAGE_SPLIT["val"] * len(members))
        chunks = {"test": members[:n_test], "val": members[n_test : n_test + n_val], "train": members[n_test + n_val :]}
        for name, chunk in chunks.items():
            pools[name][digit] = [paths[i] for i in sorted(chunk)]
    remove_stale(folder, "*.png", {Path(p).name for p in paths})
    return digits.target, pools


def copy_audio(fsdd: Path, out: Path) -> list[tuple[int, str, int]]:
    """Copy the FSDD recordings; return ``(digit, speaker, index)`` of each, sorted."""
    recordings = [(d, s, i) for d in range(10) for s in SPEAKERS for i in range(NUM_RECORDINGS)]
    folder = out / "audio"
    folder.mkdir(parents=True, exist_ok=True)
    names = set()
    for digit, speaker, index in recordings:
        name = f"{digit}_{speaker}_{index}.wav"
        source = fsdd / name
        if not source.is_file():
            raise SystemExit(f"FSDD recording {source} is missing; pass --fsdd the folder of the 2,500 WAV files")
        shutil.copyfile(source, folder / name)
        names.add(name)
    remove_stale(folder, "*.wav", names)
    return recordings


def remove_stale(folder: Path, pattern: str, keep: set[str]) -> None:
    """Delete files matching ``pattern`` in ``folder`` that this build did not write (left by an older build)."""
    for file in folder.glob(pattern):
        if file.name not in keep:
            file.unlink()


class ImageDealer:
    """Hands out images of a digit from one pool: a seeded shuffle, every image once before any repeats."""

    def __init__(self, pool: dict[int, list[str]], rng: np.random.Generator) -> None:
        self.pool, self.rng = pool, rng
        self.queues: dict[int, list[str]] = {d: [] for d in pool}

    def next(self, digit: int) -> str:
        if not self.queues[digit]:
            self.queues[digit] = [self.pool[digit][i] for i in self.rng.permutation(len(self.pool[digit]))]
        return self.queues[digit].pop()


def phrase(rng: np.random.Generator, digit: int) -> str:
    """A random phrase naming ``digit``."""
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(w=WORDS[digit], n=digit)


def make_rows(
    recordings: list[tuple[int, str, int]], pool: dict[int, list[str]], stream: int, with_missing: bool
) -> list[dict]:
    """One row per recording, plus rows without audio when ``with_missing``; seeded by ``stream``.

    Every recording is kept (only other columns are dropped), so each shipped WAV file is referenced.
    """
    rng = np.random.default_rng([SEED, stream])
    dealer = ImageDealer(pool, rng)
    rows = []
    for digit, speaker, index in recordings:
        draws = rng.random(len(DROP))
        dropped = {column for column, u in zip(DROP, draws, strict=True) if with_missing and u < DROP[column]}
        row = {
            "ids": [digit],
            "text": phrase(rng, digit),
            "image": None if "image" in dropped else dealer.next(digit),
            "audio": f"audio/{digit}_{speaker}_{index}.wav",
            "label": digit,
            "group": speaker,
        }
        rows.append({key: value for key, value in row.items() if key not in dropped})
    extra = round(EXTRA_FRACTION * len(recordings)) if with_missing else 0
    for _ in range(extra):  # image, text and IDs, no audio (so no speaker)
        digit = int(rng.integers(10))
        rows.append({"ids": [digit], "text": phrase(rng, digit), "image": dealer.next(digit), "label": digit})
    for _ in range(extra):  # an image alone
        digit = int(rng.integers(10))
        rows.append({"image": dealer.next(digit), "label": digit})
    return rows


def write_manifest(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, keys in a fixed order, ``\\n`` line ends."""
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def build(fsdd: Path, out: Path) -> dict[str, int]:
    """Write images, audio and manifests into ``out``; return the number of rows of each manifest."""
    out.mkdir(parents=True, exist_ok=True)
    _, pools = write_images(out)
    recordings = copy_audio(fsdd, out)
    held = HELD_OUT_SPEAKER

    def pick(speakers: set[str], low: int, high: int) -> list[tuple[int, str, int]]:
        return [r for r in recordings if r[1] in speakers and low <= r[2] < high]

    others = set(SPEAKERS) - {held}
    plan = {
        "train": (pick(set(SPEAKERS), 10, 50), "train", True),
        "val": (pick(set(SPEAKERS), 5, 10), "val", True),
        "test": (pick(set(SPEAKERS), 0, 5), "test", False),
        "train_speaker_split": (pick(others, 10, 50), "train", True),
        "val_speaker_split": (pick(others, 5, 10), "val", True),
        "test_speaker_split": (pick({held}, 0, NUM_RECORDINGS), "test", False),
    }
    sizes = {}
    for stream, (name, (chosen, pool, with_missing)) in enumerate(plan.items(), start=1):
        rows = make_rows(chosen, pools[pool], stream, with_missing)
        write_manifest(out / f"{name}.jsonl", rows)
        sizes[name] = len(rows)
    return sizes


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd", type=Path, default=default_fsdd(), help="folder of the FSDD WAV recordings")
    parser.add_argument("--out", type=Path, default=REPO / "datasets" / "digits_four_ways", help="output folder")
    args = parser.parse_args(argv)
    for name, rows in build(args.fsdd, args.out).items():
        print(f"{args.out / (name + '.jsonl')}: {rows} rows")


if __name__ == "__main__":
    main()
