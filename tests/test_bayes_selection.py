"""Choosing K the Bayesian way: PSIS-LOO per K, stacking across K, and the sparse mixture.

The fits are shared through module-scoped fixtures: two small 1-D models (K = 1, 2) for
LOO, and one 2-D sparse mixture with K_max = 6 for the count of non-empty components.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from arviz_stats import loo

from workbench.bayes import fit_bayes
from workbench.bayes.loo import LooResult, PsisError, loo_of_fit, pareto_k_threshold
from workbench.bayes.sparse import SPARSE_CONCENTRATION, fit_sparse_mixture, occupied_counts
from workbench.mixture import MixtureParams, sample
from workbench.selection import compare_loo
from workbench.simulate import Scenario, simulate

SAMPLING = {"chains": 2, "draws": 300, "tune": 300, "cores": 1}


@pytest.fixture(scope="module")
def one_d() -> np.ndarray:
    truth = MixtureParams(
        weights=np.array([0.5, 0.5]),
        means=np.array([[-3.0], [3.0]]),
        covariances=np.array([[[1.0]], [[1.0]]]),
    )
    return sample(truth, 120, rng=5)[0]


@pytest.fixture(scope="module")
def loo_fits(one_d):
    return {
        k: fit_bayes(one_d, k, covariance_type="diag", random_seed=k, **SAMPLING) for k in (1, 2)
    }


@pytest.mark.slow
def test_loo_equals_arviz_stats_on_the_stored_log_likelihood(loo_fits):
    fit = loo_fits[2]
    ours = loo_of_fit(fit)
    with warnings.catch_warnings():
        # arviz_stats warns on purpose when a Pareto k is high; the count is compared below.
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        theirs = loo(fit.idata, pointwise=True, var_name="x")
    assert isinstance(ours, LooResult)
    assert ours.elpd == pytest.approx(theirs.elpd, rel=1e-12)
    assert ours.se == pytest.approx(theirs.se, rel=1e-12)
    assert ours.p_loo == pytest.approx(theirs.p, rel=1e-12)
    np.testing.assert_array_equal(ours.pareto_k, theirs.pareto_k.values)
    assert ours.n_high_pareto_k == int(np.sum(theirs.pareto_k.values > theirs.good_k))
    S = SAMPLING["chains"] * SAMPLING["draws"]
    assert ours.n_samples == S and ours.n_data_points == 120
    assert ours.pareto_k_threshold == theirs.good_k == pareto_k_threshold(S)
    assert pareto_k_threshold(S) == pytest.approx(min(1 - 1 / np.log10(S), 0.7))
    # elpd is a sum over observations of log predictive densities: it is below the
    # in-sample log-likelihood at the posterior mean by roughly p_loo.
    assert 0 < ours.p_loo < 10


@pytest.mark.slow
def test_stacking_comparison_prefers_the_true_k(loo_fits):
    comparison = compare_loo(loo_fits)
    table = comparison.table.set_index("n_components")
    assert list(table.index) == [1, 2]
    assert comparison.choice == 2 and comparison.stacking_choice == 2
    assert table.loc[2, "rank"] == 0 and table.loc[2, "elpd_diff"] == 0
    # Two components 6 sd apart: one Gaussian is far worse, by many standard errors.
    assert table.loc[1, "elpd_diff"] < -5 * table.loc[1, "dse"]
    assert table.loc[2, "stacking_weight"] > 0.9
    assert table["stacking_weight"].sum() == pytest.approx(1.0)
    for k, fit in loo_fits.items():
        assert table.loc[k, "elpd"] == pytest.approx(loo_of_fit(fit).elpd, rel=1e-12)
    assert comparison.n_high_pareto_k == table["n_high_pareto_k"].sum()


@pytest.mark.slow
def test_compare_loo_rejects_bad_input(loo_fits):
    with pytest.raises(ValueError, match="at least two"):
        compare_loo({2: loo_fits[2]})
    with pytest.raises(ValueError, match="key 3 for a fit with 2 components"):
        compare_loo({1: loo_fits[1], 3: loo_fits[2]})


def _stuck(fit, n_components):
    """A copy of ``fit`` whose draws all repeat the first one, labelled as a fit of K components.

    What a chain that never moved leaves behind: every observation's importance ratios are
    equal, so PSIS has no tail to fit. The label lets it stand in for a third K.
    """
    tree = fit.idata.copy(deep=True)
    log_lik = tree["log_likelihood"]["x"].values
    log_lik[...] = log_lik[:1, :1]
    weights = np.zeros((*fit.weights.shape[:2], n_components))
    weights[..., : fit.weights.shape[-1]] = fit.weights
    return dataclasses.replace(fit, idata=tree, weights=weights)


@pytest.mark.slow
def test_a_fit_without_psis_is_left_out_of_the_comparison_and_named(loo_fits):
    stuck = _stuck(loo_fits[2], 3)
    with pytest.raises(PsisError, match="draws repeat"):
        loo_of_fit(stuck)
    comparison = compare_loo({**loo_fits, 3: stuck})
    assert list(comparison.table["n_components"]) == [1, 2]
    assert comparison.choice == 2 and comparison.stacking_choice == 2
    assert list(comparison.failed) == [3] and "Pareto tail" in comparison.failed[3]
    # With one comparable fit left there is nothing to compare: the error names the reason.
    with pytest.raises(ValueError, match="K=2: PSIS-LOO cannot fit a Pareto tail"):
        compare_loo({1: loo_fits[1], 2: _stuck(loo_fits[2], 2)})


def test_occupied_counts_follow_the_responsibilities():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-10, 1, (50, 1)), rng.normal(10, 1, (50, 1))])
    means = np.array([[[-10.0], [10.0], [50.0]], [[-10.0], [10.0], [50.0]]])
    covariances = np.ones((2, 3, 1, 1))
    weights = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
    # Draw 0: components at -10 and 10 hold the two clusters; the third has no weight.
    # Draw 1: component 1 has no weight and component 2 (at 50) is 40 sd from every row,
    # so each row goes to component 0 (at most 20 sd away): one filled component.
    counts = occupied_counts(X, weights, means, covariances, rng)
    np.testing.assert_array_equal(counts, [2, 1])
    one = occupied_counts(X, np.array([[1.0, 0.0, 0.0]]), means[:1], covariances[:1], rng)
    np.testing.assert_array_equal(one, [1])


@pytest.fixture(scope="module")
def separated():
    scenario = Scenario(n_components=3, n_features=2, n_train=300, n_test=1, overlap=0.001)
    return simulate(scenario, 2026)


@pytest.fixture(scope="module")
def sparse(separated):
    return fit_sparse_mixture(
        separated.X_train,
        6,
        covariance_type="spherical",
        true_components=3,
        random_seed=3,
        chains=2,
        draws=500,
        tune=500,
        cores=1,
    )


@pytest.mark.slow
def test_sparse_mixture_puts_its_mass_on_the_true_k(sparse):
    assert sparse.concentration == SPARSE_CONCENTRATION
    assert sparse.counts.shape == (2, 500)
    assert sparse.posterior.shape == (7,) and sparse.posterior[0] == 0
    assert sparse.posterior.sum() == pytest.approx(1.0)
    assert sparse.mode == 3
    assert sparse.prob_true == sparse.posterior[3] >= 0.9
    # Each chain on its own agrees (the count is label-invariant, so this is a fair check).
    assert (sparse.chain_posteriors[:, 3] >= 0.8).all()


def test_sparse_mixture_rejects_bad_settings(separated):
    with pytest.raises(ValueError, match="max_components=1 is not allowed"):
        fit_sparse_mixture(separated.X_train, 1)
    with pytest.raises(ValueError, match="true_components=7 is not allowed"):
        fit_sparse_mixture(separated.X_train, 6, true_components=7)
    with pytest.raises(ValueError, match="dirichlet_concentration=0 is not allowed"):
        fit_sparse_mixture(separated.X_train, 6, concentration=0)


def test_sparse_mixture_passes_its_prior_and_summarises_the_counts(monkeypatch, separated):
    """Without sampling: a stand-in fit_bayes records its arguments and returns fixed draws."""
    import workbench.bayes.sparse as sparse_module

    X = separated.X_train
    truth = separated.truth
    seen = {}

    def fake_fit_bayes(data, n_components, **kwargs):
        seen.update(kwargs, n_components=n_components)
        # 2 chains x 4 draws of a 6-component mixture: the truth's 3 components with
        # weight, plus 3 far-away components; in the last draw of chain 1 one of those
        # gets weight and sits on a cluster (4 filled).
        far = truth.means.mean(axis=0) + 1e3
        means = np.concatenate([truth.means, np.repeat(far[None], 3, axis=0)])
        covs = np.concatenate([truth.covariances, np.repeat(np.eye(2)[None], 3, axis=0)])
        weights = np.concatenate([truth.weights, np.zeros(3)])
        W = np.broadcast_to(weights, (2, 4, 6)).copy()
        M = np.broadcast_to(means, (2, 4, 6, 2)).copy()
        C = np.broadcast_to(covs, (2, 4, 6, 2, 2)).copy()
        W[1, 3] = np.concatenate([truth.weights * 0.5, [0.5, 0, 0]])
        M[1, 3, 3] = truth.means[0]
        fake = type("Fit", (), {})()
        fake.weights = W
        fake.flat_draws = lambda: (W.reshape(8, 6), M.reshape(8, 6, 2), C.reshape(8, 6, 2, 2))
        return fake

    monkeypatch.setattr(sparse_module, "fit_bayes", fake_fit_bayes)
    result = fit_sparse_mixture(
        X, 6, concentration=0.05, true_components=3, init=truth_padded(truth), random_seed=0
    )
    assert seen["n_components"] == 6
    assert seen["priors"].dirichlet_concentration == 0.05
    assert seen["init"] is seen["reference"]
    np.testing.assert_array_equal(result.counts, [[3, 3, 3, 3], [3, 3, 3, 4]])
    np.testing.assert_allclose(result.posterior, [0, 0, 0, 7 / 8, 1 / 8, 0, 0])
    np.testing.assert_allclose(
        result.chain_posteriors, [[0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 3 / 4, 1 / 4, 0, 0]]
    )
    assert result.mode == 3 and result.prob_true == 7 / 8 and result.concentration == 0.05


def truth_padded(truth: MixtureParams) -> MixtureParams:
    """The truth plus three tiny components: a valid 6-component start."""
    weights = np.concatenate([truth.weights * 0.97, np.full(3, 0.01)])
    means = np.concatenate([truth.means, truth.means + 0.5])
    return MixtureParams(weights, means, np.concatenate([truth.covariances] * 2))
