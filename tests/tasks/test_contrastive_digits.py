"""End to end on the shipped 'digits four ways' data: the real data module and the real encoders (tiny configs)
trained for a few batches through the CLI, and a save/load round trip of the joint model on real batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from jointembed.cli import main
from jointembed.registry import get_encoder_class

DIGITS = Path(__file__).resolve().parents[2] / "datasets" / "digits_four_ways"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ENCODERS = {
    "ids": ("jointembed.encoders.ids.IdEncoder", "ids"),
    "text": ("jointembed.encoders.text.ScratchTextEncoder", "scratch_text"),
    "image": ("jointembed.encoders.image.SmallCNNImageEncoder", "cnn_image"),
    "audio": ("jointembed.encoders.audio.AudioCNNEncoder", "audio_cnn"),
}

pytestmark = pytest.mark.skipif(not (DIGITS / "train.jsonl").is_file(), reason=f"{DIGITS} is not present")


def _data_args() -> dict[str, object]:
    return {
        "train": str(DIGITS / "train.jsonl"),
        "val": str(DIGITS / "val.jsonl"),
        "test": str(DIGITS / "test.jsonl"),
        "label_names": NAMES,
        "batch_size": 16,
    }


def _encoder_args(registry_name: str) -> dict[str, object]:
    args = get_encoder_class(registry_name).tiny_config()
    return {**args, "num_embeddings": 10} if registry_name == "ids" else args


@pytest.mark.slow
def test_cli_fit_on_digits_with_real_encoders(tmp_path: Path) -> None:
    encoders = {m: {"class_path": path, "init_args": _encoder_args(name)} for m, (path, name) in ENCODERS.items()}
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 3,
            "limit_val_batches": 2,
            "limit_test_batches": 2,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
        },
        "model": {
            "class_path": "jointembed.tasks.contrastive.ContrastiveTask",
            "init_args": {
                "model": {
                    "class_path": "jointembed.models.joint.JointEmbeddingModel",
                    "init_args": {"encoders": encoders},
                },
                "loss": "siglip",
                "anchor": "image",
                "pair_weights": {"audio-image": 2.0},
                "class_prompts": ["{}", "the digit {}"],
                "backbone_lr": {"text": 0.0},
            },
        },
        "data": {"class_path": "jointembed.data.multimodal.MultimodalDataModule", "init_args": _data_args()},
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(recipe)]) == 0
    [metrics_file] = tmp_path.glob("**/test_metrics.json")
    metrics = json.loads(metrics_file.read_text())
    for key in ("test/R@1_audio->image", "test/MRR_image->text", "test/zeroshot_audio", "test/zeroshot_image"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert set(metrics["test/R@1_table"]) == {"ids", "text", "image", "audio"}


def test_joint_model_round_trip_on_real_batches(tmp_path: Path) -> None:
    from jointembed.data.multimodal import MultimodalDataModule
    from jointembed.models.joint import JointEmbeddingModel
    from jointembed.registry import create_encoder

    torch.manual_seed(0)
    model = JointEmbeddingModel({m: create_encoder(name, **_encoder_args(name)) for m, (_, name) in ENCODERS.items()})
    data = MultimodalDataModule(**_data_args())
    data.setup()
    data.bind(model.inputs)  # the model's own units: 8 kHz from its audio encoder
    batch = next(iter(data.val_dataloader()))
    model.eval().save_pretrained(tmp_path / "digits")
    loaded = JointEmbeddingModel.from_pretrained(tmp_path / "digits").eval()
    with torch.no_grad():
        before, after = model(batch), loaded(batch)
    assert set(before) == {"ids", "text", "image", "audio"}
    for modality, embeddings in before.items():
        assert embeddings.shape == (int(batch["present"][modality].sum()), 8)
        torch.testing.assert_close(after[modality], embeddings)
