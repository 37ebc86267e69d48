import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from workbench.align import (
    COSTS,
    align_draws,
    align_to_reference,
    component_cost,
    kl_divergence,
)
from workbench.mixture import MixtureParams
from workbench.simulate import Scenario, simulate


def random_params(rng, k, d):
    a = rng.normal(size=(k, d, d))
    covariances = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
    return MixtureParams(rng.dirichlet(np.ones(k)), rng.normal(scale=3, size=(k, d)), covariances)


def test_kl_between_identical_components_is_zero():
    rng = np.random.default_rng(0)
    p = random_params(rng, 4, 3)
    kl = kl_divergence(p.means, p.covariances, p.means, p.covariances)
    np.testing.assert_allclose(kl, 0.0, atol=1e-12)
    assert isinstance(
        kl_divergence(p.means[0], p.covariances[0], p.means[0], p.covariances[0]), float
    )


def test_kl_matches_the_one_dimensional_closed_form():
    mp, sp, mq, sq = 0.3, 1.7, -1.1, 0.6
    expected = math.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5
    got = kl_divergence(np.array([mp]), np.array([[sp**2]]), np.array([mq]), np.array([[sq**2]]))
    assert got == pytest.approx(expected, rel=1e-12)


def test_kl_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(1)
    p, q = random_params(rng, 1, 3), random_params(rng, 1, 3)
    mean_p, cov_p, mean_q, cov_q = p.means[0], p.covariances[0], q.means[0], q.covariances[0]
    x = rng.multivariate_normal(mean_p, cov_p, size=200_000)
    log_ratio = stats.multivariate_normal(mean_p, cov_p).logpdf(x) - stats.multivariate_normal(
        mean_q, cov_q
    ).logpdf(x)
    se = log_ratio.std(ddof=1) / math.sqrt(len(x))
    kl = kl_divergence(mean_p, cov_p, mean_q, cov_q)
    assert kl > 0.5
    assert abs(kl - log_ratio.mean()) < 4.5 * se


def test_kl_broadcasts_like_a_loop():
    rng = np.random.default_rng(2)
    p, q = random_params(rng, 3, 2), random_params(rng, 4, 2)
    batched = kl_divergence(
        p.means[:, None], p.covariances[:, None], q.means[None], q.covariances[None]
    )
    assert batched.shape == (3, 4)
    for i, j in itertools.product(range(3), range(4)):
        assert batched[i, j] == pytest.approx(
            kl_divergence(p.means[i], p.covariances[i], q.means[j], q.covariances[j]), rel=1e-10
        )


@pytest.mark.parametrize("cost", COSTS)
def test_component_cost_values_and_rectangular_shape(cost):
    rng = np.random.default_rng(3)
    est, ref = random_params(rng, 5, 2), random_params(rng, 3, 2)
    matrix = component_cost(est, ref, cost)
    assert matrix.shape == (5, 3)
    for e, r in itertools.product(range(5), range(3)):
        forward = kl_divergence(ref.means[r], ref.covariances[r], est.means[e], est.covariances[e])
        backward = kl_divergence(est.means[e], est.covariances[e], ref.means[r], ref.covariances[r])
        diff = est.means[e] - ref.means[r]
        expected = {
            "kl": forward,
            "symmetric_kl": forward + backward,
            "mahalanobis": diff @ np.linalg.solve(ref.covariances[r], diff),
        }[cost]
        assert matrix[e, r] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("seed", range(4))
def test_alignment_recovers_a_shuffled_permutation(cost, seed):
    rng = np.random.default_rng(seed)
    truth = simulate(Scenario(n_components=5, covariance="full", condition_number=4.0), seed).truth
    noisy = MixtureParams(
        truth.weights,
        truth.means + rng.normal(scale=0.05, size=truth.means.shape),
        truth.covariances * rng.uniform(0.9, 1.1, size=(5, 1, 1)),
    )
    shuffle = rng.permutation(5)
    estimate = noisy.permuted(shuffle)
    order = align_to_reference(estimate, truth, cost)
    np.testing.assert_array_equal(shuffle[order], np.arange(5))
    np.testing.assert_allclose(estimate.permuted(order).means, noisy.means)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 5))
def test_alignment_is_an_optimal_permutation(seed, k):
    rng = np.random.default_rng(seed)
    est, ref = random_params(rng, k, 2), random_params(rng, k, 2)
    order = align_to_reference(est, ref)
    assert sorted(order) == list(range(k))
    cost = component_cost(est, ref)
    best = min(sum(cost[p[r], r] for r in range(k)) for p in itertools.permutations(range(k)))
    assert sum(cost[order[r], r] for r in range(k)) == pytest.approx(best)


def test_align_draws_gives_each_draw_its_own_permutation():
    rng = np.random.default_rng(5)
    truth = simulate(Scenario(n_components=4, covariance="diag", condition_number=3.0), 5).truth
    n_draws = 30
    shuffles = np.stack([rng.permutation(4) for _ in range(n_draws)])
    means = truth.means[shuffles] + rng.normal(scale=0.05, size=(n_draws, 4, 2))
    covariances = truth.covariances[shuffles]
    weights = truth.weights[shuffles]
    orders = align_draws(weights, means, covariances, truth)
    assert orders.shape == (n_draws, 4)
    np.testing.assert_array_equal(
        np.take_along_axis(shuffles, orders, axis=1), np.tile(range(4), (n_draws, 1))
    )
    for s in range(n_draws):
        draw = MixtureParams(weights[s], means[s], covariances[s])
        np.testing.assert_array_equal(orders[s], align_to_reference(draw, truth))


def test_a_draw_with_a_numerically_singular_covariance_is_still_aligned():
    # L L^T of a sampled factor with a vanishing diagonal entry: not positive definite in
    # floating point; the draw must be matched (by its means), not fail the fit
    truth = simulate(Scenario(n_components=3, covariance="full"), 2).truth
    shuffle = np.array([2, 0, 1])
    means = truth.means[shuffle][None]
    covariances = truth.covariances[shuffle][None].copy()
    factor = np.array([[1.0, 0.0], [1.0, 1e-170]])
    covariances[0, 1] = factor @ factor.T
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(covariances[0, 1])
    orders = align_draws(truth.weights[shuffle][None], means, covariances, truth)
    np.testing.assert_array_equal(shuffle[orders[0]], [0, 1, 2])
    # positive definite stacks are factored exactly as before
    cost = kl_divergence(truth.means[0], truth.covariances[0], truth.means[1], truth.covariances[1])
    assert np.isfinite(cost) and cost > 0


def test_alignment_errors_name_the_problem():
    rng = np.random.default_rng(6)
    three, four = random_params(rng, 3, 2), random_params(rng, 4, 2)
    with pytest.raises(ValueError, match="4 components but the reference has 3"):
        align_to_reference(four, three)
    with pytest.raises(ValueError, match="cost='wasserstein'.*kl, symmetric_kl, mahalanobis"):
        component_cost(three, three, "wasserstein")
    with pytest.raises(ValueError, match="3 features but the reference has 2"):
        component_cost(random_params(rng, 3, 3), three)
    with pytest.raises(ValueError, match=r"must have shapes \(2, 3\)"):
        align_draws(
            np.ones((2, 4)) / 4, np.zeros((2, 3, 2)), np.tile(np.eye(2), (2, 3, 1, 1)), three
        )
