"""Bootstrap refits of a Gaussian mixture: whole EM runs inside one numba call.

A bootstrap of 999 refits of a small mixture is dominated by Python overhead if each EM
iteration goes through :func:`workbench.em.em_step` (about a millisecond per step here,
for a few microseconds of arithmetic). So a refit runs as one compiled loop: the E-step is
the shared fused pass of :mod:`workbench.em._kernels` (the same compiled function
``sufficient_statistics`` calls, so the density is written once), then the shared compiled
M-step of that module (the one :func:`workbench.em.m_step` calls, with the same ``10 * eps``
mass floor and ``reg_covar``), then a compiled transcription of the precision Cholesky
factors of :func:`workbench.em._steps.safe_precisions_cholesky` with its collapse rule.
``tests/test_em_inference_bootstrap.py`` checks that a refit follows ``em_step`` iteration
for iteration.

Convergence is the estimator's rule: stop when the mean log-likelihood changes by less
than ``tol`` between iterations; the parameters returned are those of the last M-step.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from workbench.em._kernels import (
    COVARIANCE_CODES,
    _fused_pass,
    _m_step_kernel,
    lower_triangular_inverse,
)

__all__ = ["RefitResult", "refit"]

CONVERGED, NOT_CONVERGED, COLLAPSED, NOT_FINITE = 0, 1, 2, 3
STATUS_NAMES = {
    CONVERGED: "converged",
    NOT_CONVERGED: "did not converge",
    COLLAPSED: "a component collapsed",
    NOT_FINITE: "non-finite log-likelihood",
}
# A conditional variance below this fraction of the variance (a condition number above
# about 1e12) counts as a collapse here, stricter than the estimator's absolute floor:
# otherwise a draw whose component sits on d or fewer distinct rows is kept with a
# covariance that is singular to rounding.
_RELATIVE_FLOOR = 1e-12


class RefitResult(NamedTuple):
    """One EM run from given parameters.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape (n_components, n_features, n_features)
        Dense, whatever the covariance type.
    n_iter : int
    status : int
        0 converged, 1 not converged in ``max_iter``, 2 a component collapsed,
        3 the log-likelihood was not finite.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    n_iter: int
    status: int


@njit(cache=True, nogil=True)
def _factor(cov, floor, prec_out):
    """Upper factor ``U`` of ``inv(cov) = U U^T`` into ``prec_out``; False if collapsed."""
    d = cov.shape[0]
    low = np.zeros((d, d))
    for j in range(d):
        s = cov[j, j]
        for m in range(j):
            s -= low[j, m] * low[j, m]
        # s is the conditional variance of feature j given the earlier ones.
        if not (s > floor[j] and s > _RELATIVE_FLOOR * cov[j, j]) or not np.isfinite(s):
            return False
        low[j, j] = np.sqrt(s)
        for i in range(j + 1, d):
            t = cov[i, j]
            for m in range(j):
                t -= low[i, m] * low[j, m]
            low[i, j] = t / low[j, j]
    inv = lower_triangular_inverse(low)  # U = inv(L)^T
    for i in range(d):
        for j in range(d):
            prec_out[i, j] = inv[j, i]
    return True


@njit(cache=True, nogil=True)
def _em_loop(
    X, sample_weight, weights, means, cov_matrix, cov_diag, kind, reg_covar, tol, max_iter, floor
):
    """Run EM in place on ``weights``, ``means`` and the covariance array of ``kind``.

    ``cov_matrix`` (K, d, d) holds 'full' and 'tied' covariances (every slice equal for
    'tied'), ``cov_diag`` (K, d) holds 'diag' and 'spherical' variances (every column
    equal for 'spherical'). Returns ``(n_iter, status)``.
    """
    n, d = X.shape
    k = means.shape[0]
    matrix = kind <= 1
    eps10 = 10 * np.finfo(np.float64).eps
    weight_sum = float(n) if sample_weight.shape[0] == 0 else np.sum(sample_weight)
    mean_floor = np.mean(floor)
    prec_matrix = np.zeros((k, d, d)) if matrix else np.zeros((0, 0, 0))
    prec_diag = np.zeros((0, 0)) if matrix else np.zeros((k, d))
    log_det = np.zeros(k)
    no_resp = np.zeros((0, 0))
    # Factors of the starting parameters.
    for c in range(k):
        if matrix:
            if not _factor(cov_matrix[c], floor, prec_matrix[c]):
                return 0, COLLAPSED
        else:
            for a in range(d):
                lim = mean_floor if kind == 3 else floor[a]
                if not cov_diag[c, a] > lim:
                    return 0, COLLAPSED
                prec_diag[c, a] = 1.0 / np.sqrt(cov_diag[c, a])
    previous = -np.inf
    for it in range(1, max_iter + 1):
        for c in range(k):
            s = 0.0
            for a in range(d):
                s += np.log(prec_matrix[c, a, a] if matrix else prec_diag[c, a])
            log_det[c] = s
        resp_sum, first, second, loglik = _fused_pass(
            X,
            sample_weight,
            no_resp,
            means,
            prec_matrix,
            prec_diag,
            np.log(weights),
            log_det,
            matrix,
        )
        lower_bound = loglik / weight_sum
        if not np.isfinite(lower_bound):
            return it, NOT_FINITE
        # The M-step around the old means, the shift of the pass.
        nk, new_means, new_matrix, new_diag = _m_step_kernel(
            resp_sum, first, second, means, kind, reg_covar, eps10
        )
        total = np.sum(nk)
        for c in range(k):
            weights[c] = nk[c] / total
            for a in range(d):
                means[c, a] = new_means[c, a]
        for c in range(k):
            if matrix:
                # 'tied' has one covariance; every component gets it.
                cov_matrix[c] = new_matrix[c if kind == 0 else 0]
                if not _factor(cov_matrix[c], floor, prec_matrix[c]):
                    return it, COLLAPSED
            else:
                for a in range(d):
                    cov_diag[c, a] = new_diag[c, a if kind == 2 else 0]
                    lim = mean_floor if kind == 3 else floor[a]
                    if not cov_diag[c, a] > lim:
                        return it, COLLAPSED
                    prec_diag[c, a] = 1.0 / np.sqrt(cov_diag[c, a])
        if abs(lower_bound - previous) < tol:
            return it, CONVERGED
        previous = lower_bound
    return max_iter, NOT_CONVERGED


def refit(
    X: np.ndarray,
    *,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    tol: float,
    max_iter: int,
    floor: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> RefitResult:
    """EM from the given parameters to convergence, in one compiled call.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64, C-contiguous
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        Shaped by ``covariance_type`` as ``GaussianMixture.covariances_``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar, tol : float
    max_iter : int
    floor : ndarray of shape (n_features,)
        Collapse threshold, :func:`workbench.em._steps.variance_floor` of the data.
    sample_weight : ndarray of shape (n_samples,), optional

    Returns
    -------
    RefitResult
    """
    kind = COVARIANCE_CODES[covariance_type]
    k, d = means.shape
    weights = np.array(weights, dtype=np.float64)
    means = np.array(means, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        cov_matrix, cov_diag = covariances.copy(), np.zeros((0, 0))
    elif covariance_type == "tied":
        cov_matrix, cov_diag = np.repeat(covariances[None], k, axis=0), np.zeros((0, 0))
    elif covariance_type == "diag":
        cov_matrix, cov_diag = np.zeros((0, 0, 0)), covariances.copy()
    else:
        cov_matrix, cov_diag = np.zeros((0, 0, 0)), np.repeat(covariances[:, None], d, axis=1)
    weight_arg = np.empty(0) if sample_weight is None else sample_weight
    n_iter, status = _em_loop(
        X,
        weight_arg,
        weights,
        means,
        cov_matrix,
        cov_diag,
        kind,
        float(reg_covar),
        float(tol),
        int(max_iter),
        np.asarray(floor, dtype=np.float64),
    )
    dense = cov_matrix if kind <= 1 else cov_diag[:, :, None] * np.eye(d)
    return RefitResult(weights, means, dense, int(n_iter), int(status))
