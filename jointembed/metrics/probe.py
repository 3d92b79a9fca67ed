"""Does a learned space recover known structure? A linear probe from embeddings to true attributes."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

__all__ = ["linear_probe_r2"]


def linear_probe_r2(
    embeddings: np.ndarray, targets: np.ndarray, test_fraction: float = 0.3, alpha: float = 1.0, seed: int = 0
) -> np.ndarray:
    """R² of a ridge regression from embeddings to each target column, on held-out rows.

    Used to check that a movie world's learned item embeddings encode the movies' true aspects
    (children↔adult, blockbuster↔arthouse, ...): R² near 1 means the aspect is a linear direction in the space,
    near 0 means it is absent.

    Args:
        embeddings: ``(N, d)`` one vector per item.
        targets: ``(N,)`` or ``(N, A)`` true attributes.
        test_fraction: Share of rows held out to score the probe.
        alpha: Ridge penalty.
        seed: Seed of the row split.

    Returns:
        ``(A,)`` R² per target column on the held-out rows.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"need embeddings (N, d) and targets (N, A) with the same N, got {x.shape} and {y.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(x.shape[0])
    n_test = max(1, int(round(test_fraction * x.shape[0])))
    test, train = order[:n_test], order[n_test:]
    # a one-column target gets 1-D predictions from Ridge, which would broadcast against (n, 1) into nonsense
    pred = Ridge(alpha=alpha).fit(x[train], y[train]).predict(x[test]).reshape(y[test].shape)
    residual = ((y[test] - pred) ** 2).sum(0)
    total = ((y[test] - y[test].mean(0)) ** 2).sum(0)
    return 1.0 - residual / np.where(total == 0, 1.0, total)
