"""LazyAdam: both backends against a plain per-row reference, AdamW on dense gradients, state and settings."""

from __future__ import annotations

import io

import pytest
import torch
from optim_fixture import DIM, NUM_ROWS, STEP_ROWS, reference_lazy_adam, sparse_steps

from jointembed.kernels import numba_available
from jointembed.optim import LazyAdam

BACKENDS = ["torch", pytest.param("numba", marks=pytest.mark.skipif(not numba_available(), reason="no numba"))]


def _run(backend: str, dtype: torch.dtype = torch.float32, **settings) -> tuple[torch.Tensor, LazyAdam]:
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(NUM_ROWS, DIM, dtype=dtype))
    optimizer = LazyAdam([param], backend=backend, **settings)
    for grad in sparse_steps(dtype):
        param.grad = grad
        optimizer.step()
    return param.detach(), optimizer


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "settings",
    [{"lr": 0.1}, {"lr": 0.05, "weight_decay": 0.1}, {"lr": 0.1, "betas": (0.3, 0.9), "eps": 1e-3}],
    ids=["plain", "weight_decay", "small_beta1"],
)
def test_sparse_steps_match_the_reference(backend, settings):
    weight, _ = _run(backend, **settings)
    torch.manual_seed(0)
    start = torch.randn(NUM_ROWS, DIM)
    expected = reference_lazy_adam(
        start,
        sparse_steps(),
        settings["lr"],
        settings.get("betas", (0.9, 0.999)),
        settings.get("eps", 1e-8),
        settings.get("weight_decay", 0.0),
    )
    torch.testing.assert_close(weight.double(), expected, rtol=0, atol=1e-6)
    untouched = sorted(set(range(NUM_ROWS)) - {r for rows in STEP_ROWS for r in rows})
    torch.testing.assert_close(weight[untouched], start[untouched], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_and_torch_backends_agree(dtype):
    if not numba_available():
        pytest.skip("no numba")
    (a, opt_a), (b, opt_b) = (_run(backend, dtype, lr=0.1, weight_decay=0.01) for backend in ("numba", "torch"))
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(a, b, rtol=0, atol=tolerance)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(
            opt_a.state[opt_a.param_groups[0]["params"][0]][key],
            opt_b.state[opt_b.param_groups[0]["params"][0]][key],
            rtol=0,
            atol=tolerance,
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_gradients_get_adamw(backend):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ours = LazyAdam([a], lr=0.1, weight_decay=0.01, backend=backend)
    reference = torch.optim.AdamW([b], lr=0.1, weight_decay=0.01)
    for _ in range(4):
        grad = torch.randn(5, 3)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        reference.step()
    torch.testing.assert_close(a, b)


def test_state_counts_steps_with_empty_gradients_and_round_trips():
    _, optimizer = _run("auto", lr=0.1)
    state = optimizer.state_dict()
    assert state["state"][0]["step"] == len(STEP_ROWS)
    assert "backend" not in state["param_groups"][0]  # how, not what: not saved
    restored = LazyAdam([torch.nn.Parameter(torch.zeros(NUM_ROWS, DIM))], lr=0.1, backend="torch")
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.state_dict()["state"][0]["exp_avg"], state["state"][0]["exp_avg"])


def test_a_table_of_higher_rank_and_a_noncontiguous_gradient():
    # Rows of shape (2, 2): the update works on each row's elements, flattened.
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(NUM_ROWS, 2, 2))
    flat = torch.nn.Parameter(table.detach().reshape(NUM_ROWS, 4).clone())
    ours, reference = LazyAdam([table], lr=0.1), LazyAdam([flat], lr=0.1, backend="torch")
    for grad in sparse_steps():
        values = grad._values().t().contiguous().t()  # same numbers, column-major
        table.grad = torch.sparse_coo_tensor(
            grad._indices(), values.reshape(-1, 2, 2), (NUM_ROWS, 2, 2), check_invariants=True
        )
        flat.grad = grad
        ours.step()
        reference.step()
    torch.testing.assert_close(table.detach().reshape(NUM_ROWS, 4), flat.detach(), rtol=0, atol=1e-6)


def test_settings_are_checked():
    param = [torch.nn.Parameter(torch.zeros(3, 2))]
    with pytest.raises(ValueError, match="backend must be one of"):
        LazyAdam(param, backend="cuda")
    with pytest.raises(ValueError, match="invalid LazyAdam settings"):
        LazyAdam(param, betas=(0.9, 1.0))
    grad = torch.sparse_coo_tensor(torch.zeros(2, 1, dtype=torch.int64), torch.ones(1), (3, 2), check_invariants=True)
    param[0].grad = grad
    with pytest.raises(ValueError, match="sparse_dim 1"):
        LazyAdam(param).step()


def test_numba_backend_names_what_it_cannot_update():
    if not numba_available():
        pytest.skip("no numba")
    param = torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float16))
    param.grad = torch.sparse_coo_tensor(
        torch.tensor([[1]]), torch.ones(1, 2, dtype=torch.float16), (3, 2), check_invariants=True
    )
    with pytest.raises(ValueError, match="float16"):
        LazyAdam([param], backend="numba").step()
    LazyAdam([param], backend="auto").step()  # auto falls back to the torch path
    assert param[1].abs().sum() > 0


@pytest.mark.parametrize("rows", [[1, 5], [5, 1], [-1, 2]])  # increasing (no merge) or not
def test_numba_backend_refuses_rows_outside_the_table_and_updates_nothing(rows):
    if not numba_available():
        pytest.skip("no numba")
    param = torch.nn.Parameter(torch.ones(3, 2))
    # Built without invariant checks, as a faulty custom backward could: row 5 (or -1) of a 3-row table.
    param.grad = torch.sparse_coo_tensor(torch.tensor([rows]), torch.ones(2, 2), (3, 2), check_invariants=False)
    optimizer = LazyAdam([param], backend="numba")
    with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
        optimizer.step()
    torch.testing.assert_close(param.detach(), torch.ones(3, 2))
    param.grad = torch.sparse_coo_tensor(torch.tensor([[1, 1]]), torch.ones(2, 2), (3, 2), check_invariants=True)
    optimizer.step()  # the hash table was left clean
    assert param[1].ne(1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_resumes_exactly_from_a_saved_state(backend):
    grads = sparse_steps()
    weight, optimizer = _run(backend, lr=0.1)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)  # as in a checkpoint
    buffer.seek(0)
    restored = torch.nn.Parameter(weight.clone())
    resumed = LazyAdam([restored], lr=0.1, backend=backend)
    resumed.load_state_dict(torch.load(buffer))
    original = optimizer.param_groups[0]["params"][0]
    for grad in grads[:2]:
        original.grad, restored.grad = grad, grad.clone()
        optimizer.step()
        resumed.step()
    torch.testing.assert_close(restored.detach(), original.detach(), rtol=0, atol=0)
