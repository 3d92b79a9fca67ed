"""Test accuracy of the digits embedding network against its embedding width; prints one JSON line.

    python benchmarks/digits_dim_sweep.py                      # d = 2 3 4 8 16, seeds 0 1 2
    python benchmarks/digits_dim_sweep.py --dims 3 16 --seeds 0

Each run is ``jointembed fit --config recipes/digits.yaml`` through the real CLI with only the embedding width
and the seed changed (``--model.init_args.model.init_args.embedding_dim d --seed_everything s``): the same
hidden layers, optimiser, epochs and 70/10/20 split (the split's seed stays the recipe's), tested on the
checkpoint with the best validation accuracy. The seed changes the initialisation and the shuffling. The rule
of thumb (``64 ** 0.25`` → 3) is marked. Parameter counts are of the network alone (embedding table and total).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from jointembed.data.digits import DigitsDataModule
from jointembed.lightning_cli import run
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.nn import suggest_embedding_dim

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "digits.yaml"


def fit_once(recipe: Path, dim: int, seed: int, epochs: int | None, workdir: Path) -> dict:
    """Run the recipe with embedding width ``dim`` and seed ``seed``; return its ``test_metrics.json``."""
    out = workdir / f"d{dim}_s{seed}"
    argv = [
        "fit",
        "--config",
        str(recipe),
        f"--model.init_args.model.init_args.embedding_dim={dim}",
        f"--seed_everything={seed}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={out}",
        f"--trainer.logger.init_args.save_dir={out}",
    ]
    if epochs is not None:
        argv.append(f"--trainer.max_epochs={epochs}")
    with contextlib.redirect_stdout(io.StringIO()):  # the per-run metric tables and confusion matrices
        run(argv)
    (metrics_file,) = out.glob("*/version_*/test_metrics.json")
    return json.loads(metrics_file.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's max_epochs")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    args = parser.parse_args()
    start = time.perf_counter()
    net_args = yaml.safe_load(args.recipe.read_text())["model"]["init_args"]["model"]["init_args"]
    data = DigitsDataModule()  # the sizes the recipe leaves to the data
    num_ids, num_classes = data.image_preprocessing().num_ids, len(data.class_names())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dim in args.dims:
            runs = [fit_once(args.recipe, dim, seed, args.epochs, Path(tmp)) for seed in args.seeds]
            accuracies = [r["test/acc"] for r in runs]
            test_images = sum(map(sum, runs[0]["test/confusion_matrix"]))
            net = EmbeddingNet(**{**net_args, "embedding_dim": dim})
            net.set_sizes(num_ids, 0, num_classes)
            params = net.num_parameters()
            rows.append(
                {
                    "embedding_dim": dim,
                    "rule_of_thumb": dim == suggest_embedding_dim(num_ids),
                    "test_acc_mean": round(statistics.mean(accuracies), 4),
                    "test_acc_min": round(min(accuracies), 4),
                    "test_acc_per_seed": [round(a, 4) for a in accuracies],
                    "params_embedding": params["embedding"],
                    "params_total": params["total"],
                }
            )
    result = {
        "benchmark": "digits_dim_sweep",
        "recipe": str(args.recipe.name),
        "seeds": args.seeds,
        "test_images": test_images,
        "results": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
