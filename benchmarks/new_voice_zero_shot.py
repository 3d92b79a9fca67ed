"""Zero-shot accuracy of a trained digits model on voices it never heard: the digits zero..nine spoken by the
espeak-ng speech synthesiser in several voices, written as 16 kHz stereo WAVs (the model was trained on 8 kHz
mono human recordings). Prints one JSON line.

Needs ``espeak-ng`` and ``sox`` on the PATH (Debian: ``apt-get install espeak-ng sox``).

Usage: python benchmarks/new_voice_zero_shot.py --model runs/digits_multimodal/version_0/pretrained
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from jointembed import JointEmbeddingModel

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en", "en-us", "en-gb-x-rp", "en+f3", "en+m3"]


def _speak(folder: Path, voice: str, word: str) -> Path:
    raw, wav = folder / "raw.wav", folder / f"{voice.replace('+', '_')}_{word}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), word], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "2", str(wav)], check=True, capture_output=True)
    return wav


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a pretrained folder written by jointembed fit")
    args = parser.parse_args()
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install espeak-ng sox)")
    model = JointEmbeddingModel.from_pretrained(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        files = {(v, d): _speak(Path(tmp), v, d) for v in VOICES for d in DIGITS}
        labels = model.classify(audio=list(files.values())).labels
    hits = {key: label == key[1] for key, label in zip(files, labels, strict=True)}
    per_voice = {v: sum(hits[(v, d)] for d in DIGITS) / len(DIGITS) for v in VOICES}
    print(json.dumps({"clips": len(hits), "zero_shot_accuracy": sum(hits.values()) / len(hits), **per_voice}))


if __name__ == "__main__":
    main()
