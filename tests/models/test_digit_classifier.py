import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from jointembed.data.digits import CLASS_NAMES, DigitImagePreprocessing
from jointembed.errors import CheckpointError, DataFormatError
from jointembed.models.digit_classifier import FORMAT, DigitClassifier
from jointembed.models.embedding_net import EmbeddingNet
from jointembed.pretrained import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

IMAGES = load_digits().images[:20]


@pytest.fixture(scope="module")
def classifier() -> DigitClassifier:
    torch.manual_seed(0)
    return DigitClassifier(
        EmbeddingNet(64, out_features=10, embedding_dim=4, combiner="sum", hidden_sizes=[8]), CLASS_NAMES
    )


def _dark_on_light(image: np.ndarray) -> np.ndarray:
    return np.rint(255 * (1 - np.kron(image, np.ones((4, 4))) / 16)).astype(np.uint8)


def test_probabilities_classes_and_names(classifier):
    probs = classifier.predict_proba(IMAGES)
    assert probs.shape == (20, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    expected = classifier(DigitImagePreprocessing().to_batch(IMAGES)).softmax(-1).detach().numpy()
    np.testing.assert_array_equal(probs, expected)
    assert classifier.predict(IMAGES).tolist() == probs.argmax(axis=1).tolist()
    assert classifier.predict_names(IMAGES) == [str(i) for i in probs.argmax(axis=1)]
    assert classifier.predict(IMAGES[3]).tolist() == [probs[3].argmax()]  # one image gives one answer
    np.testing.assert_allclose(classifier.predict_proba(IMAGES, batch_size=3), probs, rtol=1e-6, atol=1e-7)


def test_pictures_give_the_same_answers_as_the_arrays_they_draw(classifier, tmp_path):
    # without the crop a drawn bundled digit comes back exactly (the crop is tested in tests/data/test_digits.py)
    classifier = DigitClassifier(classifier.network, CLASS_NAMES, DigitImagePreprocessing(crop=False))
    paths = []
    for i, image in enumerate(IMAGES[:5]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(_dark_on_light(image)).save(paths[-1])
    expected = classifier.predict_proba(IMAGES[:5])
    pictures = [_dark_on_light(image) for image in IMAGES[:5]]
    for form in (paths, [str(p) for p in paths], pictures, [Image.open(p) for p in paths]):
        np.testing.assert_array_equal(classifier.predict_proba(form), expected)
    with pytest.raises(DataFormatError, match=r"images\[1\]: expected an image"):
        classifier.predict([paths[0], 3])


def test_save_load_round_trip_is_exact_and_in_eval_mode(classifier, tmp_path):
    folder = classifier.save_pretrained(tmp_path / "pretrained", metrics={"test/acc": 0.98})
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["format"] == FORMAT and config["class_names"] == list(CLASS_NAMES)
    assert config["preprocessing"]["ink"] == "auto" and config["preprocessing"]["crop"] is True
    assert "DigitClassifier.from_pretrained" in (folder / CARD_NAME).read_text()
    loaded = DigitClassifier.from_pretrained(folder)
    assert not loaded.training and not loaded.network.training
    np.testing.assert_allclose(loaded.predict_proba(IMAGES), classifier.predict_proba(IMAGES), rtol=1e-6, atol=1e-6)
    assert loaded.class_names == list(CLASS_NAMES) and loaded.preprocessing == classifier.preprocessing


def test_bad_folders_raise_checkpoint_errors(classifier, tmp_path):
    folder = classifier.save_pretrained(tmp_path / "p")
    config = json.loads((folder / CONFIG_NAME).read_text())

    def write(change: dict) -> None:
        (folder / CONFIG_NAME).write_text(json.dumps(config | change))

    write({"format": "jointembed.house_price"})
    with pytest.raises(CheckpointError, match="field 'format' is 'jointembed.house_price'"):
        DigitClassifier.from_pretrained(folder)
    write({"version": 2})
    with pytest.raises(CheckpointError, match="field 'version' is 2; this jointembed reads versions"):
        DigitClassifier.from_pretrained(folder)
    write({"class_names": ["0", "1"]})
    with pytest.raises(CheckpointError, match="fit the class_names and preprocessing: .* 10 outputs but 2 class"):
        DigitClassifier.from_pretrained(folder)
    write({"preprocessing": {**config["preprocessing"], "image_size": 28}})
    with pytest.raises(CheckpointError, match="field 'preprocessing': images of 28 pixels a side"):
        DigitClassifier.from_pretrained(folder)
    write({})
    (folder / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read safetensors weights"):
        DigitClassifier.from_pretrained(folder)


def test_network_must_read_64_pixels_and_match_the_classes():
    with pytest.raises(ValueError, match="set the model's num_embeddings to 64"):
        DigitClassifier(EmbeddingNet(32, out_features=10), CLASS_NAMES)
    with pytest.raises(ValueError, match="3 outputs but 10 class names"):
        DigitClassifier(EmbeddingNet(64, out_features=3), CLASS_NAMES)
    with pytest.raises(RuntimeError, match="leaves num_embeddings, out_features to the data"):
        DigitClassifier(EmbeddingNet(None, out_features=None), CLASS_NAMES)
