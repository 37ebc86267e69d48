"""Closed-form scores and observed information of a Gaussian mixture's log-likelihood.

Free parameters
---------------
The log-likelihood ``l(theta) = sum_i log sum_k pi_k N(x_i | mu_k, Sigma_k)`` is written in
``P = n_parameters(K, d, covariance_type)`` free parameters, in this order:

* ``K - 1`` weights ``pi_0 .. pi_{K-2}``; the last weight is ``1 - sum`` of the others, so
  the sum-to-one constraint is built in;
* ``K d`` means, component by component;
* the covariance parameters: the upper triangle ``Sigma_k[a, b]`` (``a <= b``) of every
  component ('full'), of the one shared matrix ('tied'), the ``d`` variances of every
  component ('diag') or its single variance ('spherical').

Formulas (Louis 1982; Boldea & Magnus 2009)
-------------------------------------------
With ``f_ik = pi_k N(x_i | mu_k, Sigma_k)``, responsibilities ``tau_ik = f_ik / sum_j f_ij``
and ``g_ik = grad log f_ik``, the score of row ``i`` is ``s_i = sum_k tau_ik g_ik`` and its
Hessian is ``sum_k tau_ik (grad^2 log f_ik + g_ik g_ik^T) - s_i s_i^T``. For one Gaussian,
with precision ``P = Sigma^{-1}``, ``u = P (x - mu)`` and ``E_ab = dSigma / dSigma_ab``
(``e_a e_b^T + e_b e_a^T``, or ``e_a e_a^T`` on the diagonal):

* ``d/dmu = u`` and ``d/dSigma_ab = (1/2) tr(E_ab (u u^T - P))``;
* ``d2/dmu dmu^T = -P``; ``d2/dmu dSigma_ab = -P E_ab u``;
* ``d2/dSigma_ab dSigma_cd = -u^T E_ab P E_cd u + (1/2) tr(E_ab P E_cd P)``.

Diagonal and spherical covariances are restrictions of the full one (a spherical variance
moves every diagonal entry at once), so their derivatives are the full ones mapped through
a fixed matrix. The ``grad^2 log f_ik`` terms are linear in ``u`` and ``u u^T``, so their
sum over rows needs only ``sum tau``, ``sum tau u`` and ``sum tau u u^T``. The terms in
``g g^T`` and ``s s^T`` need every row; they are accumulated over blocks of rows, so no
``(n_samples, P)`` matrix is ever held.

Reported parameters
-------------------
Results are reported under the names of :func:`workbench.metrics.parameter_names`:
``weight[k]`` for all ``K`` weights, ``mean[k,j]``, and ``cov[k,i,j]`` for ``i <= j`` of
each component's dense covariance (a tied covariance repeats for every ``k``; the
off-diagonal entries of 'diag' and 'spherical' models are structural zeros with standard
error 0). The map from free to reported parameters is linear (:func:`reporting_jacobian`),
so the delta method is exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg.blas import dsyrk
from scipy.special import logsumexp, softmax

from workbench.mixture import component_log_prob, n_parameters, to_full_covariances

__all__ = [
    "Layout",
    "Moments",
    "check_information",
    "information_terms",
    "layout",
    "reporting_jacobian",
]

# Bytes of per-row temporaries per block: bounds memory whatever n_samples is.
_BLOCK_BYTES = 16 * 2**20


class Layout(NamedTuple):
    """Where each free parameter sits in the free-parameter vector.

    Attributes
    ----------
    n_components, n_features : int
    covariance_type : str
    n_free : int
    weight_index : ndarray of shape (K - 1,)
    mean_index : ndarray of shape (K, d)
    cov_index : ndarray of shape (K, q)
        ``q`` covariance parameters per component; for 'tied' every row is the same.
    pair_a, pair_b : ndarray of shape (n_pairs,)
        The covariance entries ``(a, b)``, ``a <= b``, that the parameters move.
    reduce : ndarray of shape (n_pairs, q)
        Derivatives with respect to the entries, times ``reduce``, give derivatives with
        respect to the parameters (identity, or a column of ones for 'spherical').
    half : ndarray of shape (n_pairs,)
        1/2 on diagonal entries, 1 off the diagonal (``E_aa`` counts ``a`` once).
    free_names : tuple of str
    """

    n_components: int
    n_features: int
    covariance_type: str
    n_free: int
    weight_index: np.ndarray
    mean_index: np.ndarray
    cov_index: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    reduce: np.ndarray
    half: np.ndarray
    free_names: tuple[str, ...]


class Moments(NamedTuple):
    """Sums over rows of one evaluation, everything the variance estimators need.

    Attributes
    ----------
    score : ndarray of shape (P,)
        ``sum_i s_i``.
    hessian : ndarray of shape (P, P)
        ``sum_i d2 log p(x_i) / dtheta dtheta^T``.
    outer_product : ndarray of shape (P, P)
        ``sum_i s_i s_i^T``.
    resp_sum : ndarray of shape (K,)
        Effective number of rows of each component, ``sum_i tau_ik``.
    log_likelihood : float
    n_samples : int
    """

    score: np.ndarray
    hessian: np.ndarray
    outer_product: np.ndarray
    resp_sum: np.ndarray
    log_likelihood: float
    n_samples: int


def layout(n_components: int, n_features: int, covariance_type: str) -> Layout:
    """Index layout of the free parameters (see the module docstring).

    Parameters
    ----------
    n_components, n_features : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    Layout
    """
    k, d = n_components, n_features
    n_free = n_parameters(k, d, covariance_type)
    weight_index = np.arange(k - 1)
    mean_index = (k - 1) + np.arange(k * d).reshape(k, d)
    start = k - 1 + k * d
    if covariance_type in ("full", "tied"):
        pair_a, pair_b = np.triu_indices(d)
    else:
        pair_a = pair_b = np.arange(d)
    n_pairs = pair_a.size
    if covariance_type == "spherical":
        reduce = np.ones((n_pairs, 1))
    else:
        reduce = np.eye(n_pairs)
    q = reduce.shape[1]
    if covariance_type == "tied":
        cov_index = np.broadcast_to(start + np.arange(q), (k, q)).copy()
    else:
        cov_index = start + np.arange(k * q).reshape(k, q)
    names = [f"weight[{c}]" for c in range(k - 1)]
    names += [f"mean[{c},{j}]" for c in range(k) for j in range(d)]
    if covariance_type == "tied":
        names += [f"cov[tied,{a},{b}]" for a, b in zip(pair_a, pair_b, strict=True)]
    elif covariance_type == "spherical":
        names += [f"cov[{c},variance]" for c in range(k)]
    else:
        names += [
            f"cov[{c},{a},{b}]" for c in range(k) for a, b in zip(pair_a, pair_b, strict=True)
        ]
    if len(names) != n_free:  # pragma: no cover - guards the layout against n_parameters
        raise AssertionError(f"layout has {len(names)} parameters, n_parameters says {n_free}")
    half = np.where(pair_a == pair_b, 0.5, 1.0)
    return Layout(
        k,
        d,
        covariance_type,
        n_free,
        weight_index,
        mean_index,
        cov_index,
        pair_a,
        pair_b,
        reduce,
        half,
        tuple(names),
    )


def reporting_jacobian(lay: Layout) -> np.ndarray:
    """Matrix ``J`` with ``reported = J @ free + constant``; the map is linear.

    Parameters
    ----------
    lay : Layout

    Returns
    -------
    ndarray of shape (M, P)
        ``M = K + K d + K d (d + 1) / 2`` reported against ``P`` free parameters.
    """
    k, d, kind = lay.n_components, lay.n_features, lay.covariance_type
    iu, ju = np.triu_indices(d)
    n_pairs_full = iu.size
    jac = np.zeros((k + k * d + k * n_pairs_full, lay.n_free))
    jac[lay.weight_index, lay.weight_index] = 1.0
    jac[k - 1, lay.weight_index] = -1.0
    jac[k + np.arange(k * d), lay.mean_index.ravel()] = 1.0
    for c in range(k):
        for p, (i, j) in enumerate(zip(iu, ju, strict=True)):
            row = k + k * d + c * n_pairs_full + p
            if kind in ("full", "tied"):
                jac[row, lay.cov_index[c, p]] = 1.0
            elif i == j:
                jac[row, lay.cov_index[c, i if kind == "diag" else 0]] = 1.0
    return jac


def _pair_trace(a_mat: np.ndarray, b_mat: np.ndarray, lay: Layout) -> np.ndarray:
    """``tr(E_p A E_q B)`` for every pair of covariance entries ``p, q``."""
    a, b = lay.pair_a[:, None], lay.pair_b[:, None]
    c, d = lay.pair_a[None, :], lay.pair_b[None, :]
    full = (
        a_mat[b, c] * b_mat[d, a]
        + a_mat[b, d] * b_mat[c, a]
        + a_mat[a, c] * b_mat[d, b]
        + a_mat[a, d] * b_mat[c, b]
    )
    return lay.half[:, None] * lay.half[None, :] * full


def information_terms(
    X: np.ndarray,
    *,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    covariance_type: str,
    block_rows: int | None = None,
) -> Moments:
    """Score, Hessian and outer product of scores of the log-likelihood, in closed form.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    precisions_cholesky : ndarray
        Shaped by ``covariance_type`` as ``GaussianMixture.precisions_cholesky_``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    block_rows : int, optional
        Rows per block; by default as many as fit in 16 MiB of temporaries.

    Returns
    -------
    Moments
        In the free parameters of :func:`layout`.
    """
    X = np.asarray(X, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    prec_chol = np.asarray(precisions_cholesky, dtype=np.float64)
    n, d = X.shape
    k = means.shape[0]
    lay = layout(k, d, covariance_type)
    n_free = lay.n_free
    if covariance_type in ("full", "tied"):
        precisions = prec_chol @ np.swapaxes(prec_chol, -1, -2)
    else:
        precisions = prec_chol**2
    # Precisions come in the shapes of the covariances, so they expand to dense the same way.
    precisions = to_full_covariances(precisions, covariance_type, k, d)
    pa, pb = lay.pair_a, lay.pair_b
    q = lay.reduce.shape[1]
    tied = covariance_type == "tied"
    # d log pi_k / d (free weights): e_k / pi_k, and -1 / pi_K for the last component.
    weight_grad = np.zeros((k, k - 1))
    weight_grad[np.arange(k - 1), np.arange(k - 1)] = 1.0 / weights[:-1]
    weight_grad[k - 1, :] = -1.0 / weights[-1]
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    own = [
        np.concatenate([lay.weight_index, lay.mean_index[c], lay.cov_index[c]]) for c in range(k)
    ]
    per_row_floats = n_free + k * (3 * d + 2 * pa.size + q + 4) + max(len(i) for i in own)
    if block_rows is None:
        block_rows = max(64, _BLOCK_BYTES // (8 * per_row_floats))

    resp_sum = np.zeros(k)
    first = np.zeros((k, d))  # sum tau u
    second = np.zeros((k, d, d))  # sum tau u u^T
    # sum_i tau_ik g_ik g_ik^T on each component's parameters (upper triangles).
    within = [np.zeros((len(i), len(i)), order="F") for i in own]
    outer = np.zeros((n_free, n_free), order="F")
    score = np.zeros(n_free)
    log_likelihood = 0.0
    scores = np.empty((min(block_rows, n), n_free))
    # The free parameters of each kind occupy one contiguous range: slices, not fancy
    # indexing, when the per-row scores are written.
    weight_cols = slice(0, k - 1)
    mean_cols = slice(k - 1, k - 1 + k * d)
    cov_cols = slice(k - 1 + k * d, n_free)
    spherical = covariance_type == "spherical"
    for start in range(0, n, block_rows):
        block = X[start : start + block_rows]
        m = block.shape[0]
        # The log-likelihood and responsibilities of workbench.mixture.log_prob and
        # workbench.mixture.responsibilities, from the same scipy functions.
        logf = component_log_prob(block, means, prec_chol, covariance_type) + log_weights
        log_likelihood += float(np.sum(logsumexp(logf, axis=1)))
        tau = softmax(logf, axis=1)
        u = np.einsum("kab,nkb->nka", precisions, block[:, None, :] - means[None])
        g_cov = lay.half * (u[..., pa] * u[..., pb] - precisions[:, pa, pb][None])
        if spherical:
            g_cov = g_cov @ lay.reduce
        tau_u = tau[:, :, None] * u
        resp_sum += tau.sum(axis=0)
        first += tau_u.sum(axis=0)
        second += np.matmul(tau_u.transpose(1, 2, 0), u.transpose(1, 0, 2))
        s = scores[:m]
        s[:, weight_cols] = tau @ weight_grad
        s[:, mean_cols] = tau_u.reshape(m, -1)
        if tied:
            s[:, cov_cols] = np.einsum("nk,nkq->nq", tau, g_cov)
        else:
            s[:, cov_cols] = (tau[:, :, None] * g_cov).reshape(m, -1)
        score += s.sum(axis=0)
        # sum_i s_i s_i^T: upper triangle by BLAS syrk, no copy (s.T is Fortran-ordered).
        outer = dsyrk(1.0, s.T, beta=1.0, c=outer, overwrite_c=1)
        root = np.sqrt(tau)
        for c in range(k):
            g = np.concatenate(
                [np.broadcast_to(weight_grad[c], (m, k - 1)), u[:, c], g_cov[:, c]], axis=1
            )
            g *= root[:, c, None]
            within[c] = dsyrk(1.0, g.T, beta=1.0, c=within[c], overwrite_c=1)

    outer = np.triu(outer) + np.triu(outer, 1).T
    hessian = -outer
    # Weights: sum_k N_k d2 log pi_k.
    w_idx = lay.weight_index
    hessian[w_idx, w_idx] -= resp_sum[:-1] / weights[:-1] ** 2
    hessian[np.ix_(w_idx, w_idx)] -= resp_sum[-1] / weights[-1] ** 2
    for c in range(k):
        idx = own[c]
        hessian[np.ix_(idx, idx)] += np.triu(within[c]) + np.triu(within[c], 1).T
        m_idx, c_idx, prec = lay.mean_index[c], lay.cov_index[c], precisions[c]
        hessian[np.ix_(m_idx, m_idx)] -= resp_sum[c] * prec
        v = first[c]
        mean_cov = -(lay.half * (prec[:, pa] * v[pb] + prec[:, pb] * v[pa])) @ lay.reduce
        hessian[np.ix_(m_idx, c_idx)] += mean_cov
        hessian[np.ix_(c_idx, m_idx)] += mean_cov.T
        cov_cov = -_pair_trace(prec, second[c], lay) + 0.5 * resp_sum[c] * _pair_trace(
            prec, prec, lay
        )
        hessian[np.ix_(c_idx, c_idx)] += lay.reduce.T @ cov_cov @ lay.reduce
    hessian = 0.5 * (hessian + hessian.T)
    return Moments(score, hessian, np.ascontiguousarray(outer), resp_sum, log_likelihood, n)


def _owner(lay: Layout, index: int) -> str:
    """The component (or the tied covariance) a free parameter belongs to."""
    if index < lay.n_components - 1:
        return f"component {index}"
    if index in lay.mean_index:
        return f"component {int(np.argwhere(lay.mean_index == index)[0, 0])}"
    if lay.covariance_type == "tied":
        return "the tied covariance"
    return f"component {int(np.argwhere(lay.cov_index == index)[0, 0])}"


def check_information(
    matrix: np.ndarray, lay: Layout, *, what: str, rcond: float = 1e-12
) -> np.ndarray:
    """Inverse of a symmetric information matrix, or a ``ValueError`` that says why not.

    The matrix is first scaled to unit diagonal, so the test does not depend on the units
    of the parameters. It must be positive definite with a condition number below
    ``1 / rcond``.

    Parameters
    ----------
    matrix : ndarray of shape (P, P)
    lay : Layout
    what : str
        Name of the matrix in the message.
    rcond : float, default=1e-12

    Returns
    -------
    inverse : ndarray of shape (P, P)

    Raises
    ------
    ValueError
        Naming the component whose parameters span the (near-)null direction.
    """
    diag = np.diag(matrix).copy()
    bad = np.flatnonzero(~(diag > 0) | ~np.isfinite(diag))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"the {what} is not positive definite: its diagonal entry for "
            f"{lay.free_names[i]} ({_owner(lay, i)}) is {diag[i]!r}; standard errors are "
            "not available"
        )
    scale = 1.0 / np.sqrt(diag)
    scaled = matrix * scale[:, None] * scale[None, :]
    eigenvalues, eigenvectors = np.linalg.eigh(scaled)
    if eigenvalues[0] > rcond * eigenvalues[-1]:
        inverse = (eigenvectors / eigenvalues) @ eigenvectors.T
        return inverse * scale[:, None] * scale[None, :]
    direction = eigenvectors[:, 0]
    i = int(np.argmax(np.abs(direction)))
    reason = (
        "has a negative eigenvalue, so the fit is not at a local maximum of the "
        "log-likelihood (refit to convergence)"
        if eigenvalues[0] < -rcond * eigenvalues[-1]
        else f"is singular (condition number above {1 / rcond:.0e})"
    )
    raise ValueError(
        f"the {what} {reason}; the offending direction is led by {lay.free_names[i]}, "
        f"a parameter of {_owner(lay, i)}, which the data do not identify. Standard errors "
        "are not available: refit with fewer components or more data"
    )
