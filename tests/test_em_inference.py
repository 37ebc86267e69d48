"""Analytic standard errors of EM estimates: score, Hessian, estimators, intervals, failures."""

from __future__ import annotations

import doctest
import tracemalloc

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import workbench.em.inference as inference_module
from workbench.em import GaussianMixture
from workbench.em._information import (
    information_terms,
    layout,
)
from workbench.em.inference import (
    ObservedInformation,
    StandardErrors,
    observed_information,
    standard_errors,
    wald_intervals,
)
from workbench.mixture import (
    COVARIANCE_TYPES,
    MixtureParams,
    flatten_parameters,
    log_prob,
    n_parameters,
    precisions_cholesky_from_covariances,
    sample,
)
from workbench.simulate import Scenario, simulate


def _unpack(theta: np.ndarray, k: int, d: int, covariance_type: str):
    """Free parameter vector -> (weights, means, covariances in sklearn's shape)."""
    lay = layout(k, d, covariance_type)
    free_weights = theta[lay.weight_index]
    weights = np.append(free_weights, 1.0 - free_weights.sum())
    means = theta[lay.mean_index]
    if covariance_type in ("full", "tied"):
        iu, ju = np.triu_indices(d)
        dense = np.zeros((k, d, d))
        for c in range(k):
            dense[c][iu, ju] = dense[c][ju, iu] = theta[lay.cov_index[c]]
        covariances = dense if covariance_type == "full" else dense[0]
    elif covariance_type == "diag":
        covariances = theta[lay.cov_index]
    else:
        covariances = theta[lay.cov_index[:, 0]]
    return weights, means, covariances


def _pack(weights, means, covariances, covariance_type: str) -> np.ndarray:
    k, d = means.shape
    lay = layout(k, d, covariance_type)
    theta = np.zeros(lay.n_free)
    theta[lay.weight_index] = weights[:-1]
    theta[lay.mean_index] = means
    iu, ju = np.triu_indices(d)
    if covariance_type == "full":
        theta[lay.cov_index] = covariances[:, iu, ju]
    elif covariance_type == "tied":
        theta[lay.cov_index[0]] = covariances[iu, ju]
    elif covariance_type == "diag":
        theta[lay.cov_index] = covariances
    else:
        theta[lay.cov_index[:, 0]] = covariances
    return theta


def _loglik(theta, X, k, d, covariance_type) -> float:
    weights, means, covariances = _unpack(theta, k, d, covariance_type)
    params = MixtureParams.from_covariance_type(weights, means, covariances, covariance_type)
    return float(np.sum(log_prob(X, params)))


def _terms(theta, X, k, d, covariance_type, **kwargs):
    weights, means, covariances = _unpack(theta, k, d, covariance_type)
    return information_terms(
        X,
        weights=weights,
        means=means,
        precisions_cholesky=precisions_cholesky_from_covariances(covariances, covariance_type),
        covariance_type=covariance_type,
        **kwargs,
    )


def _random_point(rng, covariance_type, k, d, random_covariances):
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(size=(k, d))
    return _pack(weights, means, random_covariances(rng, covariance_type, k, d), covariance_type)


def _well_separated(n, *, covariance="full", seed=0, k=2, d=2):
    scenario = Scenario(
        n_components=k,
        n_features=d,
        n_train=n,
        n_test=1,
        overlap=0.001,
        covariance=covariance,
        condition_number=1.0 if covariance == "spherical" else 3.0,
        truth_seed=11,
    )
    return simulate(scenario, seed)


def _fit(X, k, covariance_type="full", **kwargs):
    options = dict(random_state=0, tol=1e-10, max_iter=2000)
    options.update(kwargs)
    return GaussianMixture(k, covariance_type=covariance_type, **options).fit(X)


# ------------------------------------------------------------------------ names and shapes


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_free_layout_counts_the_free_parameters(covariance_type):
    lay = layout(3, 4, covariance_type)
    assert lay.n_free == n_parameters(3, 4, covariance_type) == len(lay.free_names)
    used = np.concatenate([lay.weight_index, lay.mean_index.ravel(), np.unique(lay.cov_index)])
    np.testing.assert_array_equal(np.sort(used), np.arange(lay.n_free))


# ------------------------------------------------------------- score and Hessian in closed form


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_score_and_hessian_equal_finite_differences(covariance_type, d, k, random_covariances):
    """At a generic (not fitted) point, so every term of the Hessian is exercised."""
    rng = np.random.default_rng(100 * k + 10 * d + COVARIANCE_TYPES.index(covariance_type))
    X = 1.5 * rng.normal(size=(40, d))
    theta = _random_point(rng, covariance_type, k, d, random_covariances)
    terms = _terms(theta, X, k, d, covariance_type)
    assert terms.log_likelihood == pytest.approx(_loglik(theta, X, k, d, covariance_type))

    size = theta.size
    eye = np.eye(size)
    h1 = 1e-6
    grad = np.array(
        [
            _loglik(theta + h1 * e, X, k, d, covariance_type)
            - _loglik(theta - h1 * e, X, k, d, covariance_type)
            for e in eye
        ]
    ) / (2 * h1)
    np.testing.assert_allclose(terms.score, grad, rtol=0, atol=1e-6 * np.max(np.abs(grad)))

    # Central second differences of the log-likelihood itself: truncation error ~h^2,
    # rounding ~eps |loglik| / h^2, both far below 1e-6 of the Hessian's scale here.
    h = 1e-4
    fd = np.empty((size, size))
    for i in range(size):
        for j in range(i, size):
            ei, ej = h * eye[i], h * eye[j]
            value = (
                _loglik(theta + ei + ej, X, k, d, covariance_type)
                - _loglik(theta + ei - ej, X, k, d, covariance_type)
                - _loglik(theta - ei + ej, X, k, d, covariance_type)
                + _loglik(theta - ei - ej, X, k, d, covariance_type)
            ) / (4 * h * h)
            fd[i, j] = fd[j, i] = value
    scale = np.max(np.abs(terms.hessian))
    assert np.max(np.abs(terms.hessian - fd)) <= 1e-6 * scale


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_outer_product_is_the_sum_of_per_row_score_products(covariance_type, random_covariances):
    rng = np.random.default_rng(5)
    k, d = 2, 3
    X = rng.normal(size=(30, d))
    theta = _random_point(rng, covariance_type, k, d, random_covariances)
    rows = np.stack([_terms(theta, X[i : i + 1], k, d, covariance_type).score for i in range(30)])
    blocked = _terms(theta, X, k, d, covariance_type, block_rows=7)
    whole = _terms(theta, X, k, d, covariance_type)
    np.testing.assert_allclose(blocked.outer_product, rows.T @ rows, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(blocked.score, rows.sum(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(blocked.hessian, whole.hessian, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_vanishes_at_a_converged_fit(covariance_type):
    data = _well_separated(3000, covariance="full", seed=1)
    # reg_covar=0: the regulariser moves the fit off the likelihood's stationary point.
    gm = _fit(data.X_train, 2, covariance_type, reg_covar=0.0, tol=1e-14, max_iter=5000)
    info = observed_information(gm, data.X_train)
    assert isinstance(info, ObservedInformation)
    assert len(info.names) == info.score.size == n_parameters(2, 2, covariance_type)
    # Each score entry, in units of its own standard deviation sqrt(sum s_i^2).
    standardised = info.score / np.sqrt(np.diag(info.outer_product))
    assert np.max(np.abs(standardised)) < 1e-6
    assert info.log_likelihood == pytest.approx(gm.score(data.X_train) * 3000)


# --------------------------------------------------------------------------- estimators


def test_one_gaussian_has_the_textbook_standard_errors():
    """K = 1, d = 1: se(mean) = sigma / sqrt(n), se(variance) = sigma^2 sqrt(2 / n)."""
    rng = np.random.default_rng(3)
    X = rng.normal(2.0, 3.0, size=(500, 1))
    gm = _fit(X, 1, reg_covar=0.0)
    errors = standard_errors(gm, X, method="hessian")
    variance = np.var(X)
    assert errors.names == ("weight[0]", "mean[0,0]", "cov[0,0,0]")
    np.testing.assert_allclose(
        errors.se, [0.0, np.sqrt(variance / 500), variance * np.sqrt(2 / 500)], rtol=1e-8
    )
    # The lone weight is the constant 1: a point interval on either scale.
    for scale in ("natural", "transformed"):
        intervals = errors.interval(0.95, scale=scale)
        assert intervals.lower[0] == intervals.upper[0] == 1.0


def test_scores_are_accumulated_in_blocks_not_held_for_every_row():
    rng = np.random.default_rng(14)
    n, d, k = 100_000, 5, 4
    X = rng.normal(size=(n, d))
    weights = np.full(k, 1 / k)
    means = rng.normal(size=(k, d))
    prec_chol = precisions_cholesky_from_covariances(np.stack([np.eye(d)] * k), "full")
    n_free = n_parameters(k, d, "full")
    tracemalloc.start()
    information_terms(
        X, weights=weights, means=means, precisions_cholesky=prec_chol, covariance_type="full"
    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    all_rows = n * n_free * 8  # 66 MB for the (n, P) score matrix alone
    assert peak < 0.6 * all_rows, (peak, all_rows)


def _specified_data(covariance_type: str, n: int, seed: int) -> np.ndarray:
    """Data from a well-separated truth whose covariances have ``covariance_type``'s form."""
    structure = "full" if covariance_type == "tied" else covariance_type
    truth = _well_separated(10, covariance=structure).truth
    if covariance_type == "tied":
        truth = MixtureParams(truth.weights, truth.means, np.stack([truth.covariances[0]] * 2))
    X, _ = sample(truth, n, rng=seed)
    return X


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_three_estimators_agree_at_large_n(covariance_type):
    """Under a correctly specified model the information equality makes them agree."""
    X = _specified_data(covariance_type, 20_000, seed=2)
    gm = _fit(X, 2, covariance_type)
    errors = {m: standard_errors(gm, X, method=m) for m in ("hessian", "opg", "sandwich")}
    free = errors["hessian"].se > 0
    for method in ("opg", "sandwich"):
        ratio = errors[method].se[free] / errors["hessian"].se[free]
        assert np.all(np.abs(ratio - 1) < 0.10), (method, ratio)
    assert all(isinstance(e, StandardErrors) and e.method == m for m, e in errors.items())


def test_sandwich_departs_from_hessian_under_misspecification():
    """A tied model fitted to components of different shapes: the information equality fails."""
    X = _specified_data("full", 20_000, seed=3)
    gm = _fit(X, 2, "tied")
    hessian = standard_errors(gm, X, method="hessian").se
    sandwich = standard_errors(gm, X, method="sandwich").se
    free = hessian > 0
    assert np.max(np.abs(sandwich[free] / hessian[free] - 1)) > 0.2


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_reported_covariance_respects_the_model_structure(covariance_type):
    data = _well_separated(1500, covariance="full", seed=3, k=3, d=3)
    gm = _fit(data.X_train, 3, covariance_type)
    errors = standard_errors(gm, data.X_train, method="sandwich")
    names = errors.names
    idx = {name: i for i, name in enumerate(names)}
    w = [idx[f"weight[{c}]"] for c in range(3)]
    # The weights sum to one, so their covariance rows sum to zero.
    np.testing.assert_allclose(errors.covariance[w].sum(axis=0), 0.0, atol=1e-12)
    fitted = gm.to_params()
    np.testing.assert_allclose(
        errors.estimates, flatten_parameters(fitted.weights, fitted.means, fitted.covariances)
    )
    off = [idx["cov[1,0,2]"], idx["cov[2,1,2]"]]
    if covariance_type in ("diag", "spherical"):
        assert np.all(errors.se[off] == 0.0)
    else:
        assert np.all(errors.se[off] > 0)
    if covariance_type == "tied":
        a, b = idx["cov[0,0,1]"], idx["cov[2,0,1]"]
        assert errors.se[a] == pytest.approx(errors.se[b])
        assert errors.covariance[a, b] == pytest.approx(errors.se[a] ** 2)
    if covariance_type == "spherical":
        a, b = idx["cov[1,0,0]"], idx["cov[1,2,2]"]
        assert errors.covariance[a, b] == pytest.approx(errors.se[a] * errors.se[b])
    assert np.all(np.isfinite(errors.covariance))
    assert np.all(np.linalg.eigvalsh(errors.covariance) > -1e-12)


# ----------------------------------------------------------------------------- intervals


def test_wald_intervals_natural_and_transformed():
    data = _well_separated(400, covariance="full", seed=4)
    gm = _fit(data.X_train, 2)
    errors = standard_errors(gm, data.X_train)
    natural = wald_intervals(errors, level=0.9)
    z = 1.6448536269514722
    np.testing.assert_allclose(natural.lower, errors.estimates - z * errors.se)
    np.testing.assert_allclose(natural.upper, errors.estimates + z * errors.se)
    assert natural.method == "hessian-wald" and natural.level == 0.9
    wide = errors.interval(0.99, scale="transformed")
    idx = {name: i for i, name in enumerate(errors.names)}
    assert np.all(wide.lower <= errors.estimates) and np.all(errors.estimates <= wide.upper)
    assert np.all((wide.lower[:2] > 0) & (wide.upper[:2] < 1))
    var = idx["cov[1,1,1]"]
    assert wide.lower[var] > 0
    # Log scale: the interval is asymmetric, longer above the estimate.
    assert wide.upper[var] - errors.estimates[var] > errors.estimates[var] - wide.lower[var]
    mean = idx["mean[0,1]"]
    assert wide.lower[mean] == pytest.approx(errors.estimates[mean] - 2.5758293 * errors.se[mean])
    # Correlation interval: Fisher z mapped back, inside +-sd_a sd_b.
    off = idx["cov[0,0,1]"]
    bound = np.sqrt(errors.estimates[idx["cov[0,0,0]"]] * errors.estimates[idx["cov[0,1,1]"]])
    assert -bound < wide.lower[off] < wide.upper[off] < bound


def test_transformed_intervals_approach_natural_ones_at_large_n():
    data = _well_separated(20_000, covariance="full", seed=5)
    gm = _fit(data.X_train, 2)
    errors = standard_errors(gm, data.X_train)
    natural, transformed = errors.interval(), errors.interval(scale="transformed")
    np.testing.assert_allclose(
        transformed.lower, natural.lower, rtol=0, atol=0.05 * errors.se.max()
    )
    np.testing.assert_allclose(
        transformed.upper, natural.upper, rtol=0, atol=0.05 * errors.se.max()
    )


def test_covers_compares_with_the_truth():
    data = _well_separated(500, covariance="full", seed=6)
    gm = _fit(data.X_train, 2, means_init=data.truth.means)
    intervals = standard_errors(gm, data.X_train).interval(0.999999)
    truth = flatten_parameters(data.truth.weights, data.truth.means, data.truth.covariances)
    assert intervals.covers(truth).all()
    assert not intervals.covers(truth + 1.0).any()


# ----------------------------------------------------------------------------- failures


def test_unfitted_model_raises_not_fitted():
    with pytest.raises(NotFittedError):
        standard_errors(GaussianMixture(2), np.zeros((5, 2)))
    with pytest.raises(NotFittedError):
        observed_information(GaussianMixture(2), np.zeros((5, 2)))


def test_bad_arguments_name_the_value():
    data = _well_separated(300, seed=7)
    gm = _fit(data.X_train, 2)
    with pytest.raises(ValueError, match="method='louis'"):
        standard_errors(gm, data.X_train, method="louis")
    with pytest.raises(ValueError, match="X has 3 features"):
        standard_errors(gm, np.zeros((10, 3)))
    errors = standard_errors(gm, data.X_train)
    with pytest.raises(ValueError, match="level=1.5"):
        wald_intervals(errors, level=1.5)
    with pytest.raises(ValueError, match="scale='log'"):
        wald_intervals(errors, scale="log")


def test_component_holding_about_d_points_is_named():
    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(size=(200, 2)), [[30.0, 30.0], [31.0, 29.0]]])
    gm = GaussianMixture(2, random_state=0, means_init=[[0.0, 0.0], [30.5, 29.5]]).fit(X)
    with pytest.raises(ValueError, match=r"component 1 holds an effective 2 points"):
        standard_errors(gm, X)


def test_weight_near_zero_is_named():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 2))
    gm = GaussianMixture(
        2,
        weights_init=[0.5, 0.5],
        means_init=[[0.0, 0.0], [500.0, 500.0]],
        precisions_init=np.stack([np.eye(2), np.eye(2)]),
    ).fit(X)
    assert gm.weights_[1] < 1e-10
    for method in ("hessian", "opg", "sandwich"):
        with pytest.raises(ValueError, match=r"component 1 holds an effective 0 points \(weight"):
            standard_errors(gm, X, method=method)


def test_duplicated_components_give_a_singular_information():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(300, 2))
    # Two identical components: nothing in the data tells their weights apart.
    gm = GaussianMixture(
        2,
        weights_init=[0.5, 0.5],
        means_init=np.zeros((2, 2)),
        precisions_init=np.stack([np.eye(2), np.eye(2)]),
        max_iter=0,
    ).fit(X)
    for method in ("hessian", "opg"):
        with pytest.raises(ValueError, match=r"not positive definite.*weight\[0\] \(component 0\)"):
            standard_errors(gm, X, method=method)


def test_fit_away_from_a_maximum_is_reported():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(400, 1))
    # Variance five times the sample variance: the likelihood curves upwards there.
    gm = GaussianMixture(
        1,
        weights_init=[1.0],
        means_init=[[X.mean()]],
        precisions_init=[[[0.2 / X.var()]]],
        max_iter=0,
    ).fit(X)
    with pytest.raises(ValueError, match=r"not positive definite.*cov\[0,0,0\] \(component 0\)"):
        standard_errors(gm, X)


def test_nearly_collinear_direction_is_singular():
    """Points on a line: the covariance is singular up to reg_covar, so is the information."""
    rng = np.random.default_rng(13)
    t = rng.normal(size=(200, 1))
    X = np.hstack([t, 2.0 * t])
    gm = _fit(X, 1, "full", reg_covar=1e-13)
    with pytest.raises(ValueError, match=r"(singular|not positive definite).*component 0"):
        standard_errors(gm, X)


def test_docstring_examples_run():
    assert doctest.testmod(inference_module).failed == 0
