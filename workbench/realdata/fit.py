"""Fit both methods to real data (no truth): log-likelihoods and the posterior against EM."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench._validation import check_choice, check_real
from workbench.bayes import BayesFit, fit_bayes
from workbench.bayes.options import DEFAULT_CHAINS, DEFAULT_DRAWS, DEFAULT_TUNE
from workbench.em import (
    ConfidenceIntervals,
    GaussianMixture,
    bootstrap,
    standard_errors,
    wald_intervals,
)
from workbench.em.options import DEFAULT_N_BOOT, INTERVAL_METHODS, WORKBENCH_N_INIT
from workbench.metrics import central_interval
from workbench.mixture import MixtureParams, flatten_parameters, log_prob, parameter_names

__all__ = ["RealDataFit", "fit_data"]


@dataclass(frozen=True)
class RealDataFit:
    """EM and Bayesian fits of one dataset.

    Attributes
    ----------
    em : MixtureParams
        The EM estimate; the posterior's components are relabelled to its order.
    em_model : GaussianMixture
        The fitted estimator (``converged_``, ``n_iter_``, ``bic`` ...).
    bayes : BayesFit
        The posterior (``idata``, ``diagnostics`` ...).
    posterior_mean : MixtureParams
    log_likelihood : dict of str to float
        Mean log-likelihood per observation at the EM estimate (``"em"``) and at the
        posterior mean (``"posterior_mean"``).
    comparison : DataFrame
        One row per scalar parameter: ``parameter``, ``em``, ``em_se``, ``em_lower``,
        ``em_upper`` (EM's standard error and confidence interval at ``level``; NaN when
        ``se_error`` says why), ``posterior_mean``, ``posterior_sd``, ``lower``, ``upper``
        (central credible interval at ``level``) and ``em_inside`` (the EM estimate lies in
        the credible interval).
    level : float
    se_method : {'hessian', 'opg', 'sandwich', 'bootstrap'}
        How EM's SEs and intervals were made: a Wald interval from that analytic SE, or
        the bootstrap's SD and percentile interval.
    se_error : str or None
        Why EM's SEs are not available (a singular information matrix, a failing
        bootstrap); None when they are.
    em_seconds, bayes_seconds : float
    """

    em: MixtureParams
    em_model: GaussianMixture
    bayes: BayesFit
    posterior_mean: MixtureParams
    log_likelihood: dict[str, float]
    comparison: pd.DataFrame
    level: float
    se_method: str
    se_error: str | None
    em_seconds: float
    bayes_seconds: float


def fit_data(
    X: np.ndarray,
    n_components: int,
    *,
    covariance_type: str = "full",
    n_init: int = WORKBENCH_N_INIT,
    sampler: str = "auto",
    chains: int = DEFAULT_CHAINS,
    draws: int = DEFAULT_DRAWS,
    tune: int = DEFAULT_TUNE,
    level: float = 0.94,
    se_method: str = "sandwich",
    seed: int = 0,
    progressbar: bool = False,
) -> RealDataFit:
    """Fit EM, then the Bayesian mixture started at the EM estimate, and compare them.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_components : int >= 1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n_init : int
        EM starts.
    sampler : {'auto', 'nutpie', 'pymc', 'numpyro', 'advi'}
    chains, draws, tune : int
    level : float in (0, 1)
        Level of the credible and confidence intervals in the comparison.
    se_method : {'hessian', 'opg', 'sandwich', 'bootstrap'}, default 'sandwich'
        EM's standard errors and interval (:mod:`workbench.em.inference`): the Wald
        interval of an analytic SE (the sandwich is robust to a misspecified component
        density), or 999 nonparametric bootstrap refits and their percentile interval.
    seed : int
        Seeds both fits and the bootstrap (independent streams).
    progressbar : bool

    Returns
    -------
    RealDataFit
    """
    check_real("level", level, above=0, below=1)
    check_choice("se_method", se_method, INTERVAL_METHODS)
    em_seed, bayes_seed, boot_seed = (
        int(s.generate_state(1, np.uint32)[0]) for s in np.random.SeedSequence(seed).spawn(3)
    )
    model = GaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        n_init=n_init,
        # standard errors assume a maximum of the likelihood: converge well past the default
        tol=1e-8,
        max_iter=1000,
        random_state=em_seed,
    )
    start = time.perf_counter()
    model.fit(X)
    em_seconds = time.perf_counter() - start
    em = model.to_params()
    se_error: str | None = None
    try:
        em_se, em_interval = _em_uncertainty(model, X, se_method, level, boot_seed)
    except ValueError as exc:
        se_error = str(exc)
    start = time.perf_counter()
    fit = fit_bayes(
        X,
        n_components,
        covariance_type=covariance_type,
        sampler=sampler,
        chains=chains,
        draws=draws,
        tune=tune,
        init=em,
        reference=em,
        random_seed=bayes_seed,
        progressbar=progressbar,
    )
    bayes_seconds = time.perf_counter() - start
    weights, means, covariances = fit.flat_draws()
    posterior_mean = fit.posterior_mean()
    names = [p.name for p in parameter_names(n_components, X.shape[1])]
    draws_flat = flatten_parameters(weights, means, covariances)
    em_flat = flatten_parameters(em.weights, em.means, em.covariances)
    lower, upper = central_interval(draws_flat, level)
    missing = np.full(len(names), np.nan)
    comparison = pd.DataFrame(
        {
            "parameter": names,
            "em": em_flat,
            "em_se": missing if se_error is not None else em_se,
            "em_lower": missing if se_error is not None else em_interval.lower,
            "em_upper": missing if se_error is not None else em_interval.upper,
            "posterior_mean": draws_flat.mean(axis=0),
            "posterior_sd": draws_flat.std(axis=0, ddof=1),
            "lower": lower,
            "upper": upper,
            "em_inside": (em_flat >= lower) & (em_flat <= upper),
        }
    )
    log_likelihood = {
        "em": float(np.mean(log_prob(X, em))),
        "posterior_mean": float(np.mean(log_prob(X, posterior_mean))),
    }
    return RealDataFit(
        em=em,
        em_model=model,
        bayes=fit,
        posterior_mean=posterior_mean,
        log_likelihood=log_likelihood,
        comparison=comparison,
        level=level,
        se_method=se_method,
        se_error=se_error,
        em_seconds=em_seconds,
        bayes_seconds=bayes_seconds,
    )


def _em_uncertainty(
    model: GaussianMixture, X: np.ndarray, se_method: str, level: float, seed: int
) -> tuple[np.ndarray, ConfidenceIntervals]:
    """EM's standard errors, shape (M,), and confidence intervals at ``level``.

    Raises
    ------
    ValueError
        If they cannot be computed (the message says why).
    """
    if se_method == "bootstrap":
        draws = bootstrap(model, X, n_boot=DEFAULT_N_BOOT, rng=seed)
        return draws.se, draws.interval(level, method="percentile")
    errors = standard_errors(model, X, method=se_method)
    return errors.se, wald_intervals(errors, level=level)
