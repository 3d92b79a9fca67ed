"""``jointembed tune``: the search space (each distribution, bad entries named), space keys checked against the
recipe, values merged into it, the validation reporter (best so far, a missing metric named, pruning), a tiny
search end to end through the CLI whose best recipe ``fit`` accepts, trials pruned through Lightning, and (slow)
a 10-trial search on MovieLens 100K in two worker processes when the data is present."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

optuna = pytest.importorskip("optuna")

from jointembed.cli import main  # noqa: E402
from jointembed.commands.tune import Search, optimize, storage_for  # noqa: E402
from jointembed.tuning import (  # noqa: E402
    Param,
    ValidationReporter,
    check_keys,
    load_recipe,
    merge_values,
    monitored_metric,
    parse_space,
    require_optuna,
)

REPO = Path(__file__).resolve().parents[2]
HOUSING = REPO / "recipes" / "housing.yaml"
ML100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"

SPACE = {
    "model.init_args.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    "model.init_args.weight_decay": {"type": "float", "low": 0.0, "high": 0.01, "step": 0.005},
    "data.init_args.batch_size": {"type": "int", "low": 64, "high": 256, "step": 64},
    "model.init_args.model.init_args.hidden_sizes": {"type": "categorical", "choices": [[16], [32, 16]]},
}


def _housing_args(tmp_path: Path) -> list[str]:
    """Overrides that keep a housing trial to a few batches, logging under ``tmp_path``."""
    return [
        "--data.init_args.path", str(REPO / "datasets" / "california_housing"),
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.log_every_n_steps", "1",
    ]  # fmt: skip


def test_space_reads_each_distribution_and_draws_within_it() -> None:
    space = parse_space({**SPACE, "trainer.max_epochs": {"type": "int", "low": 2, "high": 64, "log": True}})
    assert space[0] == Param("model.init_args.lr", "float", low=1e-3, high=3e-2, log=True)
    assert space[1].step == 0.005 and space[2].kind == "int" and space[4].log
    assert space[3].choices == ([16], [32, 16])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        lr, decay, batch, hidden, epochs = (p.suggest(trial) for p in space)
        assert 1e-3 <= lr <= 3e-2 and decay in (0.0, 0.005, 0.01) and batch in (64, 128, 192, 256)
        assert hidden in ([16], [32, 16]) and 2 <= epochs <= 64 and isinstance(epochs, int)
        # a list choice is kept by Optuna as its JSON text and decoded back to the list
        assert space[3].decode(trial.params["model.init_args.model.init_args.hidden_sizes"]) == hidden


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"low": 1, "high": 2}, "type float, int or categorical"),
        ({"type": "normal", "low": 1, "high": 2}, "type float, int or categorical"),
        ("1e-3", "type float, int or categorical"),
        ({"type": "float", "low": 0.1, "high": 1, "scale": "log"}, r"unknown field\(s\) \['scale'\]"),
        ({"type": "float", "low": 1.0, "high": 0.1}, "low must be below high"),
        ({"type": "float", "high": 0.1}, "low must be a number, got None"),
        ({"type": "int", "low": 1.5, "high": 4}, "low must be an integer"),
        ({"type": "int", "low": True, "high": 4}, "low must be an integer"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "a log scale needs low > 0"),
        ({"type": "float", "low": 0.1, "high": 1.0, "log": "yes"}, "log must be true or false"),
        ({"type": "int", "low": 1, "high": 8, "step": 0}, "step must be > 0"),
        ({"type": "categorical", "choices": []}, "choices must be a non-empty list"),
        ({"type": "categorical", "choices": [[64], [64]]}, "choices must differ"),
        ({"type": "categorical", "choices": [1], "low": 0}, "unknown field"),
    ],
)
def test_bad_space_entries_are_named(spec: object, match: str) -> None:
    with pytest.raises(ValueError, match=f"space.yaml: model.init_args.lr: .*{match}"):
        parse_space({"model.init_args.lr": spec}, "space.yaml")


@pytest.mark.parametrize("space", [None, [], {}, "lr: 1"])
def test_a_space_must_be_a_mapping(space: object) -> None:
    with pytest.raises(ValueError, match="a search space is a mapping of dotted recipe keys"):
        parse_space(space)


def test_space_keys_are_checked_against_the_recipe() -> None:
    recipe = load_recipe(HOUSING)
    check_keys(recipe, list(SPACE))  # written in the recipe
    # not written, but an argument of the node's class (or of the trainer), and a list item by index
    check_keys(recipe, ["model.init_args.model.init_args.dropout", "trainer.gradient_clip_val"])
    check_keys(recipe, ["trainer.callbacks.0.init_args.save_top_k", "trainer.callbacks.0.init_args.every_n_epochs"])
    bad = {
        "model.init_args.lrr": r"'model.init_args.lrr' is not in housing.yaml: model.init_args has \['lr'",
        "trainer.max_epoch": "'trainer.max_epoch' is not in housing.yaml: trainer has",
        "trainer.callbacks.3.init_args.mode": "trainer.callbacks has items 0-0",
        "trainer.callbacks.0.init_args.patience": r"trainer.callbacks.0.init_args has \['monitor'",
        "optimizer.lr": "the top level has",
        "model.init_args.model.init_args.depth": "model.init_args.model.init_args has",
    }
    for key, match in bad.items():
        with pytest.raises(ValueError, match=match):
            check_keys(recipe, [key], "housing.yaml")


def test_values_merge_into_a_copy_of_the_recipe() -> None:
    recipe = {
        "trainer": {"callbacks": [{"class_path": "a.B", "init_args": {"monitor": "val/x"}}, {"class_path": "a.C"}]},
        "model": {"class_path": "a.T", "init_args": {"lr": 0.1, "model": {"init_args": {"dim": 8}}}},
    }
    merged = merge_values(
        recipe,
        {
            "model.init_args.lr": 0.01,
            "model.init_args.model.init_args.hidden_sizes": [32, 16],
            "trainer.callbacks.1.init_args.patience": 3,
            "trainer.max_epochs": 5,
        },
    )
    assert merged["model"]["init_args"] == {"lr": 0.01, "model": {"init_args": {"dim": 8, "hidden_sizes": [32, 16]}}}
    assert merged["trainer"]["callbacks"][1] == {"class_path": "a.C", "init_args": {"patience": 3}}
    assert (
        merged["trainer"]["max_epochs"] == 5 and merged["trainer"]["callbacks"][0] == recipe["trainer"]["callbacks"][0]
    )
    assert recipe["model"]["init_args"]["lr"] == 0.1 and "init_args" not in recipe["trainer"]["callbacks"][1]


def test_the_default_metric_is_the_recipes_monitor() -> None:
    assert monitored_metric(load_recipe(HOUSING)) == ("val/rmse", "minimize")
    assert monitored_metric(load_recipe(REPO / "recipes" / "movielens.yaml")) == ("val/ndcg@10", "maximize")
    assert monitored_metric(load_recipe(REPO / "recipes" / "digits_multimodal.yaml")) is None


class _PruneAbove(optuna.pruners.BasePruner):
    """Prunes a trial whose last reported value is above ``limit`` (a minimised metric reported worse)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.intermediate_values[trial.last_step] > self.limit


def _validation_end(reporter: ValidationReporter, epoch: int, metrics: dict[str, float]) -> None:
    trainer = SimpleNamespace(
        sanity_checking=False, current_epoch=epoch, callback_metrics={k: torch.tensor(v) for k, v in metrics.items()}
    )
    reporter.on_validation_end(trainer, None)


def test_reporter_reports_the_best_so_far_and_prunes_a_worse_trial() -> None:
    study = optuna.create_study(pruner=_PruneAbove(4.0))
    trial = study.ask()
    reporter = ValidationReporter(trial, "val/rmse", "minimize")
    reporter.on_validation_end(SimpleNamespace(sanity_checking=True), None)  # the sanity check is not an epoch
    for epoch, value in enumerate([3.0, 5.0, float("nan"), 2.5]):
        _validation_end(reporter, epoch, {"val/rmse": value, "train/loss": 1.0})
    assert reporter.best == 2.5 and reporter.best_epoch == 3 and reporter.epochs == 4
    assert study.trials[0].intermediate_values == {0: 3.0, 1: 3.0, 2: 3.0, 3: 2.5}

    worse = ValidationReporter(study.ask(), "val/rmse", "minimize")
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 0: best val/rmse 6"):
        _validation_end(worse, 0, {"val/rmse": 6.0})
    maximised = ValidationReporter(optuna.create_study().ask(), "val/hr@10", "maximize")
    for epoch, value in enumerate([0.1, 0.3, 0.2]):
        _validation_end(maximised, epoch, {"val/hr@10": value})
    assert maximised.best == pytest.approx(0.3) and maximised.best_epoch == 1


def test_a_metric_never_logged_is_named() -> None:
    reporter = ValidationReporter(optuna.create_study().ask(), "val/rmsee", "minimize")
    with pytest.raises(ValueError, match=r"never logs 'val/rmsee' on validation; it logs \['val/loss', 'val/rmse'\]"):
        _validation_end(reporter, 0, {"val/rmse": 1.0, "val/loss": 2.0, "train/loss": 3.0})


def test_tune_end_to_end_writes_a_best_recipe_that_fit_accepts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    storage, best = f"sqlite:///{tmp_path / 'tune.db'}", tmp_path / "best.yaml"
    args = ["--config", str(HOUSING), "--space", str(space), "--trials", "3", "--storage", storage, "--out", str(best)]
    assert main(["tune", *args, *_housing_args(tmp_path)]) == 0
    study = optuna.load_study(study_name="housing", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert all(t.value == min(t.intermediate_values.values()) for t in study.trials)  # best over epochs
    # each trial logged to its own folder, fitted but never tested
    runs = sorted(p.name for p in (tmp_path / "runs" / "housing").iterdir())
    assert runs == [f"tune_housing_trial_{n}" for n in range(3)]
    assert not list((tmp_path / "runs").rglob("test_metrics.json"))
    out = capsys.readouterr().out
    assert f"best val/rmse = {study.best_value:.4g} (trial {study.best_trial.number}, minimize)" in out

    recipe = yaml.safe_load(best.read_text(encoding="utf-8"))
    params = study.best_params
    assert recipe["model"]["init_args"]["lr"] == params["model.init_args.lr"]
    assert recipe["data"]["init_args"]["batch_size"] == params["data.init_args.batch_size"]
    hidden = recipe["model"]["init_args"]["model"]["init_args"]["hidden_sizes"]
    assert hidden in ([16], [32, 16]) and str(hidden) == params["model.init_args.model.init_args.hidden_sizes"]
    assert recipe["trainer"]["logger"]["init_args"].get("version") is None  # the trial's folder is not the recipe's
    assert best.read_text(encoding="utf-8").startswith("# The best of 3 trials of jointembed tune")
    with pytest.raises(SystemExit) as printed:
        main(["fit", "--config", str(best), "--print_config"])
    assert printed.value.code in (0, None)
    assert f"lr: {params['model.init_args.lr']}" in capsys.readouterr().out

    # the study goes on where it stopped: two more trials, numbered after the first three
    assert main(["tune", *args[:4], "--trials", "2", *args[6:], *_housing_args(tmp_path)]) == 0
    assert len(optuna.load_study(study_name="housing", storage=storage).trials) == 5


def test_trials_are_pruned_through_lightning(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'prune.db'}"
    optuna.create_study(study_name="prune", storage=storage_for(storage), direction="minimize")
    recipe = load_recipe(HOUSING)
    search = Search(
        recipe, parse_space(SPACE), tuple(_housing_args(tmp_path)), "val/rmse", "minimize", storage, "prune"
    )
    optimize(search, 2, pruner=_PruneAbove(0.0))  # every RMSE is above 0: each trial stops after its first epoch
    trials = optuna.load_study(study_name="prune", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert [list(t.intermediate_values) for t in trials] == [[0], [0]]
    with open(tmp_path / "runs" / "housing" / "tune_prune_trial_0" / "metrics.csv", encoding="utf-8") as rows:
        assert {row["epoch"] for row in csv.DictReader(rows)} == {"0"}  # stopped before a second epoch


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric", "test/rmse"], "settings are chosen on the validation split"),
        (["--metric", "val/mae"], "give --direction maximize or minimize"),
        (["--metric", "val/rmsee", "--direction", "minimize"], "the task never logs 'val/rmsee' on validation"),
        (["--trials", "0"], "--trials and --jobs must be at least 1"),
    ],
)
def test_user_errors_end_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    storage = ["--storage", str(tmp_path / "t.db")]
    code = main(["tune", "--config", str(HOUSING), "--space", str(space), *storage, *extra, *_housing_args(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("jointembed tune: error: ") and message in err[-1]


def test_a_space_key_not_in_the_recipe_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("model.init_args.learning_rate: {type: float, low: 0.001, high: 0.1}\n", encoding="utf-8")
    assert main(["tune", "--config", str(HOUSING), "--space", str(space), "--storage", str(tmp_path / "t.db")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"jointembed tune: error: search space key 'model.init_args.learning_rate' is not in {HOUSING}: "
        "model.init_args has ['lr', 'weight_decay', 'model']"
    )
    assert not (tmp_path / "t.db").exists()  # refused before any study is made


def test_without_optuna_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'jointembed\[tune\]'"):
        require_optuna()


def test_the_movielens_space_fits_its_recipe() -> None:
    space_file = REPO / "recipes" / "tune" / "movielens.yaml"
    from jointembed.tuning import load_space

    space = load_space(space_file)
    check_keys(load_recipe(REPO / "recipes" / "movielens.yaml"), [p.key for p in space])
    assert "jointembed tune --config recipes/movielens.yaml --space recipes/tune/movielens.yaml" in (
        space_file.read_text(encoding="utf-8")
    )


@pytest.mark.slow
@pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason=f"{ML100K} is not present (MovieLens development copy)")
def test_ten_trials_on_movielens_100k(tmp_path: Path) -> None:
    storage, best = f"sqlite:///{tmp_path / 'tune.db'}", tmp_path / "best.yaml"
    code = main([
        "tune", "--config", str(REPO / "recipes" / "movielens.yaml"),
        "--space", str(REPO / "recipes" / "tune" / "movielens.yaml"),
        "--trials", "10", "--jobs", "2", "--storage", storage, "--out", str(best),
        "--data.init_args.path", str(ML100K), "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "30",
    ])  # fmt: skip
    assert code == 0
    study = optuna.load_study(study_name="movielens", storage=storage)
    states = optuna.trial.TrialState
    assert len(study.trials) == 10 and all(t.state in (states.COMPLETE, states.PRUNED) for t in study.trials)
    # 60 steps of training already rank the held-out watch well above a random ranking (10 / 1,682 ≈ 0.006)
    assert study.best_value > 0.03
    recipe = yaml.safe_load(best.read_text(encoding="utf-8"))
    assert recipe["model"]["init_args"]["lr"] == study.best_params["model.init_args.lr"]
