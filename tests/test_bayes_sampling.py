"""fit_bayes end to end: recovery, diagnostics, the compiled-model cache, ADVI and failures.

Compilation dominates the cost (nutpie's numba model takes 30-100 s cold), so most tests
here share two data shapes: a 1-D, K=2, n=300 mixture fitted by nutpie (the 'auto'
sampler) and a 2-D, K=2, n=300 full-covariance mixture fitted by PyMC's NUTS. The tied,
diag and spherical models get one recovery test each.
"""

import time

import numpy as np
import pytest
import xarray as xr

from workbench.align import align_to_reference
from workbench.bayes import BayesFit, SamplingError, fit_bayes
from workbench.bayes.diagnostics import component_parameters, convergence
from workbench.em import GaussianMixture
from workbench.mixture import MixtureParams, log_prob, sample

pytestmark = [
    pytest.mark.slow,
    # PyTensor's C backend warns once that it found no BLAS; it is informational here.
    pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning"),
]

TRUTH_1D = MixtureParams(
    np.array([0.4, 0.6]), np.array([[-3.0], [2.0]]), np.array([[[1.0]], [[0.5]]])
)
TRUTH_2D = MixtureParams(
    np.array([0.45, 0.55]),
    np.array([[-3.0, 1.0], [2.0, -1.0]]),
    np.array([[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]]),
)
N = 300
SETTINGS = {"chains": 4, "draws": 500, "tune": 300}


def coverage(fit: BayesFit, truth: MixtureParams, prob: float) -> np.ndarray:
    """For every free parameter, whether its central ``prob`` interval contains the truth."""
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    rows, cols = np.tril_indices(truth.n_features)
    out = []
    for draws, value in (
        (fit.weights, truth.weights),
        (fit.means, truth.means),
        (fit.covariances[..., rows, cols], truth.covariances[..., rows, cols]),
    ):
        low, high = np.quantile(draws.reshape(-1, *draws.shape[2:]), [lo, hi], axis=0)
        out.append(np.ravel((low <= value) & (value <= high)))
    return np.concatenate(out)


def assert_recovers(fit: BayesFit, truth: MixtureParams) -> None:
    """94% intervals cover the truth for nearly all parameters, 99.9% intervals for all.

    With P parameters, all P 94% intervals cover the truth only with probability about
    0.94**P (0.48 for the 12 of the 2-D fit), so requiring that would test luck; a wrong
    model (a transposed covariance, a swapped label) misses the 99.9% intervals.
    """
    covered = coverage(fit, truth, 0.94)
    assert covered.mean() >= 0.8, covered
    assert coverage(fit, truth, 0.999).all()


@pytest.fixture(scope="module")
def data_1d():
    return sample(TRUTH_1D, N, 11)[0]


@pytest.fixture(scope="module")
def fit_1d(data_1d):
    return fit_bayes(data_1d, 2, random_seed=1, **SETTINGS)


@pytest.fixture(scope="module")
def fit_2d():
    X = sample(TRUTH_2D, N, 12)[0]
    em = GaussianMixture(2, random_state=0).fit(X).to_params()
    return X, em, fit_bayes(X, 2, sampler="pymc", init=em, reference=em, random_seed=2, **SETTINGS)


def test_1d_intervals_cover_truth_and_chains_converge(fit_1d):
    assert_recovers(fit_1d, TRUTH_1D)
    diag = fit_1d.diagnostics
    assert diag["sampler"] == "nutpie"
    assert diag["max_r_hat"] < 1.01
    assert diag["min_ess_bulk"] > 100
    assert not diag["label_switching"]
    assert diag["relabel_method"] == "stephens"
    assert diag["started_at_em"] is False


def test_2d_full_intervals_cover_truth_from_em_start(fit_2d):
    _, _, fit = fit_2d
    assert_recovers(fit, TRUTH_2D)
    diag = fit.diagnostics
    assert (diag["sampler"], diag["relabel_method"], diag["started_at_em"]) == (
        "pymc",
        "reference",
        True,
    )
    assert diag["max_r_hat"] < 1.01
    assert not diag["label_switching"]


def test_2d_draws_are_relabelled_to_the_reference(fit_2d):
    _, em, fit = fit_2d
    order = np.argsort(em.means[:, 0])
    # The ordered transform sorts raw draws on the first coordinate; relabelling to the
    # EM reference must put them back in EM's component order.
    np.testing.assert_allclose(fit.posterior_mean().means, em.means, atol=0.3)
    raw = fit.idata["posterior"]["mu"].values
    np.testing.assert_array_equal(raw[..., np.argsort(order), :], fit.means)


def test_result_holds_raw_draws_stats_and_model_loglik(fit_1d, data_1d):
    tree = fit_1d.idata
    assert {
        "posterior",
        "posterior_relabelled",
        "sample_stats",
        "observed_data",
        "log_likelihood",
    } <= set(tree.children)
    np.testing.assert_array_equal(tree["observed_data"]["x"].values, data_1d)
    assert fit_1d.weights.shape == (4, 500, 2)
    assert fit_1d.means.shape == (4, 500, 2, 1)
    assert fit_1d.covariances.shape == (4, 500, 2, 1, 1)
    np.testing.assert_array_equal(tree["posterior_relabelled"]["mu"].values, fit_1d.means)
    post = tree["posterior"]
    for chain, draw in [(0, 0), (1, 123), (3, 499)]:
        params = MixtureParams(
            post["w"].values[chain, draw],
            post["mu"].values[chain, draw],
            post["cov"].values[chain, draw],
        )
        np.testing.assert_allclose(
            tree["log_likelihood"]["x"].values[chain, draw], log_prob(data_1d, params), rtol=1e-9
        )
    stats = tree["sample_stats"]
    assert fit_1d.diagnostics["n_divergences"] == int(stats["diverging"].values.sum())
    assert fit_1d.diagnostics["n_max_treedepth"] == int(stats["maxdepth_reached"].values.sum())
    weights, means, covs = fit_1d.flat_draws()
    assert (
        weights.shape == (2000, 2) and means.shape == (2000, 2, 1) and covs.shape == (2000, 2, 1, 1)
    )
    np.testing.assert_allclose(fit_1d.posterior_mean().means, means.mean(axis=0))


def test_second_fit_reuses_compiled_model_on_new_data(fit_1d):
    shifted = MixtureParams(TRUTH_1D.weights, TRUTH_1D.means + 5.0, TRUTH_1D.covariances)
    X = sample(shifted, N, 13)[0]
    start = time.perf_counter()
    fit = fit_bayes(X, 2, random_seed=3, **SETTINGS)
    wall = time.perf_counter() - start
    assert fit.diagnostics["model_reused"] is True
    assert fit.diagnostics["compile_seconds"] == 0.0
    assert wall < 60  # sampling only; compiling this model takes far longer cold
    # The data really were swapped in the compiled model: the posterior follows them.
    assert_recovers(fit, shifted)


def test_recorded_diagnostics_are_the_draws_own(data_1d):
    # A deliberately short run: whatever r_hat it gets is recorded, never hidden.
    fit = fit_bayes(data_1d, 2, chains=2, draws=20, tune=5, random_seed=4)
    params = component_parameters(fit.weights, fit.means, fit.covariances, "full")
    expected = convergence(params)
    assert fit.diagnostics["max_r_hat"] == pytest.approx(expected["max_r_hat"])
    assert fit.diagnostics["min_ess_bulk"] == pytest.approx(expected["min_ess_bulk"])
    assert np.isfinite(fit.diagnostics["max_r_hat"])


def test_advi_from_em_returns_draws_in_the_same_shape(data_1d):
    em = GaussianMixture(2, random_state=0).fit(data_1d).to_params()
    fit = fit_bayes(
        data_1d,
        2,
        sampler="advi",
        chains=1,
        draws=400,
        tune=10000,
        init=em,
        reference=em,
        random_seed=5,
    )
    assert fit.weights.shape == (1, 400, 2)
    diag = fit.diagnostics
    assert np.isnan(diag["max_r_hat"]) and np.isnan(diag["min_ess_bulk"])
    assert np.isnan(diag["n_divergences"]) and np.isnan(diag["n_max_treedepth"])
    assert "sample_stats" not in fit.idata.children
    np.testing.assert_allclose(fit.posterior_mean().means, em.means, atol=0.3)


@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_sampler_that_cannot_start_names_itself_and_the_reason(data_1d, sampler):
    # Means at 1e200 make the log density -inf at the start, so no chain can begin.
    far = MixtureParams(TRUTH_1D.weights, TRUTH_1D.means * 1e200, TRUTH_1D.covariances)
    reasons = {"nutpie": "All initialization points failed", "pymc": "Bad initial energy"}
    with pytest.raises(SamplingError, match=rf"sampler '{sampler}' failed .*{reasons[sampler]}"):
        fit_bayes(data_1d, 2, sampler=sampler, init=far, chains=2, draws=100, tune=10)


def test_to_netcdf_round_trip(fit_1d, tmp_path):
    path = tmp_path / "fit.nc"
    fit_1d.to_netcdf(path)
    tree = xr.open_datatree(path, engine="h5netcdf")
    np.testing.assert_array_equal(tree["posterior_relabelled"]["w"].values, fit_1d.weights)
    assert tree.attrs["sampler"] == "nutpie"
    assert tree.attrs["max_r_hat"] == pytest.approx(fit_1d.diagnostics["max_r_hat"])


TRUTH_BY_TYPE = {
    "tied": np.array([[0.8, 0.3], [0.3, 1.1]]),
    "diag": np.array([[0.5, 1.5], [1.2, 0.6]]),
    "spherical": np.array([0.6, 1.4]),
}


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical"])
def test_other_covariance_types_converge_and_recover_the_truth(covariance_type):
    truth = MixtureParams.from_covariance_type(
        np.array([0.45, 0.55]),
        np.array([[-3.0, 1.0], [2.0, -1.0]]),
        TRUTH_BY_TYPE[covariance_type],
        covariance_type,
    )
    X = sample(truth, N, 13)[0]
    em = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X).to_params()
    # EM's component order is arbitrary; put it in the truth's order so that the relabelled
    # draws can be compared with the truth component by component.
    em = em.permuted(align_to_reference(em, truth))
    fit = fit_bayes(
        X, 2, covariance_type=covariance_type, init=em, reference=em, random_seed=3, **SETTINGS
    )
    assert fit.diagnostics["max_r_hat"] < 1.01
    assert not fit.diagnostics["label_switching"]
    assert_recovers(fit, truth)
    # The structure is imposed, not just approximately recovered.
    off_diagonal = fit.covariances[..., 0, 1]
    if covariance_type == "tied":
        np.testing.assert_allclose(fit.covariances[..., 0, :, :], fit.covariances[..., 1, :, :])
    else:
        assert np.all(off_diagonal == 0.0)
    if covariance_type == "spherical":
        np.testing.assert_allclose(fit.covariances[..., 0, 0], fit.covariances[..., 1, 1])


def mirrored_clusters(n_per_cluster: int, seed: int) -> np.ndarray:
    """Two clusters 8 sd apart in the second coordinate, mirror images of each other.

    Reflecting the second coordinate maps the data onto themselves and swaps the clusters,
    so the posterior probability that the bottom cluster has the smaller first mean
    coordinate is exactly 1/2 (the data-scaled prior is symmetric under the reflection).
    """
    bottom = np.random.default_rng(seed).normal([0.0, -4.0], 1.0, size=(n_per_cluster, 2))
    return np.concatenate([bottom, bottom * [1.0, -1.0]])


@pytest.fixture(scope="module")
def mirrored_fits():
    X = mirrored_clusters(100, 14)
    em = GaussianMixture(2, covariance_type="spherical", random_state=0).fit(X).to_params()
    common = {"covariance_type": "spherical", "init": em, "random_seed": 4, **SETTINGS}
    return X, {
        ordering: fit_bayes(X, 2, ordering=ordering, **common) for ordering in ("transform", "sort")
    }


def test_sort_ordering_finds_both_orders_of_clusters_with_equal_first_means(mirrored_fits):
    import arviz_stats

    _, fits = mirrored_fits
    # component 0 of the ordered labelling is the bottom cluster
    bottom_first = fits["sort"].idata["posterior"]["mu"].values[..., 0, 1] < 0
    ess = float(arviz_stats.ess(bottom_first.astype(float), method="mean"))
    mcse = np.sqrt(0.25 / ess)
    # 4 MCSE of the share: a correct sampler misses 1/2 by more with probability 6e-5
    assert abs(bottom_first.mean() - 0.5) < 4 * mcse, (bottom_first.mean(), ess)
    # Why 'sort' exists: on the ordered transform the chains, all started at one EM
    # estimate, cannot pass between the two orders (that needs both clusters to coincide).
    stuck = fits["transform"].idata["posterior"]["mu"].values[..., 0, 1] < 0
    assert stuck.mean() in (0.0, 1.0)
    assert fits["transform"].diagnostics["ordering"] == "transform"


def test_sort_ordering_keeps_each_draw_and_sorts_its_components(mirrored_fits):
    X, fits = mirrored_fits
    fit = fits["sort"]
    assert fit.diagnostics["ordering"] == "sort"
    posterior = fit.idata["posterior"]
    assert set(posterior.data_vars) == {"w", "mu", "cov"}
    mu = posterior["mu"].values
    assert np.all(np.diff(mu[..., 0], axis=-1) >= 0)
    # the relabelled draws are the same mixtures: sorting them gives the posterior group
    order = np.argsort(fit.means[..., 0], axis=-1)
    np.testing.assert_array_equal(np.take_along_axis(fit.weights, order, -1), posterior["w"])
    np.testing.assert_array_equal(np.take_along_axis(fit.means, order[..., None], 2), mu)
    np.testing.assert_array_equal(
        np.take_along_axis(fit.covariances, order[..., None, None], 2), posterior["cov"]
    )
    params = MixtureParams(*(posterior[v].values[2, 7] for v in ("w", "mu", "cov")))
    np.testing.assert_allclose(
        fit.idata["log_likelihood"]["x"].values[2, 7], log_prob(X, params), rtol=1e-9
    )
    assert fit.diagnostics["max_r_hat"] < 1.01


def test_bad_ordering_is_named():
    with pytest.raises(ValueError, match="ordering.*'shuffle'.*'transform'.*'sort'"):
        fit_bayes(np.zeros((20, 1)) + np.arange(20)[:, None], 2, ordering="shuffle")
