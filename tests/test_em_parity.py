"""Our GaussianMixture against scikit-learn's, which serves only as the reference here."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

from workbench import GaussianMixture
from workbench.mixture import COVARIANCE_TYPES

PARAMS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")


def blobs(rng, n_per=200, d=3, centres=(-3.0, 0.0, 4.0)):
    return np.vstack([rng.normal(c, 1.0 + 0.2 * i, (n_per, d)) for i, c in enumerate(centres)])


def shared_init(rng, X, covariance_type, k=3):
    """A deliberately rough start, so EM has many iterations of work to match."""
    d = X.shape[1]
    means = X[rng.choice(len(X), k, replace=False)]
    weights = np.full(k, 1.0 / k)
    precisions = {
        "full": np.stack([np.eye(d) * (0.5 + 0.1 * j) for j in range(k)]),
        "tied": np.eye(d) * 0.4,
        "diag": np.full((k, d), 0.5) + 0.1 * np.arange(k)[:, None],
        "spherical": 0.5 + 0.1 * np.arange(k),
    }[covariance_type]
    return dict(weights_init=weights, means_init=means, precisions_init=precisions)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_lower_bounds_and_parameters_from_same_init(covariance_type):
    rng = np.random.default_rng(3)
    X = blobs(rng)
    init = shared_init(rng, X, covariance_type)
    # tol=0: both run exactly max_iter iterations, so the whole trace is compared.
    kwargs = dict(n_components=3, covariance_type=covariance_type, tol=0.0, max_iter=40, **init)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        ref = SklearnGaussianMixture(**kwargs).fit(X)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        ours = GaussianMixture(**kwargs).fit(X)
    assert ours.n_iter_ == ref.n_iter_ == 40
    assert not ours.converged_
    assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-10, atol=0)
    assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-10, atol=0)
    for name in PARAMS:
        assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8, atol=1e-12)
    assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-10)
    assert np.array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_same_fit_from_same_seed(init_params, covariance_type):
    # Same seed -> same random-number use in initialisation -> same fit.
    rng = np.random.default_rng(4)
    X = blobs(rng, n_per=100, d=2)
    kwargs = dict(
        n_components=3,
        covariance_type=covariance_type,
        init_params=init_params,
        random_state=7,
        n_init=2,
        max_iter=300,
    )
    ref = SklearnGaussianMixture(**kwargs).fit(X)
    ours = GaussianMixture(**kwargs).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-10)
    for name in PARAMS:
        assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8, atol=1e-10)
    assert np.array_equal(ours.fit_predict(X), ref.fit_predict(X))


def test_float32_kept_as_float32_like_sklearn():
    rng = np.random.default_rng(5)
    X = blobs(rng, n_per=100, d=2).astype(np.float32)
    ref = SklearnGaussianMixture(3, random_state=0).fit(X)
    ours = GaussianMixture(3, random_state=0).fit(X)
    for name in PARAMS:
        assert getattr(ours, name).dtype == getattr(ref, name).dtype == np.float32, name
        assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-3, atol=1e-4)
    assert ours.score_samples(X).dtype == ref.score_samples(X).dtype


def test_methods_match_sklearn_on_fitted_model():
    rng = np.random.default_rng(6)
    X = blobs(rng, n_per=80, d=2)
    ref = SklearnGaussianMixture(3, covariance_type="diag", random_state=1).fit(X)
    ours = GaussianMixture(3, covariance_type="diag", random_state=1).fit(X)
    X_new = rng.normal(0, 3, (40, 2))
    assert_allclose(ours.predict_proba(X_new), ref.predict_proba(X_new), rtol=1e-8, atol=1e-12)
    assert_allclose(ours.score(X_new), ref.score(X_new), rtol=1e-10)
    assert_allclose(ours.bic(X_new), ref.bic(X_new), rtol=1e-10)
    assert_allclose(ours.aic(X_new), ref.aic(X_new), rtol=1e-10)
    # Same random_state and parameters -> the same draws.
    ours_X, ours_y = ours.sample(50)
    ref_X, ref_y = ref.sample(50)
    assert np.array_equal(ours_y, ref_y)
    assert_allclose(ours_X, ref_X, rtol=1e-8)
