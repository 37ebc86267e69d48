"""BIC, ICL and AIC of a fitted mixture against scikit-learn and an independent ICL term."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from workbench.em import GaussianMixture
from workbench.em.criteria import InformationCriteria, information_criteria
from workbench.mixture import COVARIANCE_TYPES, MixtureParams, n_parameters, sample

TRUTH = MixtureParams(
    weights=np.array([0.5, 0.3, 0.2]),
    means=np.array([[-3.0, 0.0], [2.0, 1.0], [0.0, 4.0]]),
    covariances=np.array([[[1.0, 0.3], [0.3, 0.8]], np.eye(2), [[0.6, -0.2], [-0.2, 1.5]]]),
)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return sample(TRUTH, 400, rng=7)[0]


def _sklearn_with_our_parameters(ours: GaussianMixture) -> SkGaussianMixture:
    """A scikit-learn estimator whose fitted attributes are copied from ours."""
    theirs = SkGaussianMixture(ours.n_components, covariance_type=ours.covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        setattr(theirs, name, getattr(ours, name).copy())
    theirs.converged_, theirs.n_iter_, theirs.lower_bound_ = True, ours.n_iter_, ours.lower_bound_
    theirs.n_features_in_ = ours.n_features_in_
    return theirs


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bic_and_aic_equal_sklearn_for_the_same_parameters(data, covariance_type):
    ours = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(data)
    theirs = _sklearn_with_our_parameters(ours)
    ic = information_criteria(ours, data)
    np.testing.assert_allclose(ic.bic, theirs.bic(data), rtol=1e-10)
    np.testing.assert_allclose(ic.aic, theirs.aic(data), rtol=1e-10)
    # mclust's convention is the negative, larger is better.
    assert ic.bic_mclust == -ic.bic
    assert ic.icl_mclust == -ic.icl
    assert ic.n_parameters == theirs._n_parameters() == n_parameters(3, 2, covariance_type)
    np.testing.assert_allclose(ic.loglik, theirs.score(data) * len(data), rtol=1e-10)


def _independent_map_term(X: np.ndarray, params: MixtureParams) -> float:
    """sum_i sum_k C_ik log z_ik with densities from scipy and C the one-hot MAP."""
    dens = np.column_stack(
        [
            w * stats.multivariate_normal(m, c).pdf(X)
            for w, m, c in zip(params.weights, params.means, params.covariances, strict=True)
        ]
    )
    z = dens / dens.sum(axis=1, keepdims=True)
    C = np.zeros_like(z)
    C[np.arange(len(X)), np.argmax(z, axis=1)] = 1.0
    return float(np.sum(C * np.log(z)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_icl_is_bic_plus_twice_the_map_term(data, covariance_type):
    ours = GaussianMixture(3, covariance_type=covariance_type, random_state=1).fit(data)
    term = _independent_map_term(data, ours.to_params())
    ic = information_criteria(ours, data)
    assert term < -1.0  # the components overlap a little, so the term is not trivially 0
    # mclust: ICL = BIC + 2 sum C log z (larger is better); ours is its negative.
    np.testing.assert_allclose(ic.icl_mclust, ic.bic_mclust + 2.0 * term, rtol=1e-10)
    np.testing.assert_allclose(ic.icl, ic.bic - 2.0 * term, rtol=1e-10)
    np.testing.assert_allclose(ic.map_log_responsibility, term, rtol=1e-9)


def test_params_input_gives_the_same_numbers_as_the_estimator(data):
    ours = GaussianMixture(2, covariance_type="diag", random_state=0).fit(data)
    from_model = information_criteria(ours, data)
    from_params = information_criteria(ours.to_params(), data, covariance_type="diag")
    assert isinstance(from_params, InformationCriteria)
    np.testing.assert_allclose(np.array(from_params), np.array(from_model), rtol=1e-12)


def test_one_component_has_no_entropy_term(data):
    ic = information_criteria(GaussianMixture(1).fit(data), data)
    assert ic.map_log_responsibility == 0.0
    assert ic.icl == ic.bic


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"covariance_type": None}, "covariance_type is required"),
        ({"covariance_type": "VVV"}, "'VVV' is not supported"),
    ],
)
def test_params_need_a_valid_covariance_type(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        information_criteria(TRUTH, data, **kwargs)


def test_bad_inputs_name_the_problem(data):
    fitted = GaussianMixture(2, random_state=0).fit(data)
    with pytest.raises(ValueError, match="contradicts the estimator's 'full'"):
        information_criteria(fitted, data, covariance_type="diag")
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\), got shape \(400, 1\)"):
        information_criteria(fitted, data[:, :1])
    bad = data.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        information_criteria(fitted, bad)
    with pytest.raises(ValueError, match="got dict"):
        information_criteria({}, data)
