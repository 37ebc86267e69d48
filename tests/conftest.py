"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import pytest


def _random_covariances(rng: np.random.Generator, covariance_type: str, k: int, d: int):
    """Well-conditioned random covariances in scikit-learn's shape for ``covariance_type``."""
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        return a @ a.transpose(0, 2, 1) + d * np.eye(d)
    if covariance_type == "tied":
        a = rng.normal(size=(d, d))
        return a @ a.T + d * np.eye(d)
    if covariance_type == "diag":
        return rng.uniform(0.5, 2.0, size=(k, d))
    return rng.uniform(0.5, 2.0, size=k)


@pytest.fixture
def random_covariances():
    """``random_covariances(rng, covariance_type, k, d)``: see :func:`_random_covariances`."""
    return _random_covariances
