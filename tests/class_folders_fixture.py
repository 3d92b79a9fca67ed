"""A tiny ESC-style dataset of generated WAVs: class folders with spaces in their names, fold-prefixed file names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

CLASSES = ("001 - Dog bark", "002 - Rain", "010 - Fire crackling")


def make_esc_folder(root: Path, folds: int = 3, per_fold: int = 2, rate: int = 8000, seconds: float = 0.25) -> Path:
    """``root/<class>/<fold>-<id>-A.wav``: a tone per class (its pitch names the class), noise per clip; a README
    beside the class folders and a hidden folder, which are not classes."""
    rng = np.random.default_rng(0)
    t = np.arange(round(rate * seconds)) / rate
    for c, folder in enumerate(CLASSES):
        (root / folder).mkdir(parents=True)
        for fold in range(1, folds + 1):
            for k in range(per_fold):
                wave = 0.4 * np.sin(2 * np.pi * (300 + 500 * c) * t) + 0.05 * rng.standard_normal(t.size)
                name = f"{fold}-{1000 * c + 10 * fold + k}-A.wav"
                soundfile.write(root / folder / name, wave.astype(np.float32), rate)
    (root / "README.md").write_text("files beside the class folders are not classes\n")
    (root / ".cache").mkdir()
    return root
