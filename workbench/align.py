"""Matching estimated mixture components to reference (true) components.

Mixture components are only identified up to a permutation, so before any estimate is
compared with the truth its components are matched to the true ones: the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment``) picks the permutation with the
smallest total cost. The cost between an estimated component ``e`` and a reference
component ``r`` is one of:

``"kl"`` (default)
    ``KL(N_r || N_e)``, the Kullback-Leibler divergence from the reference Gaussian to the
    estimated one. It uses means and covariances, so components with close means but
    different shapes are still told apart.
``"symmetric_kl"``
    ``KL(N_r || N_e) + KL(N_e || N_r)`` (Jeffreys divergence).
``"mahalanobis"``
    Squared Mahalanobis distance between the means under the reference covariance,
    ``(mu_e - mu_r)^T Sigma_r^{-1} (mu_e - mu_r)``.

Weights are not part of the cost: they are estimates to be scored after alignment.
The same cost code serves one estimate and a whole array of posterior draws.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from workbench.mixture import MixtureParams

__all__ = [
    "COSTS",
    "AlignedDraws",
    "align_draws",
    "align_posterior",
    "align_to_reference",
    "component_cost",
    "kl_divergence",
]

COSTS: tuple[str, ...] = ("kl", "symmetric_kl", "mahalanobis")


def _check_cost(cost: str) -> None:
    if cost not in COSTS:
        raise ValueError(f"cost={cost!r} is not supported; use one of {', '.join(COSTS)}")


def _log_det_from_cholesky(chol: np.ndarray) -> np.ndarray:
    return 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack ``(..., d, d)`` of covariances.

    A posterior draw's covariance (``L L^T`` of a sampled factor with a tiny diagonal) can be
    numerically singular; such a matrix alone gets a ridge of ``1e-12`` times its mean
    variance (or of 1e-300 when that is 0), so that matching it costs a large finite amount
    instead of failing the fit. Positive definite matrices are factored unchanged.
    """
    cov = np.asarray(cov, dtype=float)
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass
    flat = cov.reshape(-1, *cov.shape[-2:])
    out = np.empty_like(flat)
    eye = np.eye(cov.shape[-1])
    for i, matrix in enumerate(flat):
        try:
            out[i] = np.linalg.cholesky(matrix)
        except np.linalg.LinAlgError:
            ridge = max(1e-12 * float(np.mean(np.abs(np.diag(matrix)))), 1e-300)
            out[i] = np.linalg.cholesky((matrix + matrix.T) / 2 + ridge * eye)
    return out.reshape(cov.shape)


def _mahalanobis_sq(diff: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """``diff^T (L L^T)^{-1} diff`` for batched ``diff (..., d)`` and ``chol (..., d, d)``."""
    solved = np.linalg.solve(chol, diff[..., None])[..., 0]
    return np.sum(solved**2, axis=-1)


def kl_divergence(
    mean_p: np.ndarray, cov_p: np.ndarray, mean_q: np.ndarray, cov_q: np.ndarray
) -> float | np.ndarray:
    """Kullback-Leibler divergence ``KL(N(mean_p, cov_p) || N(mean_q, cov_q))``.

    ``0.5 * (tr(S_q^{-1} S_p) + (m_q - m_p)^T S_q^{-1} (m_q - m_p) - d + log|S_q| - log|S_p|)``

    Parameters
    ----------
    mean_p, mean_q : array-like of shape (..., d)
    cov_p, cov_q : array-like of shape (..., d, d)
        Symmetric positive definite (a numerically singular one gets a tiny ridge, see
        ``_cholesky``). Leading dimensions broadcast against each other.

    Returns
    -------
    float or ndarray of shape (...)
        A float when all inputs are unbatched. Exactly 0 for identical components.
    """
    mean_p, mean_q = np.asarray(mean_p, dtype=float), np.asarray(mean_q, dtype=float)
    chol_p = _cholesky(cov_p)
    chol_q = _cholesky(cov_q)
    chol_q, chol_p = np.broadcast_arrays(chol_q, chol_p)
    d = mean_p.shape[-1]
    # tr(S_q^{-1} S_p) = ||L_q^{-1} L_p||_F^2
    trace = np.sum(np.linalg.solve(chol_q, chol_p) ** 2, axis=(-2, -1))
    maha = _mahalanobis_sq(mean_q - mean_p, chol_q)
    log_det_ratio = _log_det_from_cholesky(chol_q) - _log_det_from_cholesky(chol_p)
    kl = 0.5 * (trace + maha - d + log_det_ratio)
    return float(kl) if np.ndim(kl) == 0 else kl


def _cost_matrix(
    means: np.ndarray, covariances: np.ndarray, reference: MixtureParams, cost: str
) -> np.ndarray:
    """Costs between estimated components ``(..., K_est)`` and reference components.

    Parameters
    ----------
    means : ndarray of shape (..., K_est, d)
    covariances : ndarray of shape (..., K_est, d, d)
    reference : MixtureParams with K_ref components

    Returns
    -------
    ndarray of shape (..., K_est, K_ref)
    """
    _check_cost(cost)
    if means.shape[-1] != reference.n_features:
        raise ValueError(
            f"estimate has {means.shape[-1]} features but the reference has "
            f"{reference.n_features}; they must match"
        )
    est_mean = means[..., :, None, :]
    est_cov = covariances[..., :, None, :, :]
    ref_mean, ref_cov = reference.means[None, :, :], reference.covariances[None, :, :, :]
    if cost == "mahalanobis":
        chol_ref = np.linalg.cholesky(ref_cov)
        diff = est_mean - ref_mean
        chol_ref = np.broadcast_to(chol_ref, diff.shape + diff.shape[-1:])
        return _mahalanobis_sq(diff, chol_ref)
    forward = kl_divergence(ref_mean, ref_cov, est_mean, est_cov)
    if cost == "kl":
        return np.asarray(forward)
    return np.asarray(forward + kl_divergence(est_mean, est_cov, ref_mean, ref_cov))


def component_cost(
    estimate: MixtureParams, reference: MixtureParams, cost: str = "kl"
) -> np.ndarray:
    """Cost of matching each estimated component to each reference component.

    Parameters
    ----------
    estimate, reference : MixtureParams
        Same number of features; the numbers of components may differ.
    cost : {'kl', 'symmetric_kl', 'mahalanobis'}
        See the module docstring.

    Returns
    -------
    ndarray of shape (K_est, K_ref)
    """
    return _cost_matrix(estimate.means, estimate.covariances, reference, cost)


def _order_from_cost(cost_matrix: np.ndarray) -> np.ndarray:
    # scipy is imported on first use: reading configs and stores (the CLI) never loads it
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost_matrix)
    order = np.empty(cost_matrix.shape[1], dtype=np.intp)
    order[cols] = rows
    return order


def _check_same_k(k_est: int, reference: MixtureParams) -> None:
    if k_est != reference.n_components:
        raise ValueError(
            f"estimate has {k_est} components but the reference has {reference.n_components}; "
            "alignment needs the same number"
        )


def align_to_reference(
    estimate: MixtureParams, reference: MixtureParams, cost: str = "kl"
) -> np.ndarray:
    """Permutation of the estimated components that lines them up with the reference.

    Parameters
    ----------
    estimate, reference : MixtureParams
        Same number of components ``K`` and features.
    cost : {'kl', 'symmetric_kl', 'mahalanobis'}

    Returns
    -------
    order : ndarray of shape (K,)
        ``estimate.permuted(order)`` has component ``k`` matched to reference component
        ``k``; the total cost of the matching is minimal.
    """
    _check_same_k(estimate.n_components, reference)
    return _order_from_cost(component_cost(estimate, reference, cost))


def align_draws(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    reference: MixtureParams,
    cost: str = "kl",
) -> np.ndarray:
    """Align every posterior draw to the reference, each with its own permutation.

    The costs of all draws are computed in one vectorised call; the Hungarian algorithm
    then runs once per draw.

    Parameters
    ----------
    weights : array-like of shape (n_draws, K)
        Not used by any cost; checked for shape so that the three arrays describe the same
        draws.
    means : array-like of shape (n_draws, K, d)
    covariances : array-like of shape (n_draws, K, d, d)
    reference : MixtureParams with K components
    cost : {'kl', 'symmetric_kl', 'mahalanobis'}

    Returns
    -------
    orders : ndarray of shape (n_draws, K)
        Row ``s`` is the :func:`align_to_reference` order of draw ``s``.
    """
    weights = np.asarray(weights, dtype=float)
    means = np.asarray(means, dtype=float)
    covariances = np.asarray(covariances, dtype=float)
    if means.ndim != 3:
        raise ValueError(f"means must have shape (n_draws, K, d), got {means.shape}")
    s, k, d = means.shape
    if weights.shape != (s, k) or covariances.shape != (s, k, d, d):
        raise ValueError(
            f"weights {weights.shape} and covariances {covariances.shape} must have shapes "
            f"({s}, {k}) and ({s}, {k}, {d}, {d}) to match means {means.shape}"
        )
    _check_same_k(k, reference)
    costs = _cost_matrix(means, covariances, reference, cost)
    return np.stack([_order_from_cost(c) for c in costs])


class AlignedDraws(NamedTuple):
    """Posterior draws permuted as one block so their mean lines up with a reference.

    Attributes
    ----------
    weights : ndarray of shape (n_draws, K)
    means : ndarray of shape (n_draws, K, d)
    covariances : ndarray of shape (n_draws, K, d, d)
    order : ndarray of shape (K,)
        The permutation applied to every draw.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    order: np.ndarray

    def mean(self) -> MixtureParams:
        """The posterior mean of the aligned draws."""
        return MixtureParams(self.weights.mean(0), self.means.mean(0), self.covariances.mean(0))


def align_posterior(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    reference: MixtureParams,
    cost: str = "kl",
) -> AlignedDraws:
    """Align draws that already share one labelling to a reference, by their posterior mean.

    One permutation, found from the posterior mean, is applied to every draw: the draws stay
    relabelled among themselves (unlike :func:`align_draws`, which permutes each draw on its
    own and would bias the posterior towards the reference).

    Parameters
    ----------
    weights : ndarray of shape (n_draws, K)
    means : ndarray of shape (n_draws, K, d)
    covariances : ndarray of shape (n_draws, K, d, d)
    reference : MixtureParams with K components, e.g. the truth
    cost : {'kl', 'symmetric_kl', 'mahalanobis'}

    Returns
    -------
    AlignedDraws
    """
    mean = MixtureParams(weights.mean(0), means.mean(0), covariances.mean(0))
    order = align_to_reference(mean, reference, cost)
    return AlignedDraws(weights[:, order], means[:, order], covariances[:, order], order)
