"""The fused per-draw density kernel agrees with the one NumPy mixture density."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wishart

from workbench.draws import (
    draw_allocation_probabilities,
    draw_log_density,
    log_mean_exp_density,
)
from workbench.mixture import MixtureParams, log_prob, responsibilities


def _draws(rng: np.random.Generator, S: int, K: int, d: int):
    weights = rng.dirichlet(np.ones(K), size=S)
    means = rng.normal(scale=2.0, size=(S, K, d))
    covariances = wishart(df=d + 3, scale=np.eye(d) / (d + 3)).rvs(S * K, random_state=rng)
    return weights, means, np.asarray(covariances).reshape(S, K, d, d)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_per_draw_density_and_allocations_match_mixture_log_prob(d):
    rng = np.random.default_rng(d)
    X = rng.normal(scale=2.0, size=(50, d))
    weights, means, covariances = _draws(rng, 7, 3, d)
    densities = draw_log_density(X, weights, means, covariances)
    allocations = draw_allocation_probabilities(X, weights, means, covariances)
    assert densities.shape == (7, 50) and allocations.shape == (7, 50, 3)
    for s in range(7):
        params = MixtureParams(weights[s], means[s], covariances[s])
        np.testing.assert_allclose(densities[s], log_prob(X, params), rtol=1e-10)
        np.testing.assert_allclose(allocations[s], responsibilities(X, params), atol=1e-12)


def test_log_mean_exp_density_is_the_density_of_the_pooled_mixture():
    # mean_s p(x | theta_s) is the mixture of all S*K components with weights w_sk / S
    rng = np.random.default_rng(5)
    X = rng.normal(scale=3.0, size=(40, 2))
    weights, means, covariances = _draws(rng, 20, 3, 2)
    pooled = MixtureParams(
        weights.ravel() / 20, means.reshape(-1, 2), covariances.reshape(-1, 2, 2)
    )
    np.testing.assert_allclose(
        log_mean_exp_density(X, weights, means, covariances), log_prob(X, pooled), rtol=1e-10
    )
