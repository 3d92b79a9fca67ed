import numpy as np
import pytest
import torch

from jointembed.sparse import SparseBatch, collate_sparse


def test_from_lists_layout_and_empty_bags():
    batch = SparseBatch.from_lists([[3, 1], [], [2, 2, 0]], num_values=4)
    assert batch.values.tolist() == [3, 1, 2, 2, 0]
    assert batch.offsets.tolist() == [0, 2, 2]
    assert batch.lengths().tolist() == [2, 0, 3]
    assert batch.bag_ids().tolist() == [0, 0, 2, 2, 2]
    assert len(batch) == 3
    assert batch.tolist() == [[3, 1], [], [2, 2, 0]]


def test_all_bags_empty_and_no_bags():
    batch = SparseBatch.from_lists([[], []])
    assert len(batch) == 2 and batch.values.numel() == 0
    assert batch.to_dense(5).tolist() == [[0.0] * 5, [0.0] * 5]
    assert len(SparseBatch.from_lists([])) == 0


def test_to_dense_counts_repeats_and_uses_weights():
    batch = SparseBatch.from_lists([[0, 2, 2], [1]], weights=[[0.5, 1.0, 2.0], [3.0]])
    assert batch.to_dense(3).tolist() == [[0.5, 0.0, 3.0], [0.0, 3.0, 0.0]]
    assert SparseBatch.from_lists([[0, 2, 2]]).to_dense(3).tolist() == [[1.0, 0.0, 2.0]]


def test_from_tensors_with_lengths_matches_from_lists():
    a = SparseBatch.from_tensors(torch.tensor([4, 5, 6]), lengths=torch.tensor([1, 0, 2]))
    b = SparseBatch.from_lists([[4], [], [5, 6]])
    assert torch.equal(a.values, b.values) and torch.equal(a.offsets, b.offsets)


def test_numpy_integer_ids_are_accepted():
    batch = SparseBatch.from_lists([np.array([1, 2], dtype=np.int32)])
    assert batch.values.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("bags", "kwargs", "match"),
    [
        ([[0, 1], [2, -3]], {}, r"ID -3 in bag 1"),
        ([[0, 1], [7]], {"num_values": 5}, r"ID 7 in bag 1 .*\[0, 5\)"),
        ([[0], [1, 2.5]], {}, r"ID 2.5 in bag 1 is not an integer"),
        ([[0], ["a"]], {}, r"ID 'a' in bag 1 is not an integer"),
        ([[True]], {}, r"ID True in bag 0 is not an integer"),
        ([[0, 1], [2]], {"weights": [[1.0, 1.0], [1.0, 2.0]]}, r"bag 1 has 1 IDs but 2 weights"),
        ([[0, 1]], {"weights": [[1.0, 1.0], [1.0]]}, r"2 weight lists for 1 bags"),
        (["abc"], {}, r"bag 0 must be a sequence"),
    ],
)
def test_bad_bags_raise_value_error_naming_value_and_bag(bags, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseBatch.from_lists(bags, **kwargs)


def test_from_tensors_rejects_float_ids_and_out_of_range():
    with pytest.raises(ValueError, match="must be integers.*float"):
        SparseBatch.from_tensors(torch.tensor([1.0, 2.0]), offsets=torch.tensor([0]))
    with pytest.raises(ValueError, match=r"ID 9 in bag 1"):
        SparseBatch.from_tensors(torch.tensor([1, 2, 9]), offsets=torch.tensor([0, 2]), num_values=5)
    with pytest.raises(ValueError, match="weights has shape"):
        SparseBatch.from_tensors(torch.tensor([1, 2]), offsets=torch.tensor([0]), weights=torch.ones(3))
    with pytest.raises(ValueError, match="exactly one of offsets or lengths"):
        SparseBatch.from_tensors(torch.tensor([1]))


def test_to_device_keeps_content():
    batch = SparseBatch.from_lists([[1, 2], [3]], weights=[[1.0, 2.0], [3.0]]).to("cpu")
    assert batch.weights.tolist() == [1.0, 2.0, 3.0]


def test_collate_in_a_dataloader_with_and_without_weights():
    data = [[1, 2], [], [3]]
    loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=collate_sparse)
    batch = next(iter(loader))
    assert batch.tolist() == [[1, 2], [], [3]]
    weighted = collate_sparse([(torch.tensor([1, 2]), torch.tensor([0.5, 0.5])), ([3], [2.0])])
    assert weighted.weights.tolist() == [0.5, 0.5, 2.0]
    with pytest.raises(ValueError, match="ID 8 in bag 0"):
        collate_sparse([[8]], num_values=4)


def test_concat():
    a = SparseBatch.from_lists([[1], []])
    b = SparseBatch.from_lists([[2, 3]])
    assert SparseBatch.concat([a, b]).tolist() == [[1], [], [2, 3]]


def test_tail_keeps_the_last_ids_of_every_bag_with_their_weights():
    batch = SparseBatch.from_lists(
        [[1, 2, 3, 4], [], [5], [6, 7]], weights=[[0.1, 0.2, 0.3, 0.4], [], [0.5], [0.6, 0.7]]
    )
    tail = batch.tail(2)
    assert tail.tolist() == [[3, 4], [], [5], [6, 7]]
    assert tail.weights.tolist() == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    assert SparseBatch.from_lists([[1, 2, 3]]).tail(1).tolist() == [[3]]
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        batch.tail(0)


@pytest.mark.parametrize(
    ("lengths", "match"),
    [
        ([1, 1], r"lengths add up to 2 IDs but values holds 3"),
        ([2, 2], r"lengths add up to 4 IDs but values holds 3"),
        ([2, -1, 2], r"length of bag 1 is -1"),
    ],
)
def test_lengths_must_account_for_every_value(lengths, match):
    with pytest.raises(ValueError, match=match):
        SparseBatch.from_tensors(torch.tensor([1, 2, 3]), lengths=torch.tensor(lengths))


@pytest.mark.parametrize(
    ("offsets", "match"),
    [
        ([1, 2], r"offsets must start at 0, got 1"),
        ([0, 2, 1], r"offsets decrease at bag 2: 2 then 1"),
        ([0, 4], r"offset 4 of bag 1 is past the end of the 3 IDs"),
    ],
)
def test_offsets_must_account_for_every_value(offsets, match):
    values = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match=match):
        SparseBatch.from_tensors(values, offsets=torch.tensor(offsets))
    with pytest.raises(ValueError, match=match):  # the plain constructor checks as much
        SparseBatch(values, torch.tensor(offsets))


def test_fractional_lengths_and_offsets_are_not_truncated():
    with pytest.raises(ValueError, match=r"lengths must be integers, got .*float"):
        SparseBatch.from_tensors(torch.tensor([1, 2]), lengths=torch.tensor([1.9, 0.5]))
    with pytest.raises(ValueError, match=r"offsets must be integers, got .*float"):
        SparseBatch.from_tensors(torch.tensor([1, 2]), offsets=torch.tensor([0.0, 1.5]))


def test_plain_constructor_checks_shapes_types_and_ids():
    with pytest.raises(ValueError, match=r"values must be 1-D, got shape \(1, 2\)"):
        SparseBatch(torch.tensor([[1, 2]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"IDs must be integers, got .*float"):
        SparseBatch(torch.tensor([1.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"ID -2 in bag 1"):
        SparseBatch(torch.tensor([1, -2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"2 IDs but no bags"):
        SparseBatch(torch.tensor([1, 2]), torch.zeros(0, dtype=torch.long))
    batch = SparseBatch(torch.tensor([1, 2, 3], dtype=torch.int32), torch.tensor([0, 1], dtype=torch.int32))
    assert batch.values.dtype == batch.offsets.dtype == torch.long and batch.tolist() == [[1], [2, 3]]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_weights_must_be_finite(bad):
    with pytest.raises(ValueError, match=rf"weight {bad} of ID 4 in bag 1 is not finite"):
        SparseBatch.from_lists([[1, 2], [3, 4]], weights=[[1.0, 1.0], [1.0, bad]])
    with pytest.raises(ValueError, match=rf"weight {bad} of ID 2 in bag 0"):
        SparseBatch.from_tensors(torch.tensor([2]), lengths=torch.tensor([1]), weights=torch.tensor([bad]))
    with pytest.raises(ValueError, match=rf"weight {bad} of ID 3 in bag 0"):
        collate_sparse([([3], [bad])])


def test_weights_must_be_real_numbers():
    with pytest.raises(ValueError, match=r"weights must be real numbers, got .*bool"):
        SparseBatch(torch.tensor([1]), torch.tensor([0]), torch.tensor([True]))


def test_derived_batches_stay_consistent():
    a = SparseBatch.from_lists([[1, 2, 3], []], weights=[[0.1, 0.2, 0.3], []])
    b = SparseBatch.from_lists([[4]], weights=[[0.4]])
    both = SparseBatch.concat([a, b])
    assert both.tolist() == [[1, 2, 3], [], [4]] and both.weights.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert both.tail(2).tolist() == [[2, 3], [], [4]]
    for derived in (both, both.tail(1), both.to("cpu")):
        derived.validate()
