"""Pure EM step functions: the fused E-step, the M-step, one full EM step, precisions.

The estimator in :mod:`workbench.em._estimator` wraps these. Each function takes arrays
and returns new arrays; nothing here holds state.

The M-step reproduces scikit-learn's estimates exactly in exact arithmetic, including its
``10 * eps`` added to every component's mass (so an empty component never divides by
zero) and ``reg_covar`` added to the diagonal. Only the accumulation differs: a centred
sweep instead of dense ``(n_samples, n_components)`` responsibilities.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import linalg

from workbench.em._kernels import (
    COVARIANCE_CODES,
    SufficientStats,
    _m_step_kernel,
    sufficient_statistics,
)
from workbench.mixture import precisions_cholesky_from_covariances

__all__ = [
    "EMState",
    "StepResult",
    "covariances_from_precisions",
    "e_step",
    "em_step",
    "m_step",
    "m_step_state",
    "mean_log_likelihood",
    "precisions_cholesky_from_precisions",
    "safe_precisions_cholesky",
    "split_widest",
    "variance_floor",
]


class EMState(NamedTuple):
    """Mixture parameters in scikit-learn's shapes for one covariance type.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.
    precisions_cholesky : ndarray
        Same shape as ``covariances``.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray


class StepResult(NamedTuple):
    """Outcome of one EM step.

    Attributes
    ----------
    state : EMState
        Parameters after the M-step. Collapsed components hold placeholder precisions.
    lower_bound : float
        Weighted mean log-likelihood of the data under the parameters *before* the step
        (what scikit-learn records in ``lower_bounds_``).
    collapsed : tuple of int
        Components whose new covariance is singular (see :func:`safe_precisions_cholesky`).
    """

    state: EMState
    lower_bound: float
    collapsed: tuple[int, ...]


def m_step(
    stats: SufficientStats, *, reg_covar: float, covariance_type: str, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Component masses, means and covariances from centred sufficient statistics.

    Parameters
    ----------
    stats : SufficientStats
    reg_covar : float
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    dtype : numpy dtype
        Dtype of the data; its machine epsilon sets the ``10 * eps`` mass floor and the
        outputs are cast to it (float32 data give float32 parameters, as in scikit-learn).

    Returns
    -------
    nk : ndarray of shape (n_components,)
        Component masses including the ``10 * eps`` floor (not normalised).
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        Shaped by ``covariance_type``.
    """
    nk, means, cov_matrix, cov_diag = _m_step_kernel(
        stats.resp_sum,
        stats.first,
        # The kernel takes the fused pass's layout: a diagonal is row 0 of a matrix.
        stats.second if stats.second.ndim == 3 else stats.second[:, None, :],
        stats.shift,
        COVARIANCE_CODES[covariance_type],
        float(reg_covar),
        float(10 * np.finfo(dtype).eps),
    )
    if covariance_type in ("full", "diag"):
        covariances = cov_matrix if covariance_type == "full" else cov_diag
    else:
        # One shared covariance ('tied') or one variance per component ('spherical').
        covariances = cov_matrix[0] if covariance_type == "tied" else cov_diag[:, 0]
    return nk.astype(dtype), means.astype(dtype), covariances.astype(dtype)


def variance_floor(X: np.ndarray) -> np.ndarray:
    """Smallest variance a component may have before it counts as collapsed.

    ``(10 * eps * max|x_j|)^2`` per feature: a standard deviation within ten rounding
    units of the data's largest value is rounding noise, not spread. A component that
    narrow sits on one point (or on a set of points with zero spread in some direction),
    and its density, and with it the log-likelihood, grows without bound. The threshold
    is relative to the data's magnitude, so rescaling the data does not change which
    components count as collapsed.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)

    Returns
    -------
    ndarray of shape (n_features,)
    """
    magnitude = np.maximum(X.max(axis=0), -X.min(axis=0)).astype(np.float64)
    return (10 * np.finfo(X.dtype).eps * magnitude) ** 2


def safe_precisions_cholesky(
    covariances: np.ndarray, covariance_type: str, floor: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Precision Cholesky factors, reporting collapsed components instead of raising.

    Parameters
    ----------
    covariances : ndarray
        Shaped by ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    floor : ndarray of shape (n_features,), optional
        From :func:`variance_floor`. A component also counts as collapsed when the
        conditional variance of some feature given the earlier ones (the squared diagonal
        of its covariance's Cholesky factor; the variance itself for 'diag' and
        'spherical') is at or below the floor.

    Returns
    -------
    precisions_cholesky : ndarray
        Same shape as ``covariances``; collapsed components get an identity placeholder.
    collapsed : tuple of int
        Components whose covariance is not finite and positive definite. For 'tied' the
        single shared covariance is reported as component 0.
    """
    covariances = np.asarray(covariances)
    stack = covariances[None] if covariance_type == "tied" else covariances
    kind = "full" if covariance_type == "tied" else covariance_type
    limits: np.ndarray | np.floating = np.zeros(1) if floor is None else np.asarray(floor)
    if kind == "spherical":
        limits = np.mean(limits)
    out = np.empty_like(stack)
    collapsed = []
    for k in range(stack.shape[0]):
        cov = stack[k : k + 1]
        try:
            if not np.all(np.isfinite(cov)):
                raise ValueError("non-finite covariance")
            prec_chol = precisions_cholesky_from_covariances(cov, kind)[0]
        except ValueError:
            prec_chol = None
        if prec_chol is not None:
            # For 'full' the squared diagonal of the covariance's Cholesky factor holds
            # the conditional variances; the precision factor's diagonal is its inverse.
            spread = 1.0 / np.diagonal(prec_chol) ** 2 if kind == "full" else cov[0]
            if np.all(spread > limits):
                out[k] = prec_chol
                continue
        collapsed.append(k)
        out[k] = np.eye(stack.shape[-1], dtype=cov.dtype) if kind == "full" else 1
    return (out[0] if covariance_type == "tied" else out), tuple(collapsed)


def split_widest(
    state: EMState, collapsed: tuple[int, ...], covariance_type: str, spherical_axis: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replace each collapsed component by one half of the widest healthy component.

    The widest component (largest weight times total variance) is split along its longest
    axis: the two halves sit one standard deviation either side of its mean, share its
    covariance and half its weight. Splitting, unlike moving the component to the
    worst-explained rows, does not send it back to the isolated rows it collapsed on.

    Parameters
    ----------
    state : EMState
        Parameters whose ``collapsed`` components are to be replaced.
    collapsed : tuple of int
    covariance_type : {'full', 'diag', 'spherical'}
        'tied' has no per-component covariance to split.
    spherical_axis : int, default=0
        Direction of the split for 'spherical' components, which have no longest axis.

    Returns
    -------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray, shaped by ``covariance_type``

    Raises
    ------
    ValueError
        If every component collapsed.
    """
    weights, means, covariances = (a.copy() for a in state[:3])
    healthy = [k for k in range(len(weights)) if k not in collapsed]
    if not healthy:
        raise ValueError(
            "every component collapsed, so none can be split to re-seed them; "
            "increase reg_covar or decrease n_components"
        )
    n_features = means.shape[1]
    for k in collapsed:
        if covariance_type == "full":
            spread = np.trace(covariances[healthy], axis1=1, axis2=2)
        elif covariance_type == "diag":
            spread = covariances[healthy].sum(axis=1)
        else:
            spread = covariances[healthy] * n_features
        widest = healthy[int(np.argmax(weights[healthy] * spread))]
        if covariance_type == "full":
            eigenvalues, eigenvectors = np.linalg.eigh(covariances[widest])
            offset = np.sqrt(eigenvalues[-1]) * eigenvectors[:, -1]
        else:
            variances = np.broadcast_to(covariances[widest], (n_features,))
            axis = int(np.argmax(variances)) if covariance_type == "diag" else spherical_axis
            offset = np.zeros(n_features)
            offset[axis] = np.sqrt(variances[axis])
        means[k] = means[widest] + offset
        means[widest] = means[widest] - offset
        covariances[k] = covariances[widest]
        weights[k] = weights[widest] = weights[widest] / 2
        healthy.append(k)
    return weights, means, covariances


def e_step(
    X: np.ndarray,
    state: EMState,
    *,
    covariance_type: str,
    sample_weight: np.ndarray | None = None,
) -> SufficientStats:
    """E-step: responsibilities under ``state``, summed straight into sufficient statistics.

    The responsibilities are never stored: one fused pass over the rows accumulates what
    the M-step needs (and the log-likelihood), so memory does not grow with
    ``n_samples * n_components``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    state : EMState
        Current parameters; none of its components may be collapsed.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    sample_weight : ndarray of shape (n_samples,), optional

    Returns
    -------
    SufficientStats
        Centred on ``state.means``.
    """
    with np.errstate(divide="ignore"):
        # A component with zero initial weight has log weight -inf: it takes no mass.
        log_weights = np.log(state.weights.astype(np.float64))
    return sufficient_statistics(
        X,
        shift=state.means,
        covariance_type=covariance_type,
        sample_weight=sample_weight,
        log_weights=log_weights,
        precisions_cholesky=state.precisions_cholesky,
    )


def m_step_state(
    stats: SufficientStats,
    *,
    reg_covar: float,
    covariance_type: str,
    dtype: np.dtype,
    floor: np.ndarray | None = None,
) -> tuple[EMState, tuple[int, ...]]:
    """M-step to a full :class:`EMState`: :func:`m_step`, normalised weights, precisions.

    Parameters
    ----------
    stats : SufficientStats
        From :func:`e_step`.
    reg_covar : float
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    dtype : numpy dtype
        Dtype of the data (see :func:`m_step`).
    floor : ndarray of shape (n_features,), optional
        Collapse threshold from :func:`variance_floor`.

    Returns
    -------
    state : EMState
        Collapsed components hold placeholder precisions.
    collapsed : tuple of int
        See :func:`safe_precisions_cholesky`.
    """
    nk, means, covariances = m_step(
        stats, reg_covar=reg_covar, covariance_type=covariance_type, dtype=dtype
    )
    weights = nk / np.sum(nk)
    precisions_cholesky, collapsed = safe_precisions_cholesky(covariances, covariance_type, floor)
    return EMState(weights, means, covariances, precisions_cholesky), collapsed


def mean_log_likelihood(stats: SufficientStats) -> float:
    """Weighted mean log-likelihood of the E-step's parameters: scikit-learn's lower bound.

    Parameters
    ----------
    stats : SufficientStats
        From :func:`e_step`.

    Returns
    -------
    float
    """
    return stats.log_likelihood / stats.weight_sum


def em_step(
    X: np.ndarray,
    state: EMState,
    *,
    reg_covar: float,
    covariance_type: str,
    sample_weight: np.ndarray | None = None,
    floor: np.ndarray | None = None,
) -> StepResult:
    """One EM iteration: :func:`e_step`, then :func:`m_step_state`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    state : EMState
        Current parameters; none of its components may be collapsed.
    reg_covar : float
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    sample_weight : ndarray of shape (n_samples,), optional
    floor : ndarray of shape (n_features,), optional
        Collapse threshold from :func:`variance_floor`.

    Returns
    -------
    StepResult
    """
    stats = e_step(X, state, covariance_type=covariance_type, sample_weight=sample_weight)
    new_state, collapsed = m_step_state(
        stats, reg_covar=reg_covar, covariance_type=covariance_type, dtype=X.dtype, floor=floor
    )
    return StepResult(new_state, mean_log_likelihood(stats), collapsed)


def _flip(matrix: np.ndarray) -> np.ndarray:
    return matrix[::-1, ::-1]


def precisions_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Upper Cholesky factors ``U`` with ``precision = U U^T`` from precision matrices.

    Reversing rows and columns turns the lower Cholesky factor into the upper one we need
    (scikit-learn issue #26415), so no covariance inverse is formed.

    Parameters
    ----------
    precisions : ndarray
        (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    ndarray of the same shape.
    """
    if covariance_type == "full":
        return np.stack([_flip(linalg.cholesky(_flip(p), lower=True)) for p in precisions])
    if covariance_type == "tied":
        return _flip(linalg.cholesky(_flip(precisions), lower=True))
    return np.sqrt(precisions)


def covariances_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Invert precisions of any covariance type (shapes as in :class:`EMState`)."""
    if covariance_type in ("full", "tied"):
        return np.linalg.inv(precisions)
    return 1.0 / precisions
