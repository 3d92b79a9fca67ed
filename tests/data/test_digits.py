import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from jointembed.data.digits import (
    DigitImagePreprocessing,
    DigitsDataModule,
    collate_digits,
    image_to_bag,
    split_indices,
)


def test_image_to_bag_by_hand():
    image = np.zeros((8, 8))
    image[0, 1] = 16
    image[2, 3] = 4
    image[7, 7] = 8
    ids, weights = image_to_bag(image)
    assert ids.tolist() == [1, 2 * 8 + 3, 63]
    np.testing.assert_allclose(weights, [1.0, 0.25, 0.5])


def test_first_bundled_image():
    image = load_digits().images[0]
    ids, weights = image_to_bag(image)
    # row 0 of the first image (a zero) is 0 0 5 13 9 1 0 0
    assert ids[:4].tolist() == [2, 3, 4, 5]
    np.testing.assert_allclose(weights[:4], np.array([5, 13, 9, 1]) / 16)
    assert len(ids) == int((image > 0).sum())


def test_image_to_bag_rejects_wrong_shape():
    with pytest.raises(ValueError, match="64 pixels"):
        image_to_bag(np.zeros(10))


def test_collate_builds_weighted_bags():
    examples = [
        {"ids": np.array([1, 5]), "weights": np.array([0.5, 1.0], dtype=np.float32), "target": 3},
        {"ids": np.array([7]), "weights": np.array([0.25], dtype=np.float32), "target": 9},
    ]
    batch = collate_digits(examples)
    assert batch["sparse"].tolist() == [[1, 5], [7]]
    torch.testing.assert_close(batch["sparse"].weights, torch.tensor([0.5, 1.0, 0.25]))
    assert batch["target"].tolist() == [3, 9]


def test_split_sizes_disjoint_and_stratified():
    labels = np.asarray(load_digits().target)
    splits = split_indices(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1258, "val": 180, "test": 359}
    union = np.concatenate(list(splits.values()))
    assert sorted(union.tolist()) == list(range(len(labels)))
    overall = np.bincount(labels, minlength=10) / len(labels)
    for idx in splits.values():
        share = np.bincount(labels[idx], minlength=10) / len(idx)
        assert np.abs(share - overall).max() < 0.01
    again = split_indices(labels, 0.1, 0.2, seed=0)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = split_indices(labels, 0.1, 0.2, seed=1)
    assert not np.array_equal(splits["test"], other["test"])


def test_split_rejects_empty_split():
    with pytest.raises(ValueError, match="leave an empty split"):
        split_indices(np.arange(10) % 2, val_fraction=0.0, test_fraction=0.2, seed=0)


def test_datamodule_batches():
    dm = DigitsDataModule(batch_size=16)
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"]), len(dm.datasets["test"])) == (1258, 180, 359)
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["sparse"]) == 16 and batch["target"].shape == (16,)
    assert batch["sparse"].values.max() < 64 and (batch["sparse"].weights > 0).all()
    assert (batch["sparse"].weights <= 1).all()


def test_datamodule_names_classes_and_preprocessing():
    dm = DigitsDataModule()
    assert dm.class_names() == [str(d) for d in range(10)]
    assert dm.image_preprocessing() == DigitImagePreprocessing()
