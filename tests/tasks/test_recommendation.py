import copy
import random

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from jointembed.losses.sampled_softmax import catalogue_losses
from jointembed.metrics.ranking import RANKING_METRICS, evaluate_rankings
from jointembed.models.recommender import Recommender
from jointembed.optim import LazyAdam, RowWiseAdagrad
from jointembed.sparse import SparseBatch
from jointembed.tasks.recommendation import RecommendationTask

NUM_CLUSTERS, CLUSTER_SIZE = 12, 10
NUM_ITEMS = NUM_CLUSTERS * CLUSTER_SIZE


def _collate_train(examples):
    return {
        "history": SparseBatch.from_lists([h for h, _ in examples]),
        "target": torch.tensor([t for _, t in examples]),
    }


def _collate_eval(examples):
    return {
        "history": SparseBatch.from_lists([h for h, _ in examples]),
        "targets": SparseBatch.from_lists([t for _, t in examples]),
    }


class ClusterWorld(pl.LightningDataModule):
    """Users watch 6 items of one cluster of 10; every watched item is a target once, the rest its history.

    Validation users have 5 items of history and 1 held-out item of the same cluster: a model that learned the
    clusters ranks the 5 unseen items of the cluster first (HR@10 = 1); a random ranking gets HR@10 ≈ 10/115.
    """

    def __init__(self, shuffle=True, seed=0):
        super().__init__()
        rng = random.Random(seed)
        self.num_items = NUM_ITEMS  # the sizes a task reads (CatalogueSizes)
        self.num_user_features = 0
        self.shuffle = shuffle
        self.train, self.val = [], []
        for user in range(300):
            cluster = rng.randrange(NUM_CLUSTERS)
            items = [cluster * CLUSTER_SIZE + j for j in rng.sample(range(CLUSTER_SIZE), 6)]
            if user < 240:
                self.train += [(items[:i] + items[i + 1 :], items[i]) for i in range(6)]
            else:
                self.val.append((items[:5], items[5:]))
        self.item_counts = torch.bincount(torch.tensor([t for _, t in self.train]), minlength=NUM_ITEMS)

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=64, shuffle=self.shuffle, collate_fn=_collate_train)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=32, collate_fn=_collate_eval)

    def test_dataloader(self):
        return self.val_dataloader()


def _trainer(max_epochs, **kwargs):
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def _task(loss="full_softmax", **kwargs):
    pl.seed_everything(0, verbose=False)
    model = Recommender(NUM_ITEMS, embedding_dim=16, hidden_sizes=(32,))
    return RecommendationTask(model, loss=loss, lr=0.05, dense_lr=0.01, **kwargs)


def test_lazy_adam_matches_adamw_on_dense_gradients():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ours = LazyAdam([a], lr=0.1, weight_decay=0.01)
    reference = torch.optim.AdamW([b], lr=0.1, weight_decay=0.01)
    for _ in range(4):
        grad = torch.randn(5, 3)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        reference.step()
    torch.testing.assert_close(a, b)


def test_lazy_adam_matches_sparse_adam_and_leaves_other_rows_alone():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(20, 3))
    b = torch.nn.Parameter(a.detach().clone())
    start = a.detach().clone()
    ours, reference = LazyAdam([a], lr=0.1), torch.optim.SparseAdam([b], lr=0.1)
    for rows in ([1, 4, 4, 7], [4, 9], [1, 1, 2]):  # repeated rows sum, as in an EmbeddingBag gradient
        index = torch.tensor([rows])
        grad = torch.sparse_coo_tensor(index, torch.randn(len(rows), 3), (20, 3), check_invariants=True)
        a.grad, b.grad = grad, grad.clone()
        ours.step()
        reference.step()
    torch.testing.assert_close(a, b)
    untouched = [i for i in range(20) if i not in (1, 2, 4, 7, 9)]
    torch.testing.assert_close(a[untouched], start[untouched])
    state = ours.state_dict()
    restored = LazyAdam([torch.nn.Parameter(a.detach().clone())], lr=0.1)
    restored.load_state_dict(state)
    assert restored.state_dict()["state"][0]["step"] == 3


def test_logged_metrics_are_means_over_all_users_of_the_epoch():
    # 60 validation users in batches of 32 + 28: the epoch value must weigh each batch by its users.
    task = _task("full_softmax")
    world = ClusterWorld()
    trainer = _trainer(max_epochs=1)
    trainer.fit(task, world)
    batch = _collate_eval(world.val)
    with torch.no_grad():
        ids, _ = task.model.top_k(task.model(batch["history"]), 10, batch["history"])
    expected = evaluate_rankings(ids, batch["targets"], NUM_ITEMS, ks=[10])
    metrics = trainer.callback_metrics
    for name in RANKING_METRICS:
        assert float(metrics[f"val/{name}@10"]) == pytest.approx(expected[f"{name}@10"], abs=1e-6)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_step_shapes_and_backward():
    task = _task("full_softmax")
    world = ClusterWorld()
    batch = next(iter(world.train_dataloader()))
    loss = task.training_step(batch, 0)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert task.model.input_embeddings.grad.is_sparse
    assert not task.model.item_table.grad.is_sparse  # the full softmax touches every row
    optimizer = task.configure_optimizers()
    optimizer.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.01]
    predicted = task.predict_step(next(iter(world.val_dataloader())), 0)
    assert predicted["ids"].shape == predicted["scores"].shape == (32, 10)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_multi_target_step_is_the_mean_over_targets_sharing_a_user_vector():
    task = _task("full_softmax")
    history = SparseBatch.from_lists([[1, 2], [3], [4, 5, 6]])
    targets = SparseBatch.from_lists([[7, 8, 9], [10], [11, 12]])
    multi = task.training_step({"history": history, "targets": targets}, 0)
    # the same user repeated once per target, one target each
    repeated = SparseBatch.from_lists([[1, 2]] * 3 + [[3]] + [[4, 5, 6]] * 2)
    single = task.training_step({"history": repeated, "target": torch.tensor([7, 8, 9, 10, 11, 12])}, 0)
    assert float(multi) == pytest.approx(float(single), rel=1e-6)
    multi.backward()
    assert task.model.input_embeddings.grad is not None


@pytest.mark.parametrize(
    "loss, loss_config",
    [
        ("full_softmax", {}),
        ("sampled_softmax", {"num_samples": 20}),
        ("sampled_softmax", {"num_samples": 20, "proposal": "uniform"}),
        ("in_batch_softmax", {}),
    ],
)
def test_tiny_run_learns_the_clusters(loss, loss_config):
    task = _task(loss, loss_config=loss_config)
    trainer = _trainer(max_epochs=3)
    trainer.fit(task, ClusterWorld())
    metrics = trainer.callback_metrics
    assert {"val/hr@10", "val/recall@10", "val/ndcg@10", "val/coverage@10", "train/loss"} <= set(metrics)
    assert metrics["val/hr@10"] > 0.8, f"{loss}: HR@10 {float(metrics['val/hr@10']):.2f}; random ≈ 0.09"
    assert metrics["val/ndcg@10"] > 0.4
    assert 0 < metrics["val/coverage@10"] <= 1
    test = trainer.test(task, ClusterWorld(), verbose=False)[0]
    assert test["test/hr@10"] == pytest.approx(float(metrics["val/hr@10"]))


def test_recommend_after_training_excludes_seen_and_names_titles():
    task = _task("full_softmax")
    _trainer(max_epochs=3).fit(task, ClusterWorld())
    titles = [f"cluster {i // CLUSTER_SIZE} movie {i}" for i in range(NUM_ITEMS)]
    histories = SparseBatch.from_lists([[0, 1, 2], [55, 56]])
    recs = task.model.recommend(histories, k=3, item_titles=titles)
    assert not set(recs.ids[0].tolist()) & {0, 1, 2} and not set(recs.ids[1].tolist()) & {55, 56}
    assert sum(title.startswith("cluster 0 ") for title in recs.titles[0]) >= 2
    assert sum(title.startswith("cluster 5 ") for title in recs.titles[1]) >= 2
    with pytest.raises(ValueError, match="user at position 0 has no history"):
        task.model.recommend(SparseBatch.from_lists([[]]), k=3)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_unigram_proposal_without_counts_is_a_clear_error():
    task = _task("sampled_softmax", loss_config={"num_samples": 20})
    batch = next(iter(ClusterWorld().train_dataloader()))
    with pytest.raises(ValueError, match="needs item counts"):
        task.training_step(batch, 0)
    task.set_item_counts(ClusterWorld().item_counts)
    assert torch.isfinite(task.training_step(batch, 0))
    assert task.loss_fn.num_samples == 20


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("loss", catalogue_losses())
def test_every_catalogue_loss_is_chosen_by_name_and_trains(loss):
    task = _task(loss)
    assert task.hparams["loss"] == loss and task.hparams["loss_config"] is None
    task.set_item_counts(ClusterWorld().item_counts)
    loss_value = task.training_step(next(iter(ClusterWorld().train_dataloader())), 0)
    assert torch.isfinite(loss_value)
    loss_value.backward()


def test_a_loss_that_is_not_over_the_catalogue_is_refused():
    with pytest.raises(ValueError, match=r"registered catalogue loss \['full_softmax', .*got 'info_nce'"):
        _task("info_nce")
    with pytest.raises(ValueError, match="got 'full'"):
        _task("full")


def test_resume_from_checkpoint_continues_training_exactly(tmp_path):
    straight = _task("full_softmax")
    _trainer(max_epochs=2, limit_val_batches=0).fit(straight, ClusterWorld(shuffle=False))

    first = _task("full_softmax")
    trainer = _trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(first, ClusterWorld(shuffle=False))
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed = _task("full_softmax")
    trainer = _trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(resumed, ClusterWorld(shuffle=False), ckpt_path=tmp_path / "epoch1.ckpt")

    steps_per_epoch = 23  # ceil(240 users * 6 examples / 64)
    assert trainer.global_step == 2 * steps_per_epoch
    optimizer_state = trainer.optimizers[0].state_dict()["state"]
    assert {s["step"] for s in optimizer_state.values()} == {2 * steps_per_epoch}
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=f"{name} differs after resuming")


def test_recent_items_need_a_user_feature_table_over_the_catalogue():
    from jointembed.data.recommendation import MovieWorldDataModule

    data = MovieWorldDataModule(num_movies=50, num_users=40, mean_watches=8, causal=True, recent_items=2)
    trainer = _trainer(max_epochs=1)
    with pytest.raises(ValueError, match="needs num_user_features=50 .* got 0"):
        trainer.fit(RecommendationTask(Recommender(50, 4)), data)
    task = RecommendationTask(Recommender(50, 4, num_user_features=50))
    before = task.model.user_feature_embedding.weight.detach().clone()
    _trainer(max_epochs=1).fit(task, data)
    assert not torch.equal(before, task.model.user_feature_embedding.weight.detach())  # the recent bag trains


def _tiny_world(**kwargs):
    from jointembed.data.recommendation import MovieWorldDataModule

    return MovieWorldDataModule(num_movies=50, num_users=40, mean_watches=8, causal=True, **kwargs)


def test_bind_data_sizes_the_model_from_the_data_before_the_run():
    data = _tiny_world(recent_items=2)
    pl.seed_everything(0, verbose=False)
    task = RecommendationTask(Recommender(None, 4, hidden_sizes=(8,), num_user_features=None))
    assert task.model.config["num_items"] is None and data.num_items is None
    task.bind_data(data)  # what jointembed does before every run: the data is loaded to learn its sizes
    assert (task.model.num_items, task.model.config["num_user_features"]) == (50, 50)
    assert len(task.model.user_feature_embedding.weight) == 50 and task.loss_fn.num_items == 50
    tables = [id(p) for p in task.model.parameters()]
    task.bind_data(data)
    _trainer(max_epochs=1).fit(task, data)  # setup binds the same data module: nothing changes
    assert [id(p) for p in task.model.parameters()] == tables
    # the same weights, draw for draw, as a model given its sizes: results do not move
    pl.seed_everything(0, verbose=False)
    given = RecommendationTask(Recommender(50, 4, hidden_sizes=(8,), num_user_features=50))
    _trainer(max_epochs=1).fit(given, _tiny_world(recent_items=2))
    for (name, a), b in zip(given.model.named_parameters(), task.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_sizes_that_disagree_with_the_data_are_named():
    task = RecommendationTask(Recommender(40, 4, num_user_features=None))
    with pytest.raises(ValueError, match="the data has num_items=50 but the model was built with num_items=40"):
        task.bind_data(_tiny_world())
    unsized = RecommendationTask(Recommender(None, 4))
    with pytest.raises(ValueError, match="ClusterWorld does not tell them .* see CatalogueSizes"):
        world = ClusterWorld()
        del world.num_user_features
        unsized.bind_data(world)
    with pytest.raises(ValueError, match="the run has no data module"):
        _trainer(max_epochs=1).fit(unsized, ClusterWorld().train_dataloader())
    with pytest.raises(ValueError, match=r"eval_k must be in \[1, 50\]"):
        RecommendationTask(Recommender(None, 4), eval_k=60).bind_data(_tiny_world())


def test_weight_averaging_copies_the_model_at_its_final_size():
    from lightning.pytorch.callbacks import EMAWeightAveraging

    data = _tiny_world(recent_items=2)
    late = RecommendationTask(Recommender(None, 4, num_user_features=None))
    with pytest.raises(ValueError, match=r"EMAWeightAveraging copied the model .* call task.bind_data\(datamodule\)"):
        _trainer(max_epochs=1, callbacks=[EMAWeightAveraging()]).fit(late, data)
    task = RecommendationTask(Recommender(None, 4, num_user_features=None))
    task.bind_data(data)  # before the trainer, as jointembed does: the callback copies the model in its setup
    assert copy.deepcopy(task)._bound is None  # a copy does not carry the data set
    averaging = EMAWeightAveraging()
    _trainer(max_epochs=1, callbacks=[averaging]).fit(task, data)
    averaged = averaging._average_model.module  # Lightning's own copy: every table, at the final size
    assert [p.shape for p in averaged.model.parameters()] == [p.shape for p in task.model.parameters()]


def test_a_checkpoint_loads_into_a_model_that_leaves_its_sizes_to_the_data(tmp_path):
    data = _tiny_world(recent_items=2)
    task = RecommendationTask(Recommender(None, 4, num_user_features=None))
    trainer = _trainer(max_epochs=1)
    trainer.fit(task, data)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    loaded = RecommendationTask.load_from_checkpoint(
        tmp_path / "run.ckpt", model=Recommender(None, 4, num_user_features=None), weights_only=False
    )
    assert loaded.model.config == task.model.config
    for (name, a), b in zip(task.model.named_parameters(), loaded.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def _write_tiny_movielens(folder):
    """40 users, 8 watches each of 30 movies with MovieLens-style raw IDs (1000 + 7 i) and titles."""
    rng = random.Random(0)
    folder.mkdir()
    ratings = [
        f"{user}\t{1000 + 7 * movie}\t4\t{1000 * user + t}\n"
        for user in range(1, 41)
        for t, movie in enumerate(rng.sample(range(30), 8))
    ]
    (folder / "u.data").write_text("".join(ratings))
    flags = "|".join(["0"] * 19)
    movies = [f"{1000 + 7 * m}|Movie {m} (1995)|01-Jan-1995||x|{flags}\n" for m in range(30)]
    (folder / "u.item").write_text("".join(movies))
    return folder


def test_exported_folder_recommends_by_raw_keys_as_the_data_module_feeds_the_model(tmp_path):
    from jointembed.data.recommendation import MovieLensDataModule
    from jointembed.models.pretrained_recommender import PretrainedRecommender

    data = MovieLensDataModule(str(_write_tiny_movielens(tmp_path / "ml")), causal=True, recent_items=2)
    pl.seed_everything(0, verbose=False)
    task = RecommendationTask(Recommender(30, 8, hidden_sizes=(16,), num_user_features=30, dropout=0.2))
    _trainer(max_epochs=1).fit(task, data)
    folder = task.export_pretrained(tmp_path / "pretrained", {"test/hr@10": 0.25})
    card = (folder / "README.md").read_text()
    assert "| test/hr@10 | 0.2500 |" in card and "PretrainedRecommender.from_pretrained" in card
    recommender = PretrainedRecommender.from_pretrained(folder)
    assert recommender.recent_items == 2 and recommender.item_keys == data.item_keys
    assert recommender.item_titles == data.item_titles and recommender.item_keys[0] >= 1000
    # the test batch as the data module builds it (recent watches in user_features) vs. raw keys in, raw keys out
    batch = next(iter(data.test_dataloader()))
    task.model.eval()
    with torch.no_grad():
        ids, scores = task.model.top_k(task(batch["history"], batch["user_features"]), 10, batch["history"])
    raw = [[data.item_keys[i] for i in bag] for bag in batch["history"].tolist()]
    got = recommender.recommend(raw, k=10)
    assert [[item.key for item in row] for row in got] == [[data.item_keys[i] for i in row] for row in ids.tolist()]
    torch.testing.assert_close(torch.tensor([[item.score for item in row] for row in got]), scores)


def test_export_without_an_item_catalogue_keys_items_by_id(tmp_path):
    from jointembed.models.pretrained_recommender import PretrainedRecommender

    task = _task("full_softmax")
    with pytest.warns(UserWarning, match="keys items by their IDs"):
        folder = task.export_pretrained(tmp_path / "pretrained")
    recommender = PretrainedRecommender.from_pretrained(folder)
    assert recommender.item_keys == list(range(NUM_ITEMS)) and recommender.item_titles is None
    assert [item.key for item in recommender.recommend([0, 1], k=3)] == task.model.recommend(
        SparseBatch.from_lists([[0, 1]]), k=3
    ).ids[0].tolist()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_rowwise_adagrad_is_chosen_by_name_and_keeps_one_number_per_table_row():
    task = _task("sampled_softmax", optimizer="rowwise_adagrad", loss_config={"proposal": "uniform"})
    world = ClusterWorld()
    task.training_step(next(iter(world.train_dataloader())), 0).backward()
    optimizer = task.configure_optimizers()
    optimizer.step()
    assert isinstance(optimizer, RowWiseAdagrad)
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.01]
    table = task.model.input_embeddings
    assert optimizer.state[table]["sum"].shape == (table.shape[0],)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        _task(optimizer="adam")


def _logged_trainer(tmp_path, max_epochs):
    from lightning.pytorch.loggers import CSVLogger

    args = dict(accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(max_epochs=max_epochs, logger=CSVLogger(tmp_path), num_sanity_val_steps=0, **args)


def _per_user_csv(path):
    header, *lines = path.read_text().splitlines()
    rows = [line.split(",") for line in lines]
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header.split(","))}
    return {name: values if name == "user_key" else np.array(values, dtype=float) for name, values in columns.items()}


def test_per_user_results_are_written_and_compared_with_the_baselines(tmp_path, capsys):
    from jointembed.data.recommendation import MovieWorldDataModule

    class KeyedWorld(MovieWorldDataModule):  # users with raw keys, as MovieLens's
        user_keys = property(lambda self: [f"u{i}" for i in range(self.interactions.num_users)])

    data = KeyedWorld(num_movies=60, num_users=120, mean_watches=10, eval_batch_size=16)
    pl.seed_everything(0, verbose=False)
    task = RecommendationTask(Recommender(None, 8, hidden_sizes=(16,)), lr=0.05)
    trainer = _logged_trainer(tmp_path, max_epochs=2)
    trainer.fit(task, data)
    test = trainer.test(task, data, verbose=False)[0]
    assert "model against the baselines, user by user" in capsys.readouterr().out
    extra = task.extra_test_metrics()
    path = tmp_path / "lightning_logs" / "version_0" / "test_per_user.csv"  # beside test_metrics.json
    assert extra["test/per_user_file"] == str(path)
    table = _per_user_csv(path)
    columns = [f"{who}_{m}@10" for who in ("model", "popularity", "ease") for m in ("hr", "ndcg")]
    assert list(table) == ["user", "user_key", *columns]
    np.testing.assert_array_equal(table["user"], data.split.test_users)  # every test user, keyed by ID
    assert table["user_key"] == [f"u{u}" for u in data.split.test_users]
    assert table["model_hr@10"].mean() == pytest.approx(test["test/hr@10"], abs=1e-6)
    assert table["ease_ndcg@10"].mean() == pytest.approx(test["test/baseline_ease/ndcg@10"], abs=1e-6)
    ease = extra["test/significance"]["ease"]
    difference = table["model_hr@10"].mean() - table["ease_hr@10"].mean()
    assert ease["hr@10"]["difference"] == pytest.approx(difference)
    assert ease["hr@10"]["low"] <= difference <= ease["hr@10"]["high"] and 0 < ease["hr@10"]["p_value"] <= 1
    mcnemar = ease["hr@10_mcnemar"]
    assert mcnemar["model_only"] - mcnemar["baseline_only"] == round(difference * len(table["user"]))
    assert {"popularity", "ease"} == set(extra["test/significance"]) and "ease" in extra["test/significance_table"]

    # the model against itself, its per-user results handed back in another order: no difference at all
    users = table["user"].astype(np.int64)[::-1]
    mine = {"itself": {m: table[f"model_{m}"][::-1] for m in ("hr@10", "ndcg@10")}}
    data.baseline_per_user = lambda k: (users, mine)
    trainer.test(task, data, verbose=False)
    itself = task.extra_test_metrics()["test/significance"]["itself"]
    for metric in ("hr@10", "ndcg@10"):
        assert itself[metric] == {"difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0, "users": users.size}
    assert itself["hr@10_mcnemar"] == {"model_only": 0, "baseline_only": 0, "p_value": 1.0}


def test_per_user_results_without_user_ids_are_keyed_by_row(tmp_path):
    task = _task("full_softmax")
    trainer = _logged_trainer(tmp_path, max_epochs=1)
    trainer.fit(task, ClusterWorld())
    test = trainer.test(task, ClusterWorld(), verbose=False)[0]
    extra = task.extra_test_metrics()
    assert "test/significance" not in extra  # no baselines to compare with
    table = _per_user_csv(tmp_path / "lightning_logs" / "version_0" / "test_per_user.csv")
    np.testing.assert_array_equal(table["row"], np.arange(60))
    assert table["model_ndcg@10"].mean() == pytest.approx(test["test/ndcg@10"], abs=1e-6)


def test_without_a_logger_no_per_user_file_is_written(tmp_path):
    task = _task("full_softmax")
    trainer = _trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(task, ClusterWorld())
    trainer.test(task, ClusterWorld(), verbose=False)
    assert "test/per_user_file" not in task.extra_test_metrics() and not list(tmp_path.iterdir())


def test_under_several_processes_per_user_results_are_skipped_with_a_warning():
    from types import SimpleNamespace

    from jointembed.metrics.significance import PerUserResults

    task = _task("full_softmax")
    task._significance, task._per_user = {}, PerUserResults(10)
    task._per_user.add(torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]), [[3]], users=[5])
    task._trainer = SimpleNamespace(world_size=2, is_global_zero=True)  # each process would hold its own users
    with pytest.warns(UserWarning, match="kept under one process only"):
        task._compare_per_user(None)
    assert task.extra_test_metrics() == {}
