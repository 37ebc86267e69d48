"""Scoring one fit against the truth: likelihoods, parameter errors, coverage, ARI.

EM point estimates and Bayesian posterior draws are scored by the same code, so every
number in a :class:`FitScore` means the same thing for both methods:

``loglik_train_truth`` / ``loglik_train_estimate``
    Mean log-likelihood per training point at the true parameters and at the estimate
    (EM estimate, or posterior mean of the aligned draws).
``lpd_test`` / ``lpd_test_truth``
    Mean log predictive density per held-out point. For EM the plug-in density at the
    estimate; for Bayes the posterior predictive ``log mean_s p(x | theta_s)`` (log-mean-exp
    over draws). ``lpd_test_plugin`` is the plug-in density at the posterior mean, for
    comparison.
``loglik_train_dgp`` / ``lpd_test_dgp``
    The same averages under the data-generating distribution itself
    (:func:`workbench.simulate.data_log_density`): equal to the ``*_truth`` values for a
    well-specified scenario, and the best achievable in expectation under
    misspecification, so ``lpd_test_dgp - lpd_test`` estimates the Kullback-Leibler
    divergence from the data-generating distribution to the fitted predictive.
``ari`` / ``ari_test``
    Adjusted Rand index of the most likely component of each inlier point (outliers,
    labelled ``-1``, are left out) against the true labels, on the training / test set.
``error_rate``
    Share of inlier training points whose most likely (aligned) component is not their
    true one.
``component_kl``
    Mean over components of ``KL(true component || aligned estimated component)``.
``fit_seconds``
    Wall time of the fit, as passed in by the caller.

Parameter errors are reported per scalar parameter after alignment to the truth (see
:mod:`workbench.align`): ``weight[k]``, ``mean[k,j]`` and ``cov[k,i,j]`` for ``i <= j``,
with ``k`` the index of the true component.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workbench.align import align_posterior, align_to_reference, kl_divergence
from workbench.mixture import (
    MixtureParams,
    flatten_parameters,
    log_prob,
    parameter_names,
)
from workbench.simulate import Dataset, data_log_density

if TYPE_CHECKING:
    from workbench.em.inference import ConfidenceIntervals

__all__ = [
    "DEFAULT_LEVELS",
    "INTERVAL_KINDS",
    "FitScore",
    "Interval",
    "ParameterEstimate",
    "StandardError",
    "central_interval",
    "flat_permutation",
    "hdi_interval",
    "score_point_estimate",
    "score_posterior",
]

INTERVAL_KINDS: tuple[str, ...] = ("central", "hdi")
#: Credible levels scored when the caller (or the study's ``[output] levels``) gives none.
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class Interval:
    """A credible interval for one parameter and whether it covers the truth.

    Attributes
    ----------
    kind : str
        ``'central'`` or ``'hdi'`` for a posterior; for EM the method of
        :class:`workbench.em.ConfidenceIntervals`, e.g. ``'sandwich-wald'`` or
        ``'nonparametric-bootstrap-percentile'``.
    level : float
        Nominal probability, in (0, 1).
    lower, upper : float
    covered : bool
        ``lower <= truth <= upper``.
    """

    kind: str
    level: float
    lower: float
    upper: float
    covered: bool


@dataclass(frozen=True)
class ParameterEstimate:
    """Truth and estimate of one scalar parameter after alignment.

    Attributes
    ----------
    parameter : str
        ``"weight[k]"``, ``"mean[k,j]"`` or ``"cov[k,i,j]"`` (``i <= j``); ``k`` indexes the
        true components.
    kind : {'weight', 'mean', 'covariance'}
    truth, estimate : float
        The estimate is the EM point estimate or the posterior mean.
    sd : float
        Posterior standard deviation; nan for a point estimate (its standard errors are
        :class:`StandardError` records).
    intervals : tuple of Interval
        Credible intervals, or the confidence intervals of a point estimate.
    """

    parameter: str
    kind: str
    truth: float
    estimate: float
    sd: float
    intervals: tuple[Interval, ...]


@dataclass(frozen=True)
class StandardError:
    """One standard error of a point estimate's parameter, after alignment.

    Attributes
    ----------
    parameter : str
        As :attr:`ParameterEstimate.parameter`.
    method : str
        How it was estimated: ``'hessian'``, ``'opg'``, ``'sandwich'`` or ``'bootstrap'``
        (the SD of the bootstrap draws).
    se : float
    """

    parameter: str
    method: str
    se: float


@dataclass(frozen=True)
class FitScore:
    """Everything measured about one fit.

    Attributes
    ----------
    method : str
    metrics : dict of str to float
        See the module docstring for the keys.
    estimates : tuple of ParameterEstimate
    standard_errors : tuple of StandardError
        Of a point estimate whose standard errors were given; else empty.
    """

    method: str
    metrics: dict[str, float]
    estimates: tuple[ParameterEstimate, ...]
    standard_errors: tuple[StandardError, ...] = ()


def central_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval from the ``(1-level)/2`` and ``(1+level)/2`` quantiles.

    Parameters
    ----------
    draws : ndarray of shape (n_draws, n_params)
    level : float in (0, 1)

    Returns
    -------
    lower, upper : ndarray of shape (n_params,)
    """
    from arviz_stats.base import array_stats  # loads xarray: only when scoring draws

    bounds = array_stats.eti(np.asarray(draws, dtype=float), level, axis=0)
    return bounds[..., 0], bounds[..., 1]


def hdi_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Shortest interval holding ``ceil(level * n_draws)`` of the sorted draws.

    This is the usual sample highest-density interval for a unimodal marginal. It is not
    ``arviz_stats.hdi``: that one spans ``floor(level * n) + 1`` draws, one more than
    needed when ``level * n`` is whole (e.g. 901 of 1000 draws at level 0.9), so it is
    wider than the shortest interval with the nominal share of draws by one spacing
    (up to 0.04 at 1000 standard normal draws). The tests check both facts.

    Parameters
    ----------
    draws : ndarray of shape (n_draws, n_params)
    level : float in (0, 1)

    Returns
    -------
    lower, upper : ndarray of shape (n_params,)
    """
    ordered = np.sort(draws, axis=0)
    n = ordered.shape[0]
    inside = max(1, math.ceil(level * n))
    widths = ordered[inside - 1 :] - ordered[: n - inside + 1]
    start = np.argmin(widths, axis=0)
    cols = np.arange(ordered.shape[1])
    return ordered[start, cols], ordered[start + inside - 1, cols]


_INTERVAL_FUNCTIONS = {"central": central_interval, "hdi": hdi_interval}


def _map_labels(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    return np.argmax(params.weighted_log_prob(X), axis=1)


def _shared_metrics(dataset: Dataset, aligned: MixtureParams) -> dict[str, float]:
    """Metrics computed the same way for any aligned point estimate."""
    truth = dataset.truth
    inlier_train = dataset.y_train >= 0
    inlier_test = dataset.y_test >= 0
    map_train = _map_labels(dataset.X_train[inlier_train], aligned)
    map_test = _map_labels(dataset.X_test[inlier_test], aligned)
    y_train = dataset.y_train[inlier_train]
    from sklearn.metrics import adjusted_rand_score  # scoring only: keeps config loading light

    kl = kl_divergence(truth.means, truth.covariances, aligned.means, aligned.covariances)
    return {
        "loglik_train_truth": float(np.mean(log_prob(dataset.X_train, truth))),
        "loglik_train_estimate": float(np.mean(log_prob(dataset.X_train, aligned))),
        "lpd_test_truth": float(np.mean(log_prob(dataset.X_test, truth))),
        "loglik_train_dgp": float(
            np.mean(data_log_density(dataset.X_train, truth, dataset.scenario))
        ),
        "lpd_test_dgp": float(np.mean(data_log_density(dataset.X_test, truth, dataset.scenario))),
        "ari": float(adjusted_rand_score(y_train, map_train)),
        "ari_test": float(adjusted_rand_score(dataset.y_test[inlier_test], map_test)),
        "error_rate": float(np.mean(map_train != y_train)),
        "component_kl": float(np.mean(kl)),
    }


def _check_k(estimate_k: int, dataset: Dataset) -> None:
    if estimate_k != dataset.truth.n_components:
        raise ValueError(
            f"the fit has {estimate_k} components but the truth has "
            f"{dataset.truth.n_components}; scoring against the truth needs the same number"
        )


def flat_permutation(order: np.ndarray, n_features: int) -> np.ndarray:
    """Where each scalar parameter of a permuted mixture comes from in the original.

    Parameters
    ----------
    order : ndarray of int, shape (K,)
        As :meth:`workbench.mixture.MixtureParams.permuted`: component ``j`` of the result is
        component ``order[j]`` of the original.
    n_features : int

    Returns
    -------
    ndarray of int, shape (K + K d + K d (d + 1) / 2,)
        ``flat_original[index]`` is the flattened permuted mixture
        (:func:`workbench.mixture.flatten_parameters` order).
    """
    order = np.asarray(order, dtype=np.intp)
    k, d = order.size, n_features
    n_cov = d * (d + 1) // 2
    weights = np.arange(k)
    means = k + np.arange(k * d).reshape(k, d)
    iu, ju = np.triu_indices(d)
    covariances = np.empty((k, d, d), dtype=np.intp)
    covariances[:, iu, ju] = k + k * d + np.arange(k * n_cov).reshape(k, n_cov)
    return flatten_parameters(weights[order], means[order], covariances[order])


def score_point_estimate(
    dataset: Dataset,
    estimate: MixtureParams,
    *,
    method: str = "em",
    fit_seconds: float = math.nan,
    intervals: Sequence[ConfidenceIntervals] = (),
    standard_errors: Mapping[str, np.ndarray] | None = None,
) -> FitScore:
    """Score a point estimate (e.g. EM) and its confidence intervals against the truth.

    The estimate is aligned to the truth first (:func:`workbench.align.align_to_reference`,
    KL cost); its intervals and standard errors are permuted with it.

    Parameters
    ----------
    dataset : Dataset
    estimate : MixtureParams with the same K and d as ``dataset.truth``
    method : str
    fit_seconds : float
    intervals : sequence of ConfidenceIntervals
        Confidence intervals of ``estimate`` (:mod:`workbench.em.inference`), in its own
        component order, each with ``lower`` and ``upper`` of shape (M,) under the names
        of :func:`workbench.mixture.parameter_names`; one per interval method and level.
        Each becomes an :class:`Interval` of kind ``intervals[i].method``.
    standard_errors : mapping of str to ndarray of shape (M,), optional
        Standard errors of ``estimate`` per SE method, in its own component order.

    Returns
    -------
    FitScore
        ``sd`` is nan for every parameter.
    """
    _check_k(estimate.n_components, dataset)
    truth = dataset.truth
    k, d = truth.n_components, truth.n_features
    order = align_to_reference(estimate, truth)
    aligned = estimate.permuted(order)
    index = flat_permutation(order, d)
    metrics = _shared_metrics(dataset, aligned)
    metrics["lpd_test"] = float(np.mean(log_prob(dataset.X_test, aligned)))
    metrics["fit_seconds"] = float(fit_seconds)
    names = parameter_names(k, d)
    true_flat = flatten_parameters(truth.weights, truth.means, truth.covariances)
    est_flat = flatten_parameters(aligned.weights, aligned.means, aligned.covariances)
    for ci in intervals:
        if ci.lower.shape != (len(names),):
            raise ValueError(
                f"interval {ci.method!r} has {ci.lower.shape} bounds; the mixture has "
                f"{len(names)} scalar parameters"
            )
    bounds = [(ci.method, ci.level, ci.lower[index], ci.upper[index]) for ci in intervals]
    estimates = tuple(
        ParameterEstimate(
            p.name,
            p.kind,
            float(t),
            float(e),
            math.nan,
            tuple(
                Interval(kind, float(level), float(lo[i]), float(hi[i]), bool(lo[i] <= t <= hi[i]))
                for kind, level, lo, hi in bounds
            ),
        )
        for i, (p, t, e) in enumerate(zip(names, true_flat, est_flat, strict=True))
    )
    ses = tuple(
        StandardError(p.name, se_method, float(values[index][i]))
        for se_method, values in (standard_errors or {}).items()
        for i, p in enumerate(names)
    )
    return FitScore(method, metrics, estimates, ses)


def _thin(n_draws: int, max_draws: int) -> np.ndarray:
    """Indices of at most ``max_draws`` draws, evenly spaced over all of them."""
    if n_draws <= max_draws:
        return np.arange(n_draws)
    return np.unique(np.linspace(0, n_draws - 1, max_draws).round().astype(np.intp))


def score_posterior(
    dataset: Dataset,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    *,
    method: str = "bayes",
    levels: Sequence[float] = DEFAULT_LEVELS,
    fit_seconds: float = math.nan,
    max_lpd_draws: int = 1000,
) -> FitScore:
    """Score posterior draws against the truth of their dataset.

    The draws must already share one labelling (relabelled among themselves). The
    posterior mean is aligned to the truth and that one permutation is applied to every
    draw. Point metrics use the posterior mean; ``lpd_test`` is the posterior predictive
    density, a log-mean-exp over draws. When there are more than ``max_lpd_draws`` draws,
    ``lpd_test`` uses ``max_lpd_draws`` of them, evenly spaced: thinning adds Monte Carlo
    noise to the estimate of the predictive density but keeps its target, and bounds the
    cost. Intervals and posterior moments always use all draws.

    Parameters
    ----------
    dataset : Dataset
    weights : array-like of shape (n_draws, K)
        Each row sums to 1 (to within 1e-6; rows are renormalised).
    means : array-like of shape (n_draws, K, d)
    covariances : array-like of shape (n_draws, K, d, d)
    method : str
    levels : sequence of float in (0, 1)
        Credible levels; a central and an HDI interval are computed at each.
    fit_seconds : float
    max_lpd_draws : int
        At most this many draws enter ``lpd_test``.

    Returns
    -------
    FitScore
        Metrics also include ``lpd_test_plugin``, ``n_draws`` and ``n_draws_lpd``.
    """
    weights = np.asarray(weights, dtype=float)
    means = np.asarray(means, dtype=float)
    covariances = np.asarray(covariances, dtype=float)
    truth = dataset.truth
    k, d = truth.n_components, truth.n_features
    if means.ndim != 3 or means.shape[0] < 2:
        raise ValueError(f"means must have shape (n_draws >= 2, K, d), got {means.shape}")
    s = means.shape[0]
    _check_k(means.shape[1], dataset)
    if means.shape != (s, k, d) or weights.shape != (s, k) or covariances.shape != (s, k, d, d):
        raise ValueError(
            f"draws must have shapes weights ({s}, {k}), means ({s}, {k}, {d}), covariances "
            f"({s}, {k}, {d}, {d}); got {weights.shape}, {means.shape}, {covariances.shape}"
        )
    row_sums = weights.sum(axis=1)
    if np.any(np.abs(row_sums - 1.0) > 1e-6) or np.any(weights < 0):
        raise ValueError("every row of weights must be non-negative and sum to 1")
    weights = weights / row_sums[:, None]
    bad_levels = [lv for lv in levels if not 0 < lv < 1]
    if bad_levels:
        raise ValueError(f"levels {bad_levels} are not allowed; each level must be in (0, 1)")
    if max_lpd_draws < 1:
        raise ValueError(f"max_lpd_draws={max_lpd_draws!r} must be a positive integer")

    weights, means, covariances, _ = draws = align_posterior(weights, means, covariances, truth)
    aligned = draws.mean()

    # numba: imported here so that reading stores and configs does not load it
    from workbench.draws import log_mean_exp_density

    keep = _thin(s, max_lpd_draws)
    metrics = _shared_metrics(dataset, aligned)
    metrics["lpd_test"] = float(
        np.mean(log_mean_exp_density(dataset.X_test, weights[keep], means[keep], covariances[keep]))
    )
    metrics["lpd_test_plugin"] = float(np.mean(log_prob(dataset.X_test, aligned)))
    metrics["fit_seconds"] = float(fit_seconds)
    metrics["n_draws"] = float(s)
    metrics["n_draws_lpd"] = float(len(keep))

    names = parameter_names(k, d)
    true_flat = flatten_parameters(truth.weights, truth.means, truth.covariances)
    draws_flat = flatten_parameters(weights, means, covariances)
    est_flat = flatten_parameters(aligned.weights, aligned.means, aligned.covariances)
    sds = draws_flat.std(axis=0, ddof=1)
    bounds = {
        (kind, level): _INTERVAL_FUNCTIONS[kind](draws_flat, level)
        for level in levels
        for kind in INTERVAL_KINDS
    }
    estimates = []
    for p, (name, kind, *_) in enumerate(names):
        true_value = float(true_flat[p])
        intervals = tuple(
            Interval(
                kind=iv_kind,
                level=float(level),
                lower=float(lower[p]),
                upper=float(upper[p]),
                covered=bool(lower[p] <= true_value <= upper[p]),
            )
            for (iv_kind, level), (lower, upper) in bounds.items()
        )
        estimates.append(
            ParameterEstimate(name, kind, true_value, float(est_flat[p]), float(sds[p]), intervals)
        )
    return FitScore(method, metrics, tuple(estimates))
