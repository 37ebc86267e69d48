"""GaussianMixture as an estimator: sklearn's checks, the extras, collapse handling."""

import ast
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import workbench
from workbench import GaussianMixture
from workbench.mixture import COVARIANCE_TYPES, MixtureParams, log_prob


def blobs(rng, n_per=150, d=2, centres=(-4.0, 0.0, 4.0)):
    return np.vstack([rng.normal(c, 1.0, (n_per, d)) for c in centres])


@parametrize_with_checks([GaussianMixture()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_public_names():
    assert workbench.GaussianMixture is workbench.em.GaussianMixture
    assert GaussianMixture.__name__ == "GaussianMixture"


# The private scikit-learn names the EM core may use; the estimator's docstring says why.
ALLOWED_PRIVATE_SKLEARN = {
    ("sklearn.base", "_fit_context"),
    ("sklearn.utils._param_validation", "Interval"),
    ("sklearn.utils._param_validation", "StrOptions"),
    ("sklearn.utils.validation", "_check_sample_weight"),
}


def _private_sklearn_imports(path):
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(a.name, "") for a in node.names if a.name.startswith("sklearn")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn"):
            private_module = any(part.startswith("_") for part in node.module.split("."))
            found |= {
                (node.module, alias.name)
                for alias in node.names
                if private_module or alias.name.startswith("_")
            }
    return found


def test_private_sklearn_helpers_follow_the_stated_policy():
    em_dir = Path(workbench.em.__file__).parent
    used = set().union(*(_private_sklearn_imports(p) for p in em_dir.glob("*.py")))
    assert used == ALLOWED_PRIVATE_SKLEARN
    docstring = workbench.em._estimator.__doc__
    for module, name in used:
        assert f"{module}.{name}" in docstring or (f"{module}." in docstring and name in docstring)


def test_works_in_pipeline_grid_search_and_clone():
    rng = np.random.default_rng(0)
    X = blobs(rng)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), GaussianMixture(random_state=0)),
        {"gaussianmixture__n_components": [1, 3]},
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X)
    assert search.best_params_ == {"gaussianmixture__n_components": 3}
    model = GaussianMixture(3, keep_history=True, on_collapse="reseed")
    assert clone(model).get_params() == model.get_params()


def test_not_fitted_error():
    with pytest.raises(NotFittedError):
        GaussianMixture().predict(np.zeros((3, 2)))


def test_convergence_warning_when_max_iter_too_small():
    X = blobs(np.random.default_rng(1))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    assert not model.converged_ and model.n_iter_ == 1


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_matches_scipy_mixture(covariance_type):
    rng = np.random.default_rng(2)
    X = blobs(rng, d=3)
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    params = model.to_params()
    X_new = rng.normal(0, 4, (60, 3))
    density = sum(
        w * stats.multivariate_normal(m, c).pdf(X_new)
        for w, m, c in zip(params.weights, params.means, params.covariances, strict=True)
    )
    assert_allclose(model.score_samples(X_new), np.log(density), rtol=1e-10)
    assert_allclose(model.score_samples(X_new), log_prob(X_new, params), rtol=1e-12)


def test_to_params_returns_dense_mixture_params():
    X = blobs(np.random.default_rng(3))
    model = GaussianMixture(3, covariance_type="spherical", random_state=0).fit(X)
    params = model.to_params()
    assert isinstance(params, MixtureParams)
    assert params.covariances.shape == (3, 2, 2)
    assert_allclose(params.covariances[:, 0, 0], model.covariances_)
    assert_allclose(params.covariances[:, 0, 1], 0.0)


def test_max_iter_zero_only_initialises():
    X = blobs(np.random.default_rng(4))
    model = GaussianMixture(3, max_iter=0, random_state=0).fit(X)
    assert model.n_iter_ == 0 and model.lower_bounds_ == [] and not model.converged_
    assert model.means_.shape == (3, 2)


def test_warm_start_continues_from_previous_fit():
    X = blobs(np.random.default_rng(5))
    model = GaussianMixture(3, warm_start=True, max_iter=2, tol=0.0, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    first_bounds = list(model.lower_bounds_)
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    one_go = GaussianMixture(3, max_iter=4, tol=0.0, random_state=0)
    with pytest.warns(ConvergenceWarning):
        one_go.fit(X)
    assert_allclose(first_bounds + model.lower_bounds_, one_go.lower_bounds_, rtol=1e-12)


def test_n_init_keeps_the_best_start():
    X = blobs(np.random.default_rng(6))
    kwargs = dict(n_components=3, init_params="random", random_state=0, max_iter=3, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        first = GaussianMixture(**kwargs).fit(X)
    with pytest.warns(ConvergenceWarning):
        many = GaussianMixture(**kwargs, n_init=6).fit(X)
    # The first of the six starts is `first` (same random stream), so the best is no worse.
    assert many.lower_bound_ > first.lower_bound_
    assert many.lower_bound_ == many.lower_bounds_[-1]


def test_verbose_output_follows_sklearn(capsys):
    X = blobs(np.random.default_rng(15))
    GaussianMixture(3, verbose=2, verbose_interval=1, random_state=0, n_init=2).fit(X)
    out = capsys.readouterr().out
    assert out.count("Initialization 0") == 1 and out.count("Initialization 1") == 1
    assert "  Iteration 1\t time lapse" in out and "ll change" in out
    assert out.count("Initialization converged. time lapse") == 2


# ---------------------------------------------------------------- history_


def test_history_off_by_default():
    model = GaussianMixture(3, random_state=0).fit(blobs(np.random.default_rng(7)))
    assert model.history_ is None


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_history_records_every_iteration(covariance_type):
    X = blobs(np.random.default_rng(8))
    kwargs = dict(n_components=3, covariance_type=covariance_type, random_state=0)
    plain = GaussianMixture(**kwargs).fit(X)
    tracked = GaussianMixture(**kwargs, keep_history=True).fit(X)
    history = tracked.history_
    t = tracked.n_iter_
    assert history.weights.shape == (t + 1, 3)
    assert history.means.shape == (t + 1, 3, 2)
    assert history.covariances.shape == (t + 1, *tracked.covariances_.shape)
    assert_allclose(history.lower_bound[:-1], tracked.lower_bounds_)
    assert_allclose(history.lower_bound[-1], tracked.score(X), rtol=1e-12)
    assert_allclose(history.means[-1], tracked.means_)
    assert_allclose(history.covariances[-1], tracked.covariances_)
    # Entry 0 is the initialisation.
    start = GaussianMixture(**kwargs, max_iter=0).fit(X)
    assert_allclose(history.means[0], start.means_)
    assert_allclose(history.weights[0], start.weights_)
    # Entry 1 holds the parameters after one iteration.
    with pytest.warns(ConvergenceWarning):
        one = GaussianMixture(**kwargs, max_iter=1).fit(X)
    assert_allclose(history.means[1], one.means_)
    assert_allclose(history.covariances[1], one.covariances_)
    # Recording does not change the fit.
    assert_allclose(tracked.means_, plain.means_)
    assert tracked.lower_bounds_ == plain.lower_bounds_


# ----------------------------------------------------------- sample_weight


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_sample_weights_equal_repeated_rows(covariance_type):
    rng = np.random.default_rng(9)
    X = blobs(rng, n_per=60)
    counts = rng.integers(0, 4, len(X))
    init = dict(
        weights_init=np.full(3, 1 / 3),
        means_init=np.array([[-3.0, -3.0], [0.5, 0.0], [3.0, 3.0]]),
        precisions_init={
            "full": np.stack([np.eye(2)] * 3),
            "tied": np.eye(2),
            "diag": np.ones((3, 2)),
            "spherical": np.ones(3),
        }[covariance_type],
    )
    kwargs = dict(n_components=3, covariance_type=covariance_type, tol=1e-8, **init)
    weighted = GaussianMixture(**kwargs).fit(X, sample_weight=counts)
    repeated = GaussianMixture(**kwargs).fit(np.repeat(X, counts, axis=0))
    assert weighted.n_iter_ == repeated.n_iter_
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)
    for name in ("weights_", "means_", "covariances_"):
        assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-8)


def test_sample_weight_changes_the_fit_and_kmeans_init_uses_it():
    rng = np.random.default_rng(10)
    X = blobs(rng)
    sw = np.where(X[:, 0] > 2, 10.0, 1.0)
    plain = GaussianMixture(3, random_state=0).fit(X)
    weighted = GaussianMixture(3, random_state=0).fit(X, sample_weight=sw)
    heavy = np.argmax(weighted.means_[:, 0])
    assert weighted.weights_[heavy] > plain.weights_[np.argmax(plain.means_[:, 0])] + 0.3


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_zero_weight_rows_never_seed_or_move_a_component(init_params):
    rng = np.random.default_rng(11)
    X = blobs(rng, n_per=50)
    outliers = np.full((20, 2), 1e3)
    sw = np.r_[np.ones(len(X)), np.zeros(20)]
    model = GaussianMixture(3, init_params=init_params, random_state=0)
    model.fit(np.vstack([X, outliers]), sample_weight=sw)
    assert np.all(np.abs(model.means_) < 10)


def test_bad_sample_weight_raises():
    X = blobs(np.random.default_rng(12), n_per=10)
    model = GaussianMixture(2)
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        model.fit(X, sample_weight=np.r_[-1.0, np.ones(len(X) - 1)])
    with pytest.raises(ValueError, match="Input sample_weight contains NaN"):
        model.fit(X, sample_weight=np.r_[np.nan, np.ones(len(X) - 1)])
    with pytest.raises(ValueError, match="Input sample_weight contains infinity"):
        model.fit(X, sample_weight=np.r_[np.inf, np.ones(len(X) - 1)])
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(30,\)"):
        model.fit(X, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="at least one non-zero"):
        model.fit(X, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="sample_weight has 1 positive entries, but n_compon"):
        model.fit(X, sample_weight=np.r_[1.0, np.zeros(len(X) - 1)])


# -------------------------------------------------------------- collapses


def collapsing_data():
    """A cloud plus five identical far rows that the third component will own alone."""
    rng = np.random.default_rng(13)
    X = np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(6, 1, (200, 2)), np.full((5, 2), 30.0)])
    init = dict(
        weights_init=np.array([0.45, 0.45, 0.1]),
        means_init=np.array([[0.0, 0.0], [6.0, 6.0], [30.0, 30.0]]),
        precisions_init=np.stack([np.eye(2)] * 3),
    )
    return X, init


def test_collapse_raises_a_clear_error_by_default():
    X, init = collapsing_data()
    with pytest.raises(ValueError, match=r"Component 2 collapsed at EM iteration 1.*reg_covar=0"):
        GaussianMixture(3, reg_covar=0.0, **init).fit(X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_collapse_error_starts_with_sklearns_own_message(dtype):
    # Code written against sklearn matches its message; ours must start with it verbatim
    # (for float32 data sklearn appends a sentence, and so do we), then say which component.
    X, init = collapsing_data()
    X = X.astype(dtype)
    with pytest.raises(ValueError) as theirs:
        SklearnGaussianMixture(3, reg_covar=0.0, **init).fit(X)
    assert "ill-defined empirical covariance" in str(theirs.value)  # sklearn's collapse error
    with pytest.raises(ValueError) as ours:
        GaussianMixture(3, reg_covar=0.0, **init).fit(X)
    message = str(ours.value)
    assert message.startswith(str(theirs.value) + " Component 2 collapsed at EM iteration 1")
    assert "on_collapse='reseed'" in message


def test_tied_collapse_error_starts_with_sklearns_message():
    X = np.vstack([np.zeros((10, 2)), np.ones((10, 2))])
    X[:, 1] = X[:, 0]
    with pytest.raises(ValueError) as ours:
        GaussianMixture(2, covariance_type="tied", reg_covar=0.0).fit(X)
    assert str(ours.value).startswith(
        "Fitting the mixture model failed because some components have ill-defined empirical "
        "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
        "the number of components, increase reg_covar, or scale the input data. "
        "The tied covariance collapsed"
    )


def test_collapse_reseed_continues_without_nan():
    X, init = collapsing_data()
    model = GaussianMixture(3, reg_covar=0.0, on_collapse="reseed", max_iter=200, **init)
    model.fit(X)  # pytest turns any warning, ConvergenceWarning included, into a failure
    assert model.n_reseeds_ >= 1
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert np.all(np.isfinite(getattr(model, name))), name
    assert np.all(np.isfinite(model.score_samples(X)))
    assert np.all(np.isfinite(model.lower_bounds_))


def test_tied_collapse_always_raises():
    X = np.vstack([np.zeros((10, 2)), np.ones((10, 2))])  # zero within-cluster scatter
    X[:, 1] = X[:, 0]  # and all rows on a line
    model = GaussianMixture(2, covariance_type="tied", reg_covar=0.0, on_collapse="reseed")
    with pytest.raises(ValueError, match="The tied covariance collapsed"):
        model.fit(X)


def test_collapse_at_initialisation_raise_and_reseed():
    X, _ = collapsing_data()  # k-means puts the five identical rows in a cluster of their own
    with pytest.raises(ValueError, match=r"Component \d collapsed at initialisation"):
        GaussianMixture(3, reg_covar=0.0, random_state=0).fit(X)
    model = GaussianMixture(3, reg_covar=0.0, random_state=0, on_collapse="reseed").fit(X)
    assert model.n_reseeds_ >= 1
    assert np.all(np.isfinite(model.covariances_)) and np.all(np.isfinite(model.lower_bounds_))


def test_reseed_cannot_help_when_every_component_collapses():
    X = np.random.default_rng(16).normal(size=(30, 2))
    model = GaussianMixture(
        3, init_params="random_from_data", reg_covar=0.0, on_collapse="reseed", random_state=0
    )
    with pytest.raises(ValueError, match="every component collapsed"):
        model.fit(X)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_collapse_detection_does_not_depend_on_units(scale):
    X, init = collapsing_data()
    init = dict(init, means_init=init["means_init"] * scale)
    init["precisions_init"] = init["precisions_init"] / scale**2
    with pytest.raises(ValueError, match="Component 2 collapsed at EM iteration 1"):
        GaussianMixture(3, reg_covar=0.0, **init).fit(X * scale)


def test_float32_data_far_from_the_origin_is_not_a_collapse():
    rng = np.random.default_rng(17)
    X = (blobs(rng) + 1000.0).astype(np.float32)
    model = GaussianMixture(3, random_state=0).fit(X)
    assert model.n_reseeds_ == 0
    assert_allclose(np.sort(model.covariances_[:, 0, 0]), 1.0, rtol=0.3)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_unit_sample_weights_change_nothing(init_params):
    X = blobs(np.random.default_rng(18))
    kwargs = dict(n_components=3, init_params=init_params, random_state=0)
    plain = GaussianMixture(**kwargs).fit(X)
    ones = GaussianMixture(**kwargs).fit(X, sample_weight=np.ones(len(X)))
    assert plain.lower_bounds_ == ones.lower_bounds_
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(ones, name))
