"""RowWiseAdagrad: both backends against a plain per-row reference, Adagrad on dense gradients, state and rules."""

from __future__ import annotations

import pytest
import torch
from optim_fixture import DIM, NUM_ROWS, STEP_ROWS, reference_rowwise_adagrad, sparse_steps

from jointembed.kernels import numba_available
from jointembed.optim import RowWiseAdagrad

BACKENDS = ["torch", pytest.param("numba", marks=pytest.mark.skipif(not numba_available(), reason="no numba"))]


def _start(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(NUM_ROWS, DIM, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _run(backend: str, dtype: torch.dtype = torch.float32, **settings) -> tuple[torch.Tensor, RowWiseAdagrad]:
    param = torch.nn.Parameter(_start(dtype))
    optimizer = RowWiseAdagrad([param], backend=backend, **settings)
    for grad in sparse_steps(dtype):
        param.grad = grad
        optimizer.step()
    return param.detach(), optimizer


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("settings", [{"lr": 0.1}, {"lr": 0.05, "weight_decay": 0.1, "eps": 1e-3}])
def test_sparse_steps_match_the_reference(backend, settings):
    weight, optimizer = _run(backend, **settings)
    expected, accumulators = reference_rowwise_adagrad(
        _start(), sparse_steps(), settings["lr"], settings.get("eps", 1e-10), settings.get("weight_decay", 0.0)
    )
    torch.testing.assert_close(weight.double(), expected, rtol=0, atol=1e-6)
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    assert state["sum"].shape == (NUM_ROWS,)  # one accumulator per row
    torch.testing.assert_close(state["sum"].double(), accumulators, rtol=1e-6, atol=0)
    untouched = sorted(set(range(NUM_ROWS)) - {r for rows in STEP_ROWS for r in rows})
    torch.testing.assert_close(weight[untouched], _start()[untouched], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_and_torch_backends_agree(dtype):
    if not numba_available():
        pytest.skip("no numba")
    (a, opt_a), (b, opt_b) = (_run(backend, dtype, lr=0.1, weight_decay=0.01) for backend in ("numba", "torch"))
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(a, b, rtol=0, atol=tolerance)
    sums = [opt.state[opt.param_groups[0]["params"][0]]["sum"] for opt in (opt_a, opt_b)]
    torch.testing.assert_close(*sums, rtol=tolerance, atol=0)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_dense_gradients_get_ordinary_adagrad(weight_decay):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ours = RowWiseAdagrad([a], lr=0.1, weight_decay=weight_decay)
    reference = torch.optim.Adagrad([b], lr=0.1, weight_decay=weight_decay, eps=1e-10)
    for _ in range(4):
        grad = torch.randn(5, 3)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        reference.step()
    torch.testing.assert_close(a, b)
    assert ours.state[a]["sum"].shape == (5, 3)


def test_a_row_wise_table_given_a_dense_gradient_updates_every_row_row_wise():
    start = _start()
    param = torch.nn.Parameter(start.clone())
    optimizer = RowWiseAdagrad([param], lr=0.1)
    grads = sparse_steps()
    param.grad = grads[0]
    optimizer.step()
    param.grad = grads[1].to_dense()
    optimizer.step()
    every_row = torch.sparse_coo_tensor(
        torch.arange(NUM_ROWS)[None], grads[1].to_dense(), (NUM_ROWS, DIM), check_invariants=True
    )
    expected, _ = reference_rowwise_adagrad(start, [grads[0], every_row], 0.1, 1e-10, 0.0)
    torch.testing.assert_close(param.detach().double(), expected, rtol=0, atol=1e-6)


def test_a_sparse_gradient_after_a_dense_one_is_refused():
    param = torch.nn.Parameter(_start())
    optimizer = RowWiseAdagrad([param])
    grad = sparse_steps()[0]
    param.grad = grad.to_dense()
    optimizer.step()
    param.grad = grad
    with pytest.raises(ValueError, match="sparse gradient after a dense one"):
        optimizer.step()


def test_settings_are_checked_and_state_round_trips():
    with pytest.raises(ValueError, match="invalid RowWiseAdagrad settings"):
        RowWiseAdagrad([torch.nn.Parameter(torch.zeros(2))], lr=-1.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        RowWiseAdagrad([torch.nn.Parameter(torch.zeros(2))], backend="fast")
    _, optimizer = _run("auto", lr=0.1)
    state = optimizer.state_dict()
    assert state["state"][0]["step"] == len(STEP_ROWS)
    restored = RowWiseAdagrad([torch.nn.Parameter(_start())], lr=0.1)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.state_dict()["state"][0]["sum"], state["state"][0]["sum"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_coalesced_gradient_is_used_as_it_is_and_left_unchanged(backend):
    param = torch.nn.Parameter(_start())
    rows = torch.tensor([[0, 3, 29]])
    values = torch.randn(3, DIM, generator=torch.Generator().manual_seed(2))
    param.grad = torch.sparse_coo_tensor(rows, values.clone(), (NUM_ROWS, DIM), check_invariants=True)
    RowWiseAdagrad([param], lr=0.1, weight_decay=0.1, backend=backend).step()
    torch.testing.assert_close(param.grad._values(), values, rtol=0, atol=0)  # weight decay not written into it
    expected, _ = reference_rowwise_adagrad(_start(), [param.grad], 0.1, 1e-10, 0.1)
    torch.testing.assert_close(param.detach().double(), expected, rtol=0, atol=1e-6)
