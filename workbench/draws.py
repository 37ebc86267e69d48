"""The mixture density under many parameter draws at once, in one compiled loop.

A posterior has thousands of draws; evaluating each with :func:`workbench.mixture.log_prob`
costs a NumPy pass and an (n, K) temporary per draw. Here the component densities, the
log-sum-exp (or softmax) over components and the loop over draws are fused in one numba
kernel, so nothing of shape (S, n, K) is built unless the allocation probabilities are
asked for. Used by the Bayesian fit (pointwise log-likelihood, Stephens' relabelling) and by
the scores (posterior predictive density of the test data).

The component density is that of :func:`workbench.mixture.component_log_prob`:
``y = (x - mu_k) U_k`` with ``U_k`` the upper Cholesky factor of the precision and
``log N = log det U_k - (d log(2 pi) + |y|^2) / 2``.
"""

from __future__ import annotations

import numba
import numpy as np

from workbench.mixture import LOG_2PI, precisions_cholesky_from_covariances

__all__ = ["draw_allocation_probabilities", "draw_log_density", "log_mean_exp_density"]


@numba.njit(cache=True)
def _draw_density_kernel(
    X: np.ndarray,
    log_w: np.ndarray,
    means: np.ndarray,
    precisions_chol: np.ndarray,
    probabilities: bool,
) -> np.ndarray:
    """Log mixture density (S, n, 1) or allocation probabilities (S, n, K) for every draw."""
    n, d = X.shape
    S, K = log_w.shape
    out = np.empty((S, n, K)) if probabilities else np.empty((S, n, 1))
    offsets = np.empty(K)
    a = np.empty(K)
    for s in range(S):
        for k in range(K):
            offsets[k] = log_w[s, k] - 0.5 * d * LOG_2PI
            for j in range(d):
                offsets[k] += np.log(precisions_chol[s, k, j, j])
        for i in range(n):
            top = -np.inf
            for k in range(K):
                squared = 0.0
                for c in range(d):
                    value = 0.0
                    for r in range(c + 1):
                        value += (X[i, r] - means[s, k, r]) * precisions_chol[s, k, r, c]
                    squared += value * value
                a[k] = offsets[k] - 0.5 * squared
                top = max(top, a[k])
            total = 0.0
            for k in range(K):
                a[k] = np.exp(a[k] - top)
                total += a[k]
            if probabilities:
                for k in range(K):
                    out[s, i, k] = a[k] / total
            else:
                out[s, i, 0] = top + np.log(total)
    return out


def _draw_densities(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    *,
    probabilities: bool,
) -> np.ndarray:
    """Evaluate :func:`_draw_density_kernel` for draws of dense covariances."""
    S, K, d = means.shape
    precisions_chol = precisions_cholesky_from_covariances(
        np.asarray(covariances, dtype=float).reshape(-1, d, d), "full"
    ).reshape(S, K, d, d)
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, dtype=float))
    return _draw_density_kernel(
        np.ascontiguousarray(X, dtype=float),
        np.ascontiguousarray(log_w),
        np.ascontiguousarray(means, dtype=float),
        precisions_chol,
        probabilities,
    )


def draw_log_density(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Log mixture density of every observation under every draw.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, d)
    covariances : ndarray of shape (S, K, d, d)
        Dense, positive definite.

    Returns
    -------
    ndarray of shape (S, n)
    """
    return _draw_densities(X, weights, means, covariances, probabilities=False)[..., 0]


def draw_allocation_probabilities(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Probability that each observation belongs to each component, under every draw.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, d)
    covariances : ndarray of shape (S, K, d, d)

    Returns
    -------
    ndarray of shape (S, n, K)
        Rows sum to 1.
    """
    return _draw_densities(X, weights, means, covariances, probabilities=True)


def log_mean_exp_density(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Log posterior predictive density, ``log mean_s p(x_i | theta_s)``, of every observation.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, d)
    covariances : ndarray of shape (S, K, d, d)

    Returns
    -------
    ndarray of shape (n,)
    """
    per_draw = draw_log_density(X, weights, means, covariances)
    top = per_draw.max(axis=0)
    return top + np.log(np.mean(np.exp(per_draw - top), axis=0))
