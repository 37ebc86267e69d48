"""The PyMC mixture model: priors, validation and the likelihood against scipy and mixture.py."""

import numpy as np
import pytest
from pymc.initial_point import make_initial_point_fn
from scipy import stats
from scipy.special import logsumexp

from workbench.bayes import BayesPriors, build_model, fit_bayes
from workbench.bayes.model import check_data, initial_values, spread_start
from workbench.mixture import MixtureParams, log_prob

# PyTensor's C backend warns once that it found no BLAS; it is informational here.
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")

RNG = np.random.default_rng(7)
X2 = RNG.normal(size=(60, 2)) * [1.0, 2.0] + [0.5, -1.0]
PARAMS2 = MixtureParams(
    np.array([0.2, 0.5, 0.3]),
    np.array([[1.0, -2.0], [-1.5, 0.5], [0.2, 1.0]]),
    np.array([[[1.0, 0.4], [0.4, 2.0]], [[0.5, -0.1], [-0.1, 0.3]], [[2.0, 0.0], [0.0, 1.5]]]),
)
TWO = MixtureParams(np.array([0.5, 0.5]), PARAMS2.means[:2], PARAMS2.covariances[:2])


def scipy_loglik(X: np.ndarray, params: MixtureParams) -> float:
    dens = sum(
        w * stats.multivariate_normal(m, c).pdf(X)
        for w, m, c in zip(params.weights, params.means, params.covariances, strict=True)
    )
    return float(np.sum(np.log(dens)))


def project(params: MixtureParams, covariance_type: str) -> MixtureParams:
    """The member of ``covariance_type``'s family that ``initial_values`` maps ``params`` to."""
    cov = params.covariances
    d = params.n_features
    if covariance_type == "diag":
        cov = np.stack([np.diag(np.diag(c)) for c in cov])
    elif covariance_type == "spherical":
        cov = np.stack([np.mean(np.diag(c)) * np.eye(d) for c in cov])
    elif covariance_type == "tied":
        cov = np.broadcast_to(np.einsum("k,kij->ij", params.weights, cov), cov.shape)
    return MixtureParams(params.weights, params.means, cov)


def observed_logp(X: np.ndarray, params: MixtureParams, covariance_type: str) -> float:
    """The model's observed-data log-likelihood term at ``params`` (no priors, no Jacobians)."""
    model = build_model(X, params.n_components, covariance_type=covariance_type)
    values = initial_values(model, params, covariance_type)
    point = make_initial_point_fn(model=model, overrides=values, return_transformed=True)(0)
    return float(model.compile_logp(vars=[model["x"]], jacobian=False)(point))


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_model_loglik_matches_mixture_and_scipy(covariance_type):
    params = project(PARAMS2, covariance_type)
    got = observed_logp(X2, params, covariance_type)
    assert got == pytest.approx(float(np.sum(log_prob(X2, params))), rel=1e-10)
    assert got == pytest.approx(scipy_loglik(X2, params), rel=1e-10)


def test_model_loglik_one_dimensional():
    X = RNG.normal(size=(40, 1)) * 3
    params = MixtureParams(
        np.array([0.6, 0.4]), np.array([[2.0], [-1.0]]), np.array([[[0.5]], [[4.0]]])
    )
    expected = np.sum(
        logsumexp(
            np.log(params.weights) + stats.norm(params.means[:, 0], [0.5**0.5, 2.0]).logpdf(X),
            axis=1,
        )
    )
    assert observed_logp(X, params, "full") == pytest.approx(expected, rel=1e-10)


def test_model_has_named_dims_and_ordered_first_mean():
    model = build_model(X2, 3)
    assert model.coords["component"] == (0, 1, 2)
    assert model.named_vars_to_dims["mu"] == ("component", "feature")
    assert model.named_vars_to_dims["cov"] == ("component", "feature", "feature_bis")
    assert type(model.rvs_to_transforms[model["mu_first"]]).__name__ == "Ordered"
    assert {rv.name for rv in model.free_RVs} == {
        "w",
        "mu_first",
        "mu_rest",
        *(f"chol_{k}" for k in range(3)),
    }


def test_initial_values_sort_components_and_separate_ties():
    tied_first = MixtureParams(
        np.array([0.5, 0.3, 0.2]),
        np.array([[1.0, 0.0], [1.0, 3.0], [-2.0, 1.0]]),
        np.tile(np.eye(2), (3, 1, 1)),
    )
    values = initial_values(build_model(X2, 3), tied_first, "full")
    assert np.all(np.diff(values["mu_first"]) > 0)
    np.testing.assert_allclose(values["mu_rest"][:, 0], [1.0, 0.0, 3.0])
    np.testing.assert_allclose(values["w"], [0.2, 0.5, 0.3])


def test_spread_start_is_sorted_and_valid():
    start = spread_start(X2, 4)
    assert np.all(np.diff(start.means[:, 0]) > 0)
    assert np.all(np.linalg.eigvalsh(start.covariances) > 0)
    np.testing.assert_allclose(start.weights, 0.25)


def test_priors_defaults_scale_with_data():
    hyper = BayesPriors().resolve(X2)
    np.testing.assert_allclose(hyper["mean_loc"], X2.mean(axis=0))
    np.testing.assert_allclose(hyper["mean_scale"], 2 * X2.std(axis=0))
    np.testing.assert_allclose(hyper["scale_prior"], X2.std(axis=0))
    custom = BayesPriors(mean_loc=(1.0, 2.0), mean_scale=3.0, scale_prior=0.5).resolve(X2)
    np.testing.assert_allclose(custom["mean_loc"], [1.0, 2.0])
    np.testing.assert_allclose(custom["mean_scale"], [3.0, 3.0])
    np.testing.assert_allclose(custom["scale_prior"], [0.5, 0.5])


def test_priors_from_dict_round_trip_and_errors():
    priors = BayesPriors.from_dict(
        {"dirichlet_concentration": 0.5, "mean_loc": [0, 1], "lkj_eta": 4}
    )
    assert priors == BayesPriors(dirichlet_concentration=0.5, mean_loc=(0.0, 1.0), lkj_eta=4.0)
    with pytest.raises(
        ValueError, match=r"unknown prior 'eta'.*allowed keys: dirichlet_concentration"
    ):
        BayesPriors.from_dict({"eta": 2})
    with pytest.raises(ValueError, match=r"lkj_eta=-1 is not allowed; use a finite number > 0"):
        BayesPriors.from_dict({"lkj_eta": -1})
    with pytest.raises(ValueError, match=r"scale_prior='wide'"):
        BayesPriors.from_dict({"scale_prior": "wide"})
    with pytest.raises(ValueError, match=r"mean_loc=\[0, nan\]"):
        BayesPriors.from_dict({"mean_loc": [0, float("nan")]})
    with pytest.raises(
        ValueError, match=r"mean_loc=\(1.0, 2.0, 3.0\) has 3 values but the data have 2"
    ):
        BayesPriors(mean_loc=(1.0, 2.0, 3.0)).resolve(X2)


@pytest.mark.parametrize(
    ("X", "k", "match"),
    [
        (np.zeros(10), 2, r"shape \(n_samples, n_features\), got shape \(10,\)"),
        (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 0.0]]), 2, "NaN or infinite"),
        (X2, 0, "n_components=0 is not allowed"),
        (X2, 2.5, "n_components=2.5 is not allowed"),
        (X2[:2], 3, "X has 2 samples but n_components=3"),
        (np.column_stack([X2[:, 0], np.ones(60)]), 2, "feature 1 of X is constant"),
    ],
)
def test_check_data_errors(X, k, match):
    with pytest.raises(ValueError, match=match):
        check_data(X, k)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "hmc"}, "sampler='hmc' is not allowed; use one of 'auto', 'nutpie'"),
        ({"covariance_type": "banded"}, "covariance_type='banded' is not supported"),
        ({"chains": 0}, "chains=0 is not allowed; use an integer >= 1"),
        ({"draws": 10.0}, "draws=10.0 is not allowed"),
        ({"tune": -1}, "tune=-1 is not allowed; use an integer >= 0"),
        ({"sampler": "advi", "tune": 0}, "tune=0 is not allowed; use an integer >= 1"),
        ({"priors": {"lkj": 1}}, "unknown prior 'lkj'"),
        ({"priors": 3}, "priors=3 is not allowed"),
        ({"init": TWO}, "init has 2 components and 2 features but the model has 3"),
        ({"reference": "em"}, "reference must be a MixtureParams or None, got str"),
    ],
)
def test_fit_bayes_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_bayes(X2, 3, **kwargs)
