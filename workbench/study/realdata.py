"""Fit both methods to real data (no truth): log-likelihoods and the posterior against EM.

This is what ``workbench fit DATA.csv --components K`` runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.bayes import BayesFit, fit_bayes
from workbench.em import GaussianMixture
from workbench.metrics import central_interval, flatten_parameters, parameter_names
from workbench.mixture import MixtureParams, log_prob

__all__ = ["RealDataFit", "fit_data", "format_fit", "read_data_csv"]


def read_data_csv(path: str | Path) -> np.ndarray:
    """Read a numeric data table: one row per observation, one column per feature.

    A header row is allowed (detected by pandas). Every column must be numeric.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ndarray of shape (n_samples, n_features)

    Raises
    ------
    ValueError
        If the file is missing or empty, a column is not numeric, or a value is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such data file; give a CSV with one row per observation")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the file is empty; give a CSV with one row per observation"
        ) from None
    # a header of numbers means the file had no header: read it again without one
    if all(_is_number(c) for c in frame.columns):
        frame = pd.read_csv(path, header=None)
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        column = bad[0]
        value = frame[column][pd.to_numeric(frame[column], errors="coerce").isna()].iloc[0]
        raise ValueError(
            f"{path}: column {column!r} holds the non-numeric value {value!r}; "
            "every column must be numeric"
        )
    if frame.isna().any().any():
        row, column = np.argwhere(frame.isna().to_numpy())[0]
        raise ValueError(
            f"{path}: row {row + 1}, column {frame.columns[column]!r} is missing; "
            "every value must be a number"
        )
    if len(frame) == 0:
        raise ValueError(f"{path}: the file has no data rows")
    return frame.to_numpy(dtype=float)


def _is_number(text: object) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


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
        One row per scalar parameter: ``parameter``, ``em``, ``posterior_mean``,
        ``posterior_sd``, ``lower``, ``upper`` (central credible interval at ``level``) and
        ``em_inside`` (the EM estimate lies in the interval).
    level : float
    em_seconds, bayes_seconds : float
    """

    em: MixtureParams
    em_model: GaussianMixture
    bayes: BayesFit
    posterior_mean: MixtureParams
    log_likelihood: dict[str, float]
    comparison: pd.DataFrame
    level: float
    em_seconds: float
    bayes_seconds: float


def fit_data(
    X: np.ndarray,
    n_components: int,
    *,
    covariance_type: str = "full",
    n_init: int = 5,
    sampler: str = "auto",
    chains: int = 2,
    draws: int = 1000,
    tune: int = 1000,
    level: float = 0.94,
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
        Level of the credible intervals in the comparison.
    seed : int
        Seeds both fits (independent streams).
    progressbar : bool

    Returns
    -------
    RealDataFit
    """
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is not allowed; use a number in (0, 1)")
    em_seed, bayes_seed = (
        int(s.generate_state(1, np.uint32)[0]) for s in np.random.SeedSequence(seed).spawn(2)
    )
    model = GaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        n_init=n_init,
        random_state=em_seed,
    )
    start = time.perf_counter()
    model.fit(X)
    em_seconds = time.perf_counter() - start
    em = model.to_params()
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
    names, _ = parameter_names(n_components, X.shape[1])
    draws_flat = flatten_parameters(weights, means, covariances)
    em_flat = flatten_parameters(em.weights, em.means, em.covariances)
    lower, upper = central_interval(draws_flat, level)
    comparison = pd.DataFrame(
        {
            "parameter": names,
            "em": em_flat,
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
        em_seconds=em_seconds,
        bayes_seconds=bayes_seconds,
    )


def format_fit(result: RealDataFit, X: np.ndarray) -> str:
    """A plain-text report of :func:`fit_data` for the terminal.

    Parameters
    ----------
    result : RealDataFit
    X : ndarray of shape (n_samples, n_features)
        The data that was fitted.

    Returns
    -------
    str
    """
    n, d = X.shape
    k = result.em.n_components
    diag = result.bayes.diagnostics
    model = result.em_model
    lines = [
        f"data: {n} observations, {d} features; {k} components",
        f"EM: {'converged' if model.converged_ else 'NOT converged'} after {model.n_iter_} "
        f"iterations ({result.em_seconds:.2f} s); BIC = {model.bic(X):.2f} (lower is better)",
        f"Bayes ({diag.get('sampler', '?')}): {result.bayes_seconds:.1f} s; "
        f"max r_hat = {_num(diag.get('max_r_hat'))}, min ESS bulk = "
        f"{_num(diag.get('min_ess_bulk'), '.0f')}, divergences = {diag.get('n_divergences', '?')}"
        f", label switching = {'yes' if diag.get('label_switching') else 'no'}",
        "",
        "mean log-likelihood per observation:",
        f"  at the EM estimate        {result.log_likelihood['em']:.4f}",
        f"  at the posterior mean     {result.log_likelihood['posterior_mean']:.4f}",
        "",
        f"posterior against the EM estimate ({100 * result.level:g}% central intervals):",
    ]
    table = result.comparison.copy()
    table["em_inside"] = table["em_inside"].map({True: "yes", False: "NO"})
    table = table.rename(
        columns={
            "posterior_mean": "post. mean",
            "posterior_sd": "post. sd",
            "em_inside": "EM inside",
        }
    )
    lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines)


def _num(value: object, fmt: str = ".3f") -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return format(value, fmt)
    return "?"
