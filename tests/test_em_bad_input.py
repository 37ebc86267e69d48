"""Every bad input raises ValueError naming the value; sklearn's message where it checks too."""

import re

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.utils._param_validation import InvalidParameterError

from workbench import GaussianMixture

X_GOOD = np.random.default_rng(0).normal(size=(40, 2))


def message(cls, X, method="fit", **params):
    with pytest.raises(ValueError) as info:
        getattr(cls(**params), method)(X)
    return str(info.value)


def same_message_as_sklearn(X, **params):
    ours = message(GaussianMixture, X, **params)
    assert ours == message(SklearnGaussianMixture, X, **params)
    return ours


def test_nan_in_X():
    X = X_GOOD.copy()
    X[3, 1] = np.nan
    assert "Input X contains NaN" in same_message_as_sklearn(X)


def test_inf_in_X():
    X = X_GOOD.copy()
    X[3, 1] = np.inf
    assert "Input X contains infinity" in same_message_as_sklearn(X)


def test_one_dimensional_X():
    assert "Expected 2D array, got 1D array" in same_message_as_sklearn(X_GOOD[:, 0])


def test_three_dimensional_X():
    assert "Found array with dim 3" in same_message_as_sklearn(X_GOOD.reshape(10, 4, 2))


def test_fewer_samples_than_components():
    text = same_message_as_sklearn(X_GOOD[:3], n_components=5)
    assert text == ("Expected n_samples >= n_components but got n_components = 5, n_samples = 3")


def test_single_sample():
    assert "minimum of 2 is required" in same_message_as_sklearn(X_GOOD[:1])


def test_predict_with_wrong_number_of_features():
    model = GaussianMixture(2, random_state=0).fit(X_GOOD)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        model.predict(np.zeros((4, 3)))


def test_weights_init_wrong_shape():
    text = same_message_as_sklearn(X_GOOD, n_components=2, weights_init=[0.2, 0.3, 0.5])
    assert text == "The parameter 'weights' should have the shape of (2,), but got (3,)"


def test_weights_init_not_summing_to_one():
    text = same_message_as_sklearn(X_GOOD, n_components=2, weights_init=[0.2, 0.3])
    assert text == "The parameter 'weights' should be normalized, but got sum(weights) = 0.50000"


def test_weights_init_out_of_range():
    # scikit-learn 1.9 prints min and max swapped in this message; ours prints them right.
    text = message(GaussianMixture, X_GOOD, n_components=2, weights_init=[1.5, -0.5])
    assert text == (
        "The parameter 'weights' should be in the range [0, 1], "
        "but got max value 1.50000, min value -0.50000"
    )


def test_means_init_wrong_shape():
    text = same_message_as_sklearn(X_GOOD, n_components=2, means_init=np.zeros((2, 3)))
    assert text == "The parameter 'means' should have the shape of (2, 2), but got (2, 3)"


@pytest.mark.parametrize(
    ("covariance_type", "precisions", "expected"),
    [
        ("full", np.ones((2, 3, 3)), "(2, 2, 2), but got (2, 3, 3)"),
        ("tied", np.ones((3, 3)), "(2, 2), but got (3, 3)"),
        ("diag", np.ones((3, 2)), "(2, 2), but got (3, 2)"),
        ("spherical", np.ones(3), "(2,), but got (3,)"),
    ],
)
def test_precisions_init_wrong_shape(covariance_type, precisions, expected):
    text = same_message_as_sklearn(
        X_GOOD, n_components=2, covariance_type=covariance_type, precisions_init=precisions
    )
    assert (
        text == f"The parameter '{covariance_type} precision' should have the shape of {expected}"
    )


@pytest.mark.parametrize(
    ("covariance_type", "precisions", "expected"),
    [
        ("full", np.stack([np.eye(2), -np.eye(2)]), "should be symmetric, positive-definite"),
        (
            "full",
            np.stack([np.eye(2), [[1.0, 2.0], [0.0, 1.0]]]),
            "should be symmetric, positive-definite",
        ),
        ("tied", np.array([[1.0, 2.0], [2.0, 1.0]]), "should be symmetric, positive-definite"),
        ("diag", np.array([[1.0, 1.0], [1.0, 0.0]]), "should be positive"),
        ("spherical", np.array([1.0, -2.0]), "should be positive"),
    ],
)
def test_precisions_init_not_positive_definite(covariance_type, precisions, expected):
    text = same_message_as_sklearn(
        X_GOOD, n_components=2, covariance_type=covariance_type, precisions_init=precisions
    )
    assert text == f"'{covariance_type} precision' {expected}"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"n_components": 0}, "'n_components' parameter of GaussianMixture must be an int"),
        ({"covariance_type": "banana"}, "'covariance_type' parameter of GaussianMixture must be"),
        ({"tol": -1.0}, "'tol' parameter of GaussianMixture must be a float in the range"),
        ({"reg_covar": -1e-6}, "'reg_covar' parameter of GaussianMixture must be a float"),
        ({"max_iter": -1}, "'max_iter' parameter of GaussianMixture must be an int"),
        ({"n_init": 0}, "'n_init' parameter of GaussianMixture must be an int"),
        ({"init_params": "kmeans+++"}, "'init_params' parameter of GaussianMixture must be"),
        ({"verbose_interval": 0}, "'verbose_interval' parameter of GaussianMixture must be"),
    ],
)
def test_invalid_parameter_value_same_as_sklearn(params, expected):
    with pytest.raises(InvalidParameterError):
        GaussianMixture(**params).fit(X_GOOD)
    ours = message(GaussianMixture, X_GOOD, **params)
    # Allowed string options are printed from a set, in hash order: compare them sorted.
    assert sorted_options(ours) == sorted_options(message(SklearnGaussianMixture, X_GOOD, **params))
    assert expected in ours and "Got" in ours


def sorted_options(text):
    return re.sub(r"\{([^}]*)\}", lambda m: "{" + ", ".join(sorted(m[1].split(", "))) + "}", text)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"on_collapse": "ignore"}, "'on_collapse' parameter of GaussianMixture must be a str"),
        ({"keep_history": "yes"}, "'keep_history' parameter of GaussianMixture must be an ins"),
    ],
)
def test_invalid_value_of_our_own_parameters(params, expected):
    with pytest.raises(InvalidParameterError, match=expected):
        GaussianMixture(**params).fit(X_GOOD)


def test_sample_with_no_samples():
    model = GaussianMixture(2, random_state=0).fit(X_GOOD)
    with pytest.raises(
        ValueError, match="Invalid value for 'n_samples': 0 . The sampling requires"
    ):
        model.sample(0)
