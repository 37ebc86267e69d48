import numpy as np
import pytest
from scipy import stats

from workbench.mixture import (
    COVARIANCE_TYPES,
    MixtureParams,
    component_log_prob,
    log_prob,
    n_parameters,
    precisions_cholesky_from_covariances,
    responsibilities,
    sample,
    to_full_covariances,
)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_component_log_prob_matches_scipy(covariance_type, random_covariances):
    rng = np.random.default_rng(0)
    k, d = 3, 4
    means = rng.normal(size=(k, d))
    cov = random_covariances(rng, covariance_type, k, d)
    X = rng.normal(size=(50, d))
    got = component_log_prob(
        X, means, precisions_cholesky_from_covariances(cov, covariance_type), covariance_type
    )
    full = to_full_covariances(cov, covariance_type, k, d)
    want = np.column_stack(
        [stats.multivariate_normal(means[j], full[j]).logpdf(X) for j in range(k)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_log_prob_and_responsibilities():
    rng = np.random.default_rng(1)
    params = MixtureParams([0.2, 0.8], [[0.0, 0.0], [3.0, 1.0]], [np.eye(2), 2 * np.eye(2)])
    X = rng.normal(size=(20, 2))
    dens = sum(
        w * stats.multivariate_normal(m, c).pdf(X)
        for w, m, c in zip(params.weights, params.means, params.covariances, strict=True)
    )
    np.testing.assert_allclose(log_prob(X, params), np.log(dens), rtol=1e-12)
    np.testing.assert_allclose(responsibilities(X, params).sum(axis=1), 1.0)


def test_responsibilities_sum_to_one_within_ulps_for_far_rows():
    rng = np.random.default_rng(3)
    params = MixtureParams(
        [0.2, 0.3, 0.5],
        [[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]],
        [np.eye(2), 2 * np.eye(2), np.eye(2)],
    )
    X = np.vstack([rng.normal(size=(50, 2)), rng.normal(size=(5, 2)) * 1e3])  # underflowing
    resp = responsibilities(X, params)
    assert np.all(resp >= 0)
    assert np.max(np.abs(resp.sum(axis=1) - 1.0)) <= 4 * np.finfo(float).eps
    assert np.all(np.isfinite(np.log(resp.max(axis=1))))


def test_sample_moments_match_truth():
    params = MixtureParams([0.3, 0.7], [[-2.0], [2.0]], [[[1.0]], [[0.25]]])
    X, labels = sample(params, 200_000, np.random.default_rng(2))
    mean = params.weights @ params.means[:, 0]
    assert abs(X.mean() - mean) < 5 * X.std() / np.sqrt(len(X))
    assert abs(labels.mean() - 0.7) < 5 * np.sqrt(0.21 / len(X))


def test_n_parameters_matches_sklearn():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    for covariance_type in COVARIANCE_TYPES:
        gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
        assert n_parameters(2, 3, covariance_type) == gm._n_parameters()


def test_bad_params_are_named():
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureParams([0.5, 0.6], [[0.0], [1.0]], [[[1.0]], [[1.0]]])
    with pytest.raises(ValueError, match="component 1"):
        precisions_cholesky_from_covariances(np.array([[[1.0]], [[0.0]]]), "full")
    with pytest.raises(ValueError, match="covariance_type='bogus'"):
        n_parameters(2, 2, "bogus")


def test_precision_cholesky_is_upper_triangular_and_inverts_the_covariance(random_covariances):
    rng = np.random.default_rng(4)
    # Off-diagonal entries larger than the diagonal make LAPACK pivot while inverting.
    cov = random_covariances(rng, "full", 4, 3) + 5.0
    cov += 6 * np.eye(3)
    factors = precisions_cholesky_from_covariances(cov, "full")
    assert np.all(np.tril(factors, -1) == 0.0)
    np.testing.assert_allclose(
        factors @ factors.transpose(0, 2, 1) @ cov,
        np.broadcast_to(np.eye(3), cov.shape),
        atol=1e-12,
    )
