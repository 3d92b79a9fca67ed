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
