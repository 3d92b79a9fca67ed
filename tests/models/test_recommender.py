import pytest
import torch
import torch.nn.functional as F

import jointembed.metrics.ranking as ranking_module
import jointembed.search.backends as backends
from jointembed.models.recommender import Recommendations, Recommender
from jointembed.nn.sparse_embedding import suggest_embedding_dim
from jointembed.sparse import SparseBatch

TITLES = [f"movie {i}" for i in range(12)]


def _model(**kwargs) -> Recommender:
    torch.manual_seed(0)
    return Recommender(12, embedding_dim=kwargs.pop("embedding_dim", 4), hidden_sizes=(8,), **kwargs)


def _histories() -> SparseBatch:
    return SparseBatch.from_lists([[0, 1, 2], [5], [7, 8, 9, 10]])


def test_shapes_and_logits():
    model = _model()
    users = model.user_vectors(_histories())
    assert users.shape == (3, 4)
    torch.testing.assert_close(model(_histories()), users)
    full = model.logits(users)
    assert full.shape == (3, 12)
    torch.testing.assert_close(full, users @ model.item_table.T + model.item_bias.T)
    ids = torch.tensor([3, 0, 11])
    torch.testing.assert_close(model.logits(users, ids), full[:, ids])
    assert model.item_embeddings().shape == (12, 4) and not model.item_embeddings().requires_grad
    assert model.input_embeddings.shape == (12, 4)
    assert Recommender(10_000).embedding_dim == suggest_embedding_dim(10_000)


def test_gradients_are_sparse_for_tables_and_dense_for_the_tower():
    model = _model()
    users = model(_histories())
    model.logits(users, torch.tensor([1, 4])).sum().backward()
    assert model.input_embeddings.grad.is_sparse
    assert model.item_table.grad.is_sparse and model.item_bias.grad.is_sparse
    assert all(not p.grad.is_sparse for p in model.tower.parameters())
    assert {id(p) for p in model.embedding_parameters()} == {
        id(model.input_embeddings),
        id(model.item_table),
        id(model.item_bias),
    }


def test_user_features_and_dense_inputs():
    model = _model(num_user_features=5, num_dense_features=2)
    features = SparseBatch.from_lists([[0, 3], [], [4]])
    dense = torch.randn(3, 2)
    assert model(_histories(), features, dense).shape == (3, 4)
    with pytest.raises(ValueError, match="num_user_features > 0: pass user_features"):
        model(_histories(), dense=dense)
    with pytest.raises(ValueError, match=r"dense must have shape \(3, 2\)"):
        model(_histories(), features, torch.randn(3, 3))
    with pytest.raises(ValueError, match="dense was given but the model was built with num_dense_features=0"):
        _model()(_histories(), dense=dense)


def test_tied_output_embeddings_share_the_input_table():
    model = _model(tie_output_embeddings=True)
    assert model.item_table is model.input_embeddings
    assert len(model.embedding_parameters()) == 2
    users = model(_histories())
    model.logits(users, torch.tensor([0, 1])).sum().backward()
    assert model.input_embeddings.grad.is_sparse


def test_recommend_excludes_seen_sorts_and_titles():
    model = _model()
    histories = _histories()
    recs = model.recommend(histories, k=5, item_titles=TITLES)
    assert isinstance(recs, Recommendations)
    assert recs.ids.shape == recs.scores.shape == (3, 5)
    for row, seen in zip(recs.ids.tolist(), histories.tolist(), strict=True):
        assert not set(row) & set(seen)
    assert bool((recs.scores[:, :-1] >= recs.scores[:, 1:]).all())
    # Same as brute force: mask the history in the full logit matrix and take the top 5.
    with torch.no_grad():
        scores = model.logits(model(histories))
    scores[histories.bag_ids(), histories.values] = float("-inf")
    torch.testing.assert_close(recs.scores, scores.topk(5).values)
    assert recs.titles == [[TITLES[j] for j in row] for row in recs.ids.tolist()]
    with_seen = model.recommend(histories, k=12, exclude_seen=False)
    assert sorted(with_seen.ids[0].tolist()) == list(range(12)) and with_seen.titles is None


def _row_top_k(model: Recommender, users: torch.Tensor, k: int, seen: SparseBatch) -> tuple[torch.Tensor, ...]:
    """The previous top-k: whole rows of logits a few users at a time (what the blocks must reproduce)."""
    scores_of = lambda rows: model.logits(users[rows])  # noqa: E731
    return ranking_module.chunked_top_k(scores_of, len(users), k, seen, chunk_size=3)


@pytest.mark.parametrize("blocks", [(2**20, 128, 2**16), (7 * 13, 7, 13)])  # one block; many, some narrower than k
def test_top_k_in_blocks_equals_whole_rows(monkeypatch, blocks):
    monkeypatch.setattr(backends, "EXACT_BLOCK", blocks[0])
    monkeypatch.setattr(backends, "EXACT_QUERIES", blocks[1])
    monkeypatch.setattr(backends, "EXACT_ROWS", blocks[2])
    torch.manual_seed(0)
    model = Recommender(500, embedding_dim=8, hidden_sizes=())
    with torch.no_grad():
        model.output_bias.normal_(0.0, 0.5)
        model.output_weight[3] = float("nan")  # a diverged item: never recommended, by either path
        model.output_weight[4] = float("inf")
    seen = SparseBatch.from_lists([[(7 * i + j) % 500 for j in range(i % 30)] for i in range(40)])
    last = [j for j in range(500) if j % 50 and j not in (3, 4)]  # 12 unseen left, two of them diverged
    seen = SparseBatch.from_lists([*seen.tolist()[:-1], last])
    with torch.no_grad():
        users = torch.randn(40, 8)
        ids, scores = model.top_k(users, 20, seen)
        row_ids, row_scores = _row_top_k(model, users, 20, seen)
    assert torch.equal(ids, row_ids)
    torch.testing.assert_close(scores, row_scores, atol=1e-5, rtol=0)
    assert not {3, 4} & set(ids.flatten().tolist())
    assert sorted(ids[-1, :10].tolist()) == list(range(0, 500, 50)) and ids[-1, 10:].tolist() == [-1] * 10


def test_recommend_pads_when_too_few_items_are_unseen():
    model = _model()
    recs = model.recommend(SparseBatch.from_lists([list(range(10))]), k=4, item_titles=TITLES)
    assert sorted(recs.ids[0, :2].tolist()) == [10, 11]
    assert recs.ids[0, 2:].tolist() == [-1, -1] and bool(torch.isinf(recs.scores[0, 2:]).all())
    assert sorted(recs.titles[0]) == ["movie 10", "movie 11"]


def test_recommend_errors():
    model = _model()
    with pytest.raises(ValueError, match="user at position 1 has no history"):
        model.recommend(SparseBatch.from_lists([[1], [], [2]]), k=3)
    for k in (0, 13):
        with pytest.raises(ValueError, match=r"k must be an integer in \[1, 12\]"):
            model.recommend(_histories(), k=k)
    with pytest.raises(ValueError, match="item_titles has 2 entries"):
        model.recommend(_histories(), k=2, item_titles=["a", "b"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.recommend(None, k=3), r"histories must be a SparseBatch of item IDs, .* got NoneType"),
        (lambda m: m.recommend([[1, 2]], k=3), r"histories must be a SparseBatch .* got list; .*PretrainedRecommender"),
        (lambda m: m.top_k([1.0, 2.0], k=3), r"user_vectors must be a \(B, 4\) tensor .* got list"),
        (lambda m: m.top_k(torch.zeros(2, 3), k=3), r"user_vectors must be a \(B, 4\) tensor .* got \(2, 3\)"),
        (lambda m: m.top_k(torch.zeros(2, 4), k=3, exclude=[[1]]), r"exclude must be a SparseBatch"),
        (lambda m: m.similar_items("movie 2", k=3), r"item_ids must be item IDs .* got str 'movie 2'"),
        (lambda m: m.similar_items(None, k=3), r"item_ids must be item IDs .* got NoneType None"),
        (lambda m: m.similar_items([1.5], k=3), r"item_ids must be item IDs .* got list \[1\.5\]"),
    ],
)
def test_wrong_argument_types_are_named_not_crashed_on(call, message):
    """Once an AttributeError ('NoneType' object has no attribute 'lengths') or a silent cast of 1.5 to item 1."""
    with pytest.raises(TypeError, match=message):
        call(_model())


def test_top_k_exclude_must_have_a_bag_per_user():
    with pytest.raises(ValueError, match="exclude has 1 bags but there are 2 user vectors"):
        _model().top_k(torch.zeros(2, 4), k=3, exclude=SparseBatch.from_lists([[1]]))


def test_recommend_uses_eval_mode_and_restores_training():
    model = _model(dropout=0.5)
    model.train()
    first = model.recommend(_histories(), k=3)
    second = model.recommend(_histories(), k=3)
    torch.testing.assert_close(first.scores, second.scores)
    assert model.training


def test_similar_items_by_cosine_without_the_item_itself():
    model = _model()
    recs = model.similar_items([2, 7], k=3, item_titles=TITLES)
    table = F.normalize(model.item_embeddings(), dim=1)
    cosine = table[[2, 7]] @ table.T
    cosine[[0, 1], [2, 7]] = float("-inf")
    expected = cosine.topk(3)
    torch.testing.assert_close(recs.ids, expected.indices)
    torch.testing.assert_close(recs.scores, expected.values)
    assert 2 not in recs.ids[0].tolist() and recs.titles[1][0] == TITLES[int(recs.ids[1, 0])]
    with pytest.raises(ValueError, match=r"item IDs must be in \[0, 12\)"):
        model.similar_items([12], k=2)


# --- sizes left to the data -----------------------------------------------------------------------------------


def test_sizes_left_to_the_data_are_created_once_with_the_same_weights():
    torch.manual_seed(0)
    given = Recommender(12, hidden_sizes=(8,), num_user_features=12)
    torch.manual_seed(0)
    later = Recommender(None, hidden_sizes=(8,), num_user_features=None)
    assert not later.sized and list(later.parameters()) == []
    assert later.config["num_items"] is None and later.config["embedding_dim"] is None
    later.set_sizes(12, 12)
    # the same tables in the same order from the same random stream: a seeded run starts from the same weights
    assert later.config == given.config and later.embedding_dim == suggest_embedding_dim(12)
    for (name, a), (other, b) in zip(given.state_dict().items(), later.state_dict().items(), strict=True):
        assert name == other and torch.equal(a, b), name
    tables = [id(p) for p in later.parameters()]
    later.set_sizes(12, 12)  # idempotent
    assert [id(p) for p in later.parameters()] == tables


def test_a_given_size_must_agree_and_an_unsized_model_says_what_to_do():
    model = Recommender(12, hidden_sizes=(8,), num_user_features=None)
    with pytest.raises(ValueError, match="built with num_items=12 but the data has num_items=30"):
        model.set_sizes(30, 0)
    with pytest.raises(RuntimeError, match=r"left to the data \(num_items=12, num_user_features=None\).*set_sizes"):
        model(_histories())
    with pytest.raises(RuntimeError, match="RecommendationTask"):
        model.recommend(_histories(), k=3)
    model.set_sizes(12, 0)
    assert model.user_feature_embedding is None and model(_histories()).shape == (3, model.embedding_dim)
    with pytest.raises(ValueError, match="built with num_user_features=0 but the data has num_user_features=12"):
        model.set_sizes(12, 12)
    with pytest.raises(ValueError, match="num_items must be >= 1"):
        Recommender(0)
    with pytest.raises(ValueError, match="num_user_features must be >= 0"):
        Recommender(None, num_user_features=-1)
