"""Repeated sampling: analytic SEs match the spread of EM estimates, Wald intervals cover.

Well separated (MixSim overlap 0.001), K = 2, d = 2, full covariances, n = 2000, with one
fixed truth; R = 1500 replications, each fitted from the true parameters (the fit is the
same maximum as from k-means here, and no alignment is needed; it is checked).

Tolerances, chosen so that a correct implementation fails less than once in 1000 runs:
48 comparisons (12 parameters x 2 SE methods x 2 checks), Bonferroni, two-sided
alpha = 0.001 / 48 per comparison, z = 4.25.

* Mean SE / empirical SD within 10% (the issue's criterion). The empirical SD of R
  estimates has relative MCSE 1 / sqrt(2 (R - 1)) = 1.83%; the mean SE's MCSE is an order
  smaller. The asymptotic ratio is 1 and its finite-n bias at n = 2000 is O(1/n), allowed
  up to 2%: the remaining 8% margin is 4.4 MCSE > 4.25.
* Coverage of the 95% Wald interval within z * MCSE of 0.95, with
  MCSE = sqrt(0.95 * 0.05 / R) = 0.0056, i.e. +-0.024.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from workbench.align import align_to_reference
from workbench.em import GaussianMixture
from workbench.em.inference import standard_errors
from workbench.mixture import flatten_parameters, sample
from workbench.simulate import Scenario, simulate

N_REPLICATIONS = 1500
N_SAMPLES = 2000
METHODS = ("hessian", "sandwich")


@pytest.mark.slow
def test_analytic_se_matches_empirical_sd_and_wald_intervals_cover():
    scenario = Scenario(
        n_components=2,
        n_features=2,
        n_train=N_SAMPLES,
        n_test=1,
        overlap=0.001,
        covariance="full",
        condition_number=3.0,
        truth_seed=7,
    )
    truth = simulate(scenario, 0).truth
    true_vector = flatten_parameters(truth.weights, truth.means, truth.covariances)
    precisions = np.linalg.inv(truth.covariances)
    estimates = np.empty((N_REPLICATIONS, true_vector.size))
    se = {m: np.empty_like(estimates) for m in METHODS}
    covered = {m: np.empty(estimates.shape, dtype=bool) for m in METHODS}
    for r, rng in enumerate(np.random.default_rng(2024).spawn(N_REPLICATIONS)):
        X, _ = sample(truth, N_SAMPLES, rng=rng)
        gm = GaussianMixture(
            2,
            tol=1e-10,
            max_iter=1000,
            weights_init=truth.weights,
            means_init=truth.means,
            precisions_init=precisions,
        ).fit(X)
        assert np.array_equal(align_to_reference(gm.to_params(), truth), [0, 1])
        for method in METHODS:
            errors = standard_errors(gm, X, method=method)
            se[method][r] = errors.se
            covered[method][r] = errors.interval(0.95).covers(true_vector)
        estimates[r] = errors.estimates

    n_tests = true_vector.size * len(METHODS) * 2
    z = norm.ppf(1 - 0.001 / (2 * n_tests))
    empirical_sd = estimates.std(axis=0, ddof=1)
    mcse_sd = 1 / np.sqrt(2 * (N_REPLICATIONS - 1))
    mcse_coverage = np.sqrt(0.95 * 0.05 / N_REPLICATIONS)
    assert z * mcse_sd + 0.02 < 0.10  # the 10% criterion leaves room for noise and O(1/n) bias
    for method in METHODS:
        ratio = se[method].mean(axis=0) / empirical_sd
        coverage = covered[method].mean(axis=0)
        assert np.all(np.abs(ratio - 1) < 0.10), (method, ratio)
        assert np.all(np.abs(coverage - 0.95) < z * mcse_coverage), (method, coverage)
