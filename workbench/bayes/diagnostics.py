"""Convergence and sampler diagnostics of a Bayesian mixture fit.

Convergence is measured on the *relabelled* component parameters, the quantities every
per-component summary uses: weights, means, and the free covariance entries of the
covariance type (the lower triangle for ``full``, the diagonal for ``diag``, one variance
per component for ``spherical``, the shared lower triangle for ``tied``).
"""

from __future__ import annotations

from typing import TypedDict

import arviz as az
import numpy as np
import xarray as xr

__all__ = ["BayesDiagnostics", "component_parameters", "convergence", "sampler_counts"]


class BayesDiagnostics(TypedDict, total=False):
    """Everything ``BayesFit.diagnostics`` records about one fit (stored row by row).

    A value that does not apply is NaN here (ADVI has no r_hat, ESS, divergences or tree
    depth) and NULL in the store; never a sentinel such as -1.
    """

    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    n_divergences: int | float
    n_max_treedepth: int | float
    n_relabelled_draws: int
    n_chains_disagreeing: int
    label_switching: bool
    relabel_method: str
    sampler: str
    started_at_em: bool
    sampling_seconds: float
    compile_seconds: float
    model_reused: bool
    chains: int
    draws: int
    tune: int
    covariance_type: str
    ordering: str
    warnings: str


NUMPYRO_MAX_DEPTH = 10


def component_parameters(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Stack the free component parameters of every draw into one array.

    Parameters
    ----------
    weights : ndarray of shape (chains, draws, K)
    means : ndarray of shape (chains, draws, K, d)
    covariances : ndarray of shape (chains, draws, K, d, d)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    ndarray of shape (chains, draws, P)
    """
    c, s, K, d = means.shape
    if covariance_type in ("full", "tied"):
        rows, cols = np.tril_indices(d)
        cov = covariances[..., rows, cols]
        if covariance_type == "tied":
            cov = cov[:, :, :1]
    elif covariance_type == "diag":
        cov = np.diagonal(covariances, axis1=-2, axis2=-1)
    else:
        cov = covariances[..., 0, 0][..., None]
    return np.concatenate([weights, means.reshape(c, s, K * d), cov.reshape(c, s, -1)], axis=-1)


def convergence(parameters: np.ndarray) -> dict[str, float]:
    """Worst-case r_hat and effective sample sizes over parameters.

    Parameters
    ----------
    parameters : ndarray of shape (chains, draws, P)

    Returns
    -------
    dict
        ``max_r_hat`` (rank-normalised split r_hat), ``min_ess_bulk``, ``min_ess_tail``
        over the parameters that vary. NaN when they are undefined (fewer than 4 draws
        per chain, or nothing varies).
    """
    # A constant parameter (the weight of a single component) has no r_hat or ESS.
    varying = np.ptp(parameters.reshape(-1, parameters.shape[-1]), axis=0) > 0
    if parameters.shape[1] < 4 or not varying.any():
        return {"max_r_hat": np.nan, "min_ess_bulk": np.nan, "min_ess_tail": np.nan}
    parameters = parameters[..., varying]
    r_hat = np.asarray(az.rhat(parameters, chain_axis=0, draw_axis=1))
    bulk = np.asarray(az.ess(parameters, method="bulk", chain_axis=0, draw_axis=1))
    # The 5% and 95% quantiles: the tail ESS of Vehtari et al. (2021) and az.summary.
    tail = np.asarray(
        az.ess(parameters, method="tail", prob=(0.05, 0.95), chain_axis=0, draw_axis=1)
    )
    return {
        "max_r_hat": float(np.max(r_hat)),
        "min_ess_bulk": float(np.min(bulk)),
        "min_ess_tail": float(np.min(tail)),
    }


def sampler_counts(sample_stats: xr.Dataset | None) -> dict[str, int | float]:
    """Divergent transitions and maximum-tree-depth hits after tuning.

    Parameters
    ----------
    sample_stats : xarray.Dataset or None
        The ``sample_stats`` group of PyMC, numpyro or nutpie output. nutpie calls the
        tree-depth flag ``maxdepth_reached``, PyMC ``reached_max_treedepth``; numpyro
        reports only ``tree_depth``, compared with its default maximum of 10.

    Returns
    -------
    dict
        ``n_divergences`` and ``n_max_treedepth``; NaN for a count the sampler does not
        report (ADVI has no sampler statistics).
    """
    counts: dict[str, int | float] = {"n_divergences": np.nan, "n_max_treedepth": np.nan}
    if sample_stats is None:
        return counts
    if "diverging" in sample_stats:
        counts["n_divergences"] = int(sample_stats["diverging"].values.sum())
    for name in ("reached_max_treedepth", "maxdepth_reached"):
        if name in sample_stats:
            counts["n_max_treedepth"] = int(sample_stats[name].values.sum())
            return counts
    if "tree_depth" in sample_stats:
        counts["n_max_treedepth"] = int(
            (sample_stats["tree_depth"].values >= NUMPYRO_MAX_DEPTH).sum()
        )
    return counts
