"""Draws from the model's prior: the ordered prior exactly, for every covariance type."""

import dataclasses

import numpy as np
import pymc as pm
import pytest
from scipy import stats
from scipy.special import betainc

from workbench.bayes.model import build_model
from workbench.bayes.prior_sampling import (
    draw_prior_mixture,
    fixed_hyperparameters,
    lkj_cholesky,
    prior_draws,
)
from workbench.bayes.priors import BayesPriors
from workbench.mixture import MixtureParams, sample

# PyTensor's C backend warns once that it found no BLAS; it is informational here.
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")

# Not the defaults, so that a sampler ignoring a hyperparameter fails the comparison.
PRIORS = BayesPriors(
    dirichlet_concentration=0.7,
    mean_loc=(0.5, -1.0, 0.0),
    mean_scale=2.0,
    scale_prior=1.5,
    lkj_eta=1.5,
)
N_DRAWS = 4000


def _priors(d: int) -> BayesPriors:
    return dataclasses.replace(PRIORS, mean_loc=PRIORS.mean_loc[:d])


def _scalars(weights, means, covariances) -> np.ndarray:
    """Every scalar of a batch of mixtures, plus the correlations: shape (size, P)."""
    size, _, d = means.shape
    rows, cols = np.triu_indices(d, k=1)
    sd = np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))
    correlation = covariances[..., rows, cols] / (sd[..., rows] * sd[..., cols])
    iu, ju = np.triu_indices(d)
    return np.concatenate(
        [
            weights,
            means.reshape(size, -1),
            covariances[..., iu, ju].reshape(size, -1),
            correlation.reshape(size, -1),
        ],
        axis=1,
    )


# (covariance type, d): every parametrisation of build_model, and d = 3 for the onion
# method's later rows.
CASES = [("full", 3), ("tied", 2), ("diag", 2), ("spherical", 3), ("tied", 1), ("full", 1)]


@pytest.mark.parametrize(("covariance_type", "d"), CASES)
def test_exchangeable_draws_match_pymc_forward_draws_of_the_model(covariance_type, d):
    """Two-sample KS per scalar against PyMC's own (unordered) draws of build_model's priors."""
    priors = _priors(d)
    X = np.random.default_rng(0).normal(size=(10, d))
    model = build_model(X, 3, covariance_type=covariance_type, priors=priors)
    # FAST_COMPILE: the C compilation of the LKJ graph takes a minute; drawing does not
    # need it.
    w, mu, cov = pm.draw(
        [model["w"], model["mu"], model["cov"]],
        draws=N_DRAWS,
        random_seed=1,
        mode="FAST_COMPILE",
    )
    ours = prior_draws(
        priors, 3, d, covariance_type=covariance_type, size=N_DRAWS, ordered=False, rng=2
    )
    theirs = _scalars(w, mu, cov)
    mine = _scalars(*ours)
    assert mine.shape == theirs.shape
    p_values = [stats.ks_2samp(theirs[:, j], mine[:, j]).pvalue for j in range(mine.shape[1])]
    assert min(p_values) * len(p_values) > 1e-3, p_values


def test_pymc_forward_draws_ignore_the_ordering():
    """Why the draws are sorted here: PyMC's prior sampling skips the ordered transform
    (pymc issue 7297). If this starts failing, PyMC draws ordered means itself."""
    model = build_model(np.zeros((10, 1)) + np.arange(10)[:, None], 3, priors=_priors(1))
    mu = pm.draw(model["mu"], draws=200, random_seed=9, mode="FAST_COMPILE")
    assert np.any(np.diff(mu[:, :, 0], axis=1) < 0)


@pytest.mark.parametrize(("covariance_type", "d"), [("tied", 2), ("spherical", 2), ("diag", 1)])
def test_structure_of_each_covariance_type(covariance_type, d):
    draws = prior_draws(_priors(d), 3, d, covariance_type=covariance_type, size=50, rng=3)
    cov = draws.covariances
    assert cov.shape == (50, 3, d, d)
    if covariance_type == "tied":
        assert np.all(cov == cov[:, :1])
    else:
        assert np.all(cov * (1 - np.eye(d)) == 0)
    if covariance_type == "spherical":
        assert np.allclose(cov, cov[..., :1, :1] * np.eye(d))
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_lkj_eta_one_gives_uniform_correlations_in_two_dimensions():
    """For d = 2, LKJ(1) puts a uniform distribution on the correlation in (-1, 1)."""
    chol = lkj_cholesky(np.random.default_rng(4), 1.0, 2, (5000,))
    corr = chol @ np.swapaxes(chol, -1, -2)
    assert np.allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0)
    assert stats.kstest(corr[:, 0, 1], stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_ordered_draws_are_sorted_and_jointly_permuted():
    priors = _priors(2)
    ordered = prior_draws(priors, 4, 2, covariance_type="full", size=500, rng=5)
    unordered = prior_draws(priors, 4, 2, covariance_type="full", size=500, ordered=False, rng=5)
    assert np.all(np.diff(ordered.means[..., 0], axis=1) > 0)
    # The same draws, each permuted as a whole component (weight, mean and covariance).
    for s in range(500):
        order = np.argsort(unordered.means[s, :, 0])
        assert np.array_equal(ordered.weights[s], unordered.weights[s, order])
        assert np.array_equal(ordered.means[s], unordered.means[s, order])
        assert np.array_equal(ordered.covariances[s], unordered.covariances[s, order])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_first_mean_coordinate_follows_the_order_statistics_of_the_prior(covariance_type):
    """KS of each sorted first mean coordinate against the exact order-statistic CDF.

    The j-th smallest of K i.i.d. draws with CDF F has CDF I_F(x)(j, K - j + 1), the
    regularised incomplete beta function.
    """
    K = 3
    priors = _priors(2)
    means = np.stack(
        [
            draw_prior_mixture(priors, K, 2, covariance_type=covariance_type, rng=seed).means
            for seed in np.random.SeedSequence(6).spawn(2000)
        ]
    )
    first = means[:, :, 0]
    assert np.all(np.diff(first, axis=1) > 0)
    prior = stats.norm(priors.mean_loc[0], priors.mean_scale)
    for j in range(1, K + 1):

        def cdf(x, j=j):
            return betainc(j, K - j + 1, prior.cdf(x))

        assert stats.kstest(first[:, j - 1], cdf).pvalue > 1e-3 / K
    # The second coordinate is not sorted and keeps its Normal marginal.
    rest = stats.norm(priors.mean_loc[1], priors.mean_scale)
    assert stats.kstest(means[:, :, 1].ravel()[::K], rest.cdf).pvalue > 1e-3


def test_draw_prior_mixture_is_a_valid_seeded_mixture():
    priors = _priors(2)
    a = draw_prior_mixture(priors, 3, 2, covariance_type="full", rng=7)
    b = draw_prior_mixture(priors, 3, 2, covariance_type="full", rng=np.random.default_rng(7))
    assert isinstance(a, MixtureParams)
    assert np.array_equal(a.means, b.means) and np.array_equal(a.covariances, b.covariances)
    assert a.weights.sum() == pytest.approx(1.0, abs=1e-12)
    X, _ = sample(a, 50, rng=8)
    assert X.shape == (50, 2) and np.all(np.isfinite(X))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "mean_loc, mean_scale, scale_prior are data-scaled"),
        ({"mean_loc": 0.0, "mean_scale": 1.0}, "scale_prior is data-scaled"),
        ({"mean_loc": 0.0, "scale_prior": 1.0}, "mean_scale is data-scaled"),
        ({"mean_scale": 1.0, "scale_prior": 1.0}, "mean_loc is data-scaled"),
    ],
)
def test_data_scaled_priors_are_rejected_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        draw_prior_mixture(BayesPriors(**kwargs), 2, 1, rng=0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fixed_hyperparameters({"mean_loc": 0.0}, 1), "must be a BayesPriors"),
        (lambda: fixed_hyperparameters(_priors(3), 2), "has 3 values but the data have 2"),
        (lambda: draw_prior_mixture(_priors(1), 0, 1), "n_components=0"),
        (lambda: draw_prior_mixture(_priors(1), 2, 1.5), "n_features=1.5"),
        (
            lambda: draw_prior_mixture(_priors(1), 2, 1, covariance_type="VVV"),
            "covariance_type='VVV' is not supported",
        ),
        (lambda: prior_draws(_priors(1), 2, 1, size=0), "size=0"),
    ],
)
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fixed_hyperparameters_broadcast_like_the_model():
    hyper = fixed_hyperparameters(BayesPriors(mean_loc=1.0, mean_scale=2.0, scale_prior=0.5), 3)
    assert np.array_equal(hyper["mean_loc"], [1.0, 1.0, 1.0])
    assert np.array_equal(hyper["mean_scale"], [2.0, 2.0, 2.0])
    assert np.array_equal(hyper["scale_prior"], [0.5, 0.5, 0.5])
