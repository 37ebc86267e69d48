"""Gaussian mixture parameters and the density maths every other module uses.

This is the one place where the Gaussian mixture density is written down. The EM core, the
simulator, the Bayesian model tests and the metrics all call these functions.

Covariance shapes follow scikit-learn's conventions for a mixture with ``K`` components in
``d`` dimensions:

=============  ==================
``full``       ``(K, d, d)``
``tied``       ``(d, d)``
``diag``       ``(K, d)``
``spherical``  ``(K,)``
=============  ==================

Precisions are stored as the upper-triangular factor ``U`` with ``precision = U @ U.T``
(``U = inv(chol(covariance)).T``), exactly as ``GaussianMixture.precisions_cholesky_``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

__all__ = [
    "COVARIANCE_TYPES",
    "CovarianceType",
    "MixtureParams",
    "aic",
    "bic",
    "component_log_prob",
    "log_prob",
    "n_parameters",
    "precisions_cholesky_from_covariances",
    "responsibilities",
    "sample",
    "to_full_covariances",
]

CovarianceType = Literal["full", "tied", "diag", "spherical"]
COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")

LOG_2PI = float(np.log(2.0 * np.pi))


def check_covariance_type(covariance_type: str) -> None:
    """Raise ``ValueError`` naming ``covariance_type`` unless it is one of ``COVARIANCE_TYPES``."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type={covariance_type!r} is not supported; "
            f"use one of {', '.join(COVARIANCE_TYPES)}"
        )


def to_full_covariances(
    covariances: np.ndarray, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Expand covariances of any type to dense matrices.

    Parameters
    ----------
    covariances : ndarray
        Shape depends on ``covariance_type`` (see the module docstring).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n_components, n_features : int

    Returns
    -------
    ndarray of shape (n_components, n_features, n_features)
    """
    check_covariance_type(covariance_type)
    covariances = np.asarray(covariances, dtype=float)
    if covariance_type == "full":
        return covariances.copy()
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (n_components, n_features, n_features)).copy()
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in covariances])
    eye = np.eye(n_features)
    return covariances[:, None, None] * eye


def precisions_cholesky_from_covariances(
    covariances: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Upper-triangular Cholesky factors of the precision matrices.

    Parameters
    ----------
    covariances : ndarray
        Shape depends on ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    ndarray
        Same shape as ``covariances``. For ``diag`` and ``spherical`` it is ``1/sqrt(var)``.

    Raises
    ------
    ValueError
        If a covariance is not positive definite. The message names the component.
    """
    check_covariance_type(covariance_type)
    covariances = np.asarray(covariances)
    if covariance_type in ("full", "tied"):
        stack = covariances[None] if covariance_type == "tied" else covariances
        # Batched numpy LAPACK: per-matrix scipy calls cost milliseconds each when
        # OpenBLAS threads compete for the two cores.
        try:
            chol = np.linalg.cholesky(stack)
        except np.linalg.LinAlgError:
            k = next(k for k, cov in enumerate(stack) if not _is_positive_definite(cov))
            which = "the tied covariance" if covariance_type == "tied" else f"component {k}"
            raise ValueError(
                f"covariance of {which} is not positive definite "
                "(a singleton or collapsed component); increase reg_covar, "
                "decrease n_components, or scale the input data"
            ) from None
        # inv() pivots, so clear the rounding noise it leaves below the diagonal.
        out = np.triu(np.swapaxes(np.linalg.inv(chol), -1, -2))
        return out[0] if covariance_type == "tied" else out
    bad = np.flatnonzero(~(np.atleast_1d(covariances) > 0))
    if bad.size:
        raise ValueError(
            f"variance of component {int(bad[0])} is {covariances.flat[bad[0]]!r}; "
            "variances must be positive: increase reg_covar or decrease n_components"
        )
    return 1.0 / np.sqrt(covariances)


def _is_positive_definite(matrix: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def log_det_precision_cholesky(
    precisions_cholesky: np.ndarray, covariance_type: str, n_features: int
) -> np.ndarray:
    """Log-determinant of each precision Cholesky factor, read off its diagonal.

    Returns
    -------
    ndarray of shape (n_components,), or a scalar for ``tied``.
    """
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(precisions_cholesky)))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_cholesky), axis=1)
    return n_features * np.log(precisions_cholesky)


def component_log_prob(
    X: np.ndarray, means: np.ndarray, precisions_cholesky: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Log density of every sample under every component, ``log N(x_i | mu_k, Sigma_k)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_components, n_features)
    precisions_cholesky : ndarray
        Upper Cholesky factors of the precisions, shaped by ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    ndarray of shape (n_samples, n_components)
    """
    check_covariance_type(covariance_type)
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    log_det = log_det_precision_cholesky(precisions_cholesky, covariance_type, n_features)
    if covariance_type == "full":
        maha = np.empty((n_samples, n_components), dtype=X.dtype)
        for k in range(n_components):
            y = X @ precisions_cholesky[k] - means[k] @ precisions_cholesky[k]
            maha[:, k] = np.einsum("ij,ij->i", y, y)
    elif covariance_type == "tied":
        y = X @ precisions_cholesky
        my = means @ precisions_cholesky
        maha = np.einsum("ij,ij->i", y, y)[:, None] - 2.0 * (y @ my.T) + np.sum(my**2, axis=1)
    elif covariance_type == "diag":
        precisions = precisions_cholesky**2
        maha = (
            np.sum(means**2 * precisions, axis=1)
            - 2.0 * (X @ (means * precisions).T)
            + (X**2) @ precisions.T
        )
    else:
        precisions = precisions_cholesky**2
        maha = (
            np.sum(means**2, axis=1) * precisions
            - 2.0 * (X @ means.T * precisions)
            + np.outer(np.einsum("ij,ij->i", X, X), precisions)
        )
    return -0.5 * (n_features * LOG_2PI + maha) + log_det


def log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """Log mixture density ``log sum_k w_k N(x_i | mu_k, Sigma_k)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : MixtureParams

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    # scipy is imported on first use: reading configs and stores (the CLI) never loads it
    from scipy.special import logsumexp

    return logsumexp(params.weighted_log_prob(X), axis=1)


def responsibilities(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """Posterior component membership probabilities.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : MixtureParams

    Returns
    -------
    ndarray of shape (n_samples, n_components), rows sum to 1.
    """
    # softmax normalises in linear space (exp(x - max) / sum), so rows sum to 1 to a few
    # ulps; exp(x - logsumexp(x)) would be off by about |log density| * eps.
    from scipy.special import softmax

    return softmax(params.weighted_log_prob(X), axis=1)


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Number of free parameters: covariances, means and ``K - 1`` weights."""
    check_covariance_type(covariance_type)
    k, d = n_components, n_features
    covariance = {
        "full": k * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": k * d,
        "spherical": k,
    }[covariance_type]
    return covariance + k * d + k - 1


def bic(loglik: float, n_params: int, n_samples: int) -> float:
    """``-2 loglik + p log n``: scikit-learn's BIC, lower is better (mclust's is its negative)."""
    return -2.0 * loglik + n_params * math.log(n_samples)


def aic(loglik: float, n_params: int) -> float:
    """``-2 loglik + 2 p``: scikit-learn's AIC, lower is better."""
    return -2.0 * loglik + 2.0 * n_params


def sample(
    params: MixtureParams, n_samples: int, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw samples from the mixture.

    Parameters
    ----------
    params : MixtureParams
    n_samples : int
    rng : numpy.random.Generator or seed

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,), the component of each draw.
    """
    rng = np.random.default_rng(rng)
    labels = rng.choice(params.n_components, size=n_samples, p=params.weights)
    chol = np.linalg.cholesky(params.covariances)
    z = rng.standard_normal((n_samples, params.n_features))
    X = params.means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    return X, labels


@dataclass(frozen=True)
class MixtureParams:
    """Parameters of a Gaussian mixture with dense covariances.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
        Non-negative, summing to 1.
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape (n_components, n_features, n_features)
        Symmetric positive definite.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights, dtype=float)
        means = np.asarray(self.means, dtype=float)
        covariances = np.asarray(self.covariances, dtype=float)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (n_components, n_features), got {means.shape}")
        k, d = means.shape
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {weights.shape}")
        if covariances.shape != (k, d, d):
            raise ValueError(
                f"covariances must have shape ({k}, {d}, {d}), got {covariances.shape}"
            )
        if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, atol=1e-8):
            raise ValueError(f"weights must be non-negative and sum to 1, got {weights}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covariances", covariances)

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @classmethod
    def from_covariance_type(
        cls,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        covariance_type: str,
    ) -> MixtureParams:
        """Build from covariances in any of scikit-learn's four shapes."""
        means = np.asarray(means, dtype=float)
        k, d = means.shape
        return cls(weights, means, to_full_covariances(covariances, covariance_type, k, d))

    def permuted(self, order: np.ndarray) -> MixtureParams:
        """Return the components reordered: component ``j`` of the result is ``order[j]``."""
        order = np.asarray(order)
        return MixtureParams(self.weights[order], self.means[order], self.covariances[order])

    def weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        """``log w_k + log N(x_i | mu_k, Sigma_k)``, shape (n_samples, n_components)."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, {self.n_features}), got {X.shape}")
        prec_chol = precisions_cholesky_from_covariances(self.covariances, "full")
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights)
        return component_log_prob(X, self.means, prec_chol, "full") + log_weights


class ParameterName(NamedTuple):
    """One scalar parameter of a mixture: its stored name and where it sits.

    Attributes
    ----------
    name : str
        ``"weight[k]"``, ``"mean[k,j]"`` or ``"cov[k,i,j]"`` (``i <= j``).
    kind : {'weight', 'mean', 'covariance'}
    component : int
        ``k``.
    position : tuple of int
        ``()`` for a weight, ``(j,)`` for a mean, ``(i, j)`` for a covariance entry.
    """

    name: str
    kind: str
    component: int
    # Not ``index``: that would shadow ``tuple.index``.
    position: tuple[int, ...]


def parameter_names(n_components: int, n_features: int) -> list[ParameterName]:
    """The scalar parameters of a mixture, in the order of :func:`flatten_parameters`.

    Returns
    -------
    list of ParameterName, of length ``K + K d + K d (d + 1) / 2``
    """
    k, d = n_components, n_features
    iu, ju = np.triu_indices(d)
    names = [ParameterName(f"weight[{c}]", "weight", c, ()) for c in range(k)]
    names += [ParameterName(f"mean[{c},{j}]", "mean", c, (j,)) for c in range(k) for j in range(d)]
    names += [
        ParameterName(f"cov[{c},{i},{j}]", "covariance", c, (int(i), int(j)))
        for c in range(k)
        for i, j in zip(iu, ju, strict=True)
    ]
    return names


def flatten_parameters(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Stack mixture parameters into one vector per draw, in the order of :func:`parameter_names`.

    Parameters
    ----------
    weights : ndarray of shape (..., K)
    means : ndarray of shape (..., K, d)
    covariances : ndarray of shape (..., K, d, d)
        Only the upper triangle is kept.

    Returns
    -------
    ndarray of shape (..., K + K d + K d (d + 1) / 2)
    """
    lead = weights.shape[:-1]
    iu, ju = np.triu_indices(means.shape[-1])
    return np.concatenate(
        [
            weights,
            means.reshape(*lead, -1),
            covariances[..., iu, ju].reshape(*lead, -1),
        ],
        axis=-1,
    )
