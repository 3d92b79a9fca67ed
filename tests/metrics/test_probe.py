import numpy as np
import pytest

from jointembed.metrics.probe import linear_probe_r2


def test_linear_structure_is_found_and_noise_is_not():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8))
    targets = np.stack([x @ rng.standard_normal(8), rng.standard_normal(500)], axis=1)
    r2 = linear_probe_r2(x, targets, alpha=1e-3)
    assert r2[0] > 0.999 and abs(r2[1]) < 0.1


def test_shape_errors():
    with pytest.raises(ValueError, match="same N"):
        linear_probe_r2(np.zeros((5, 2)), np.zeros(4))


def test_a_single_target_gets_one_r2() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5))
    y = x[:, 0] * 2.0 + 0.1 * rng.standard_normal(400)
    r2 = linear_probe_r2(x, y)
    assert np.shape(r2) == (1,) and float(r2[0]) > 0.95
