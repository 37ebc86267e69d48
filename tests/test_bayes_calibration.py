"""Simulation-based calibration: ranks, thinning, the uniformity check, and real SBC runs.

The fast tests build fits by hand whose draws are (or are not) exchangeable with the
truth, so the whole rank -> thin -> test path is checked against a known answer. The slow
tests run SBC of the default 1-D model (K = 2, n = 100, 200 simulations, nutpie with 2
chains x 200 draws after 200 tuning steps): it must pass, and the negative control (fit
with a halved ``scale_prior``) must fail. Both runs share one compiled model; together
they took 6.6 minutes of wall time (2 minutes of CPU) on a 2-core machine with a load
average of 9, about 2 minutes on a quiet one.
"""

import dataclasses

import numpy as np
import pytest
import xarray as xr
from scipy.special import logsumexp
from scipy.stats import norm

from workbench.bayes import BayesFit, fit_bayes
from workbench.bayes.calibration import (
    SBCRanks,
    kept_draw_count,
    rank_table,
    rank_uniformity,
    run_sbc,
    sbc_check,
    sbc_quantities,
    sbc_quantity_names,
    sbc_ranks,
)
from workbench.bayes.prior_sampling import prior_draws
from workbench.bayes.priors import BayesPriors
from workbench.mixture import MixtureParams, n_parameters, sample

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")

PRIORS = BayesPriors(mean_loc=0.0, mean_scale=2.0, scale_prior=1.0)
CHAINS, DRAWS = 2, 200


def fake_fit(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> BayesFit:
    """A 1-D BayesFit with the given draws, shaped (chains, draws, K, ...), as its raw posterior."""
    chains, draws, K, _ = means.shape
    sd = np.sqrt(covariances[..., 0, 0])
    pointwise = logsumexp(
        np.log(weights)[..., None, :]
        + norm.logpdf(X[:, 0][:, None], means[..., None, :, 0], sd[..., None, :]),
        axis=-1,
    )
    dims = ("chain", "draw", "component")
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {
                    "w": (dims, weights),
                    "mu": ((*dims, "feature"), means),
                    "cov": ((*dims, "feature", "feature_bis"), covariances),
                }
            ),
            "observed_data": xr.Dataset({"x": (("obs", "feature"), X)}),
            "log_likelihood": xr.Dataset({"x": (("chain", "draw", "obs"), pointwise)}),
        }
    )
    return BayesFit(tree, weights, means, covariances, {"covariance_type": "full"})


def prior_fit(X: np.ndarray, priors: BayesPriors, rng: np.random.Generator, K: int = 2):
    """A fit whose draws are i.i.d. from the (ordered) prior: the posterior when X says nothing."""
    draws = prior_draws(priors, K, 1, size=CHAINS * DRAWS, rng=rng)
    return fake_fit(
        X,
        draws.weights.reshape(CHAINS, DRAWS, K),
        draws.means.reshape(CHAINS, DRAWS, K, 1),
        draws.covariances.reshape(CHAINS, DRAWS, K, 1, 1),
    )


def truth_from_prior(priors: BayesPriors, rng: np.random.Generator, K: int = 2) -> MixtureParams:
    w, mu, cov = (a[0] for a in prior_draws(priors, K, 1, rng=rng))
    return MixtureParams(w / w.sum(), mu, cov)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_every_free_parameter_is_ranked_once(covariance_type, d):
    """All K weights, the free parameters of the covariance type, and the log-likelihood."""
    K = 3
    names, kinds = sbc_quantity_names(K, d, covariance_type)
    # n_parameters counts K - 1 weights; SBC ranks all K.
    free = n_parameters(K, d, covariance_type if d > 1 or covariance_type == "tied" else "diag")
    assert len(names) == len(set(names)) == free + 1 + 1
    assert names[-1] == kinds[-1] == "loglik"
    draws = prior_draws(PRIORS, K, d, covariance_type=covariance_type, size=5, rng=0)
    assert sbc_quantities(*draws, covariance_type).shape == (5, len(names) - 1)


def test_quantities_read_the_named_entries():
    w = np.array([0.3, 0.7])
    mu = np.array([[-1.0, 5.0], [2.0, 6.0]])
    cov = np.array([[[1.0, 0.2], [0.2, 2.0]], [[3.0, -0.4], [-0.4, 4.0]]])
    names, _ = sbc_quantity_names(2, 2, "full")
    got = dict(zip(names, sbc_quantities(w, mu, cov, "full"), strict=False))
    assert got["weight[1]"] == 0.7 and got["mean[1,0]"] == 2.0 and got["mean[0,1]"] == 5.0
    assert got["cov[0,0,1]"] == 0.2 and got["cov[1,1,1]"] == 4.0 and got["cov[1,0,0]"] == 3.0
    names, _ = sbc_quantity_names(2, 2, "tied")
    assert names[-4:-1] == ("cov[0,0]", "cov[0,1]", "cov[1,1]")
    assert list(sbc_quantities(w, mu, cov, "tied")[-3:]) == [1.0, 0.2, 2.0]


@pytest.mark.parametrize(
    ("ess", "total", "bins", "expected"),
    [
        (95.3, 400, 10, 89),
        (400.0, 400, 10, 399),
        (1200.0, 400, 10, 399),  # antithetic NUTS: ESS above the draws
        (3.0, 400, 10, 9),  # at least bins - 1
        (float("nan"), 400, 20, 399),
        (57.0, 400, 1, 57),
    ],
)
def test_kept_draw_count(ess, total, bins, expected):
    kept = kept_draw_count(ess, total, bins)
    assert kept == expected and (kept + 1) % bins == 0


def test_kept_draw_count_needs_enough_draws():
    with pytest.raises(ValueError, match="has 5 draws but rank_bins=10 needs at least 9"):
        kept_draw_count(3.0, 5, 10)


def test_ranks_are_counts_below_the_truth_among_kept_draws():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 1))
    fit = prior_fit(X, PRIORS, rng)
    low = MixtureParams(
        np.array([1e-9, 1 - 1e-9]), np.array([[-50.0], [-49.0]]), np.full((2, 1, 1), 1e-6)
    )
    ranks = sbc_ranks(low, fit, rng=0)
    assert isinstance(ranks, SBCRanks)
    assert ranks.total_draws == CHAINS * DRAWS and (ranks.n_draws + 1) % 10 == 0
    by_name = ranks.as_dict()
    # Below every draw: weight[0], both means, both variances; weight[1] above every draw.
    assert by_name["mean[0,0]"] == by_name["mean[1,0]"] == by_name["cov[0,0,0]"] == 0
    assert by_name["weight[0]"] == 0 and by_name["weight[1]"] == ranks.n_draws
    # Ties (one component: every weight is 1) are spread uniformly over 0..L.
    one = prior_fit(X, PRIORS, rng, K=1)
    truth = MixtureParams(np.array([1.0]), np.array([[0.0]]), np.array([[[1.0]]]))
    tied = [sbc_ranks(truth, one, rng=seed).as_dict()["weight[0]"] for seed in range(200)]
    L = sbc_ranks(truth, one, rng=0).n_draws
    assert min(tied) >= 0 and max(tied) <= L and len(set(tied)) > 50


def test_thinning_keeps_about_the_effective_sample_size():
    """Each independent draw repeated 8 times in a row: about S / 8 effective draws."""
    rng = np.random.default_rng(2)
    draws = prior_draws(PRIORS, 2, 1, size=CHAINS * DRAWS // 8, rng=rng)
    w, mu, cov = (np.repeat(a, 8, axis=0).reshape(CHAINS, DRAWS, *a.shape[1:]) for a in draws)
    fit = fake_fit(rng.normal(size=(20, 1)), w, mu, cov)
    ranks = sbc_ranks(truth_from_prior(PRIORS, rng), fit, rng=rng)
    assert 0.5 * CHAINS * DRAWS / 8 <= ranks.ess_bulk <= 2 * CHAINS * DRAWS / 8
    assert ranks.n_draws == kept_draw_count(ranks.ess_bulk, CHAINS * DRAWS)


def _fake_sbc(n_sims: int, fit_priors: BayesPriors, data_from_truth: bool) -> list[SBCRanks]:
    rng = np.random.default_rng(3)
    out = []
    for _ in range(n_sims):
        truth = truth_from_prior(PRIORS, rng)
        # Data independent of the truth leave the prior-draw "posterior" exact.
        X = sample(truth, 40, rng)[0] if data_from_truth else rng.normal(size=(40, 1))
        out.append(sbc_ranks(truth, prior_fit(X, fit_priors, rng), rng=rng))
    return out


def test_check_passes_an_exact_posterior_and_flags_a_wrong_prior_and_ignored_data():
    exact = sbc_check(_fake_sbc(200, PRIORS, data_from_truth=False))
    assert exact.passed and exact.n_simulations == 200 and exact.n_failed == 0
    assert [t.quantity for t in exact.tests] == list(sbc_quantity_names(2, 1, "full")[0])
    assert all(t.p_adjusted == min(1.0, 7 * t.p_value) for t in exact.tests)

    narrow = sbc_check(_fake_sbc(200, dataclasses.replace(PRIORS, scale_prior=0.5), False))
    assert not narrow.passed
    assert {"cov[0,0,0]", "cov[1,0,0]"} <= set(narrow.flagged)

    # A "posterior" that ignores data drawn from the truth: only the log-likelihood sees it.
    ignored = sbc_check(_fake_sbc(200, PRIORS, data_from_truth=True))
    assert ignored.flagged == ("loglik",)


def test_check_counts_failed_fits_and_fails():
    results = _fake_sbc(60, PRIORS, data_from_truth=False)
    check = sbc_check([*results, None], n_bins=5)
    assert check.n_failed == 1 and check.n_simulations == 60 and not check.passed
    # The stacked table (what a store would hold) gives the same verdict.
    table = rank_table([*results, None])
    assert table.ranks.shape == (60, 7) and table.n_failed == 1
    assert sbc_check(table, n_bins=5) == check


@pytest.mark.parametrize(
    ("ranks", "n_draws", "n_bins", "match"),
    [
        (np.zeros(100, int), 19, 10, None),
        (np.zeros(100, int), 18, 10, "does not divide L \\+ 1 = 19"),
        (np.zeros(30, int), 19, 10, "30 simulations are too few for 10 bins"),
        (np.full(100, 20), 19, 10, "every rank must lie in 0..L"),
        (np.zeros(100, int), 19, 1, "n_bins=1"),
    ],
)
def test_rank_uniformity(ranks, n_draws, n_bins, match):
    if match is None:
        statistic, p_value = rank_uniformity(ranks, n_draws, n_bins=n_bins)
        assert statistic == pytest.approx(900.0) and p_value < 1e-100
    else:
        with pytest.raises(ValueError, match=match):
            rank_uniformity(ranks, n_draws, n_bins=n_bins)


def test_uniform_ranks_with_different_draw_counts_pass():
    rng = np.random.default_rng(4)
    n_draws = rng.choice([9, 99, 199], size=400)
    ranks = rng.integers(0, n_draws + 1)
    assert rank_uniformity(ranks, n_draws)[1] > 1e-3


def test_check_and_ranks_reject_bad_input():
    results = _fake_sbc(60, PRIORS, data_from_truth=False)
    with pytest.raises(ValueError, match="alpha=0"):
        sbc_check(results, alpha=0)
    with pytest.raises(ValueError, match="no simulation has ranks"):
        sbc_check([None, None])
    other = dataclasses.replace(results[0], quantities=("a",) * 7)
    with pytest.raises(ValueError, match="rank different quantities"):
        sbc_check([*results, other])
    rng = np.random.default_rng(5)
    fit = prior_fit(rng.normal(size=(10, 1)), PRIORS, rng)
    with pytest.raises(ValueError, match="truth has 3 components and 1 features"):
        sbc_ranks(truth_from_prior(PRIORS, rng, K=3), fit)
    truth = truth_from_prior(PRIORS, rng)
    with pytest.raises(ValueError, match="are not increasing; SBC needs the ordered labelling"):
        sbc_ranks(truth.permuted([1, 0]), fit)


# --- SBC of the real fit ------------------------------------------------------------------

SBC_SETTINGS = {"chains": CHAINS, "draws": DRAWS, "tune": 200, "cores": 2}
N_SIMULATIONS = 200


@pytest.fixture(scope="module")
def sbc_default():
    return run_sbc(
        PRIORS, 2, 1, n_samples=100, n_simulations=N_SIMULATIONS, rng=2026, **SBC_SETTINGS
    )


@pytest.mark.slow
def test_default_model_passes_sbc(sbc_default):
    check = sbc_check([s.ranks for s in sbc_default])
    assert check.n_simulations == N_SIMULATIONS and check.n_failed == 0
    assert "loglik" in [t.quantity for t in check.tests]
    assert check.passed, [(t.quantity, t.p_adjusted) for t in check.tests]
    # Truths that leave a component without data are among them, fitted and ranked.
    empty = [s for s in sbc_default if s.n_empty_components]
    assert empty and all(s.ranks is not None for s in empty)


@pytest.mark.slow
def test_halved_scale_prior_fails_sbc(sbc_default):
    """Negative control: same truths and data, fitted with scale_prior halved."""
    control = run_sbc(
        PRIORS,
        2,
        1,
        n_samples=100,
        n_simulations=N_SIMULATIONS,
        fit_priors=dataclasses.replace(PRIORS, scale_prior=PRIORS.scale_prior / 2),
        rng=2026,
        **SBC_SETTINGS,
    )
    assert [s.truth.means.tolist() for s in control] == [
        s.truth.means.tolist() for s in sbc_default
    ]
    check = sbc_check([s.ranks for s in control])
    assert check.n_simulations == N_SIMULATIONS and not check.passed
    assert any(t.kind == "variance" for t in check.tests if t.quantity in check.flagged)


@pytest.mark.slow
def test_a_truth_with_an_empty_component_is_fitted_and_ranked():
    """A weight too small for any of the 100 points still gives a fit and ranks."""
    truth = MixtureParams(
        np.array([1e-6, 1 - 1e-6]), np.array([[-1.0], [1.5]]), np.array([[[0.5]], [[1.0]]])
    )
    X, labels = sample(truth, 100, rng=6)
    assert not np.any(labels == 0)
    fit = fit_bayes(X, 2, priors=PRIORS, random_seed=7, **SBC_SETTINGS)
    ranks = sbc_ranks(truth, fit, rng=8)
    assert ranks.quantities == sbc_quantity_names(2, 1, "full")[0]
    assert (ranks.n_draws + 1) % 10 == 0 and ranks.n_draws <= ranks.total_draws
    assert np.all((ranks.ranks >= 0) & (ranks.ranks <= ranks.n_draws))
    # No rank is special-cased: an empty component's weight is ranked like any other (on
    # the ordered labelling the empty component may sit on either side, so its posterior
    # weight[0] is bimodal and its rank is not fixed).
