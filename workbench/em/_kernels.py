"""The fused EM pass: E-step, log-likelihood and sufficient statistics in one sweep over X.

scikit-learn spends most of an EM iteration allocating ``(n_samples, n_features)``
temporaries per component and walking the data several times (log densities,
log-sum-exp, responsibilities, then one pass per statistic in the M-step). Here every
row is read once: its log density under each component, its responsibilities, and its
contribution to the per-component sums are computed while the row is in cache, and
nothing of size ``n_samples`` is allocated.

Rows are processed in chunks of ``_ROWS_PER_CHUNK``; each chunk sums into fresh
accumulators that are then added to the totals (blocked summation: the rounding error
grows with the chunk length, not with ``n_samples``). Statistics are accumulated around
a per-component shift (the current means), which keeps the second moments free of the
cancellation that ``E[xx'] - mu mu'`` suffers when the data sit far from the origin.

A pass over fewer than ``2 * _ROWS_PER_THREAD`` rows runs on one core, on purpose. Studies
run many small fits at once, in several processes, and a multi-threaded kernel then
oversubscribes the cores: on this 2-core machine under load, numba's OpenMP layer with two
threads made a pass up to ten times slower than one thread. A large single fit splits its
rows into contiguous blocks, one per available core, run by Python threads (the kernel
releases the GIL) and summed in block order, so the result is deterministic.

The log density written out here is the scalar form of
:func:`workbench.mixture.component_log_prob`; ``tests/test_em_kernels.py`` checks that the
two agree.

The M-step from these statistics is compiled here too, once: :func:`workbench.em.m_step`
calls it, and so do the bootstrap refits, whose whole EM loop runs inside numba.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numba import njit

from workbench._platform import available_cpus
from workbench.mixture import LOG_2PI, log_det_precision_cholesky

__all__ = ["SufficientStats", "sufficient_statistics"]

_ROWS_PER_CHUNK = 4096
# A thread is worth starting only for this many rows; study-sized fits stay on one core.
_ROWS_PER_THREAD = 50_000


def _row_blocks(n_samples: int) -> list[slice]:
    """Contiguous row blocks, one per thread: one block unless the data are large.

    Threads are capped by the cores this process may use, so a large single fit uses the
    machine while the many small fits of a study never oversubscribe it.
    """
    n_threads = max(1, min(available_cpus(), n_samples // _ROWS_PER_THREAD))
    bounds = np.linspace(0, n_samples, n_threads + 1).astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class SufficientStats(NamedTuple):
    """Weighted sufficient statistics of one pass, accumulated around ``shift``.

    Attributes
    ----------
    resp_sum : ndarray of shape (n_components,)
        ``R_k = sum_i w_i r_ik``.
    first : ndarray of shape (n_components, n_features)
        ``sum_i w_i r_ik (x_i - shift_k)``.
    second : ndarray of shape (n_components, n_features, n_features) or (n_components, n_features)
        ``sum_i w_i r_ik (x_i - shift_k)(x_i - shift_k)^T`` (full matrix) or its diagonal.
    shift : ndarray of shape (n_components, n_features)
    log_likelihood : float
        ``sum_i w_i log p(x_i)`` under the parameters of the E-step; 0 if responsibilities
        were given rather than computed.
    weight_sum : float
        ``sum_i w_i``.
    """

    resp_sum: np.ndarray
    first: np.ndarray
    second: np.ndarray
    shift: np.ndarray
    log_likelihood: float
    weight_sum: float


@njit(fastmath=False, cache=True, nogil=True)
def _chunk_pass(
    X,
    sample_weight,
    resp,
    shift,
    prec_matrix,
    prec_diag,
    log_weights,
    log_det,
    matrix,
    start,
    stop,
    resp_sum,
    first,
    second,
):
    """Rows ``start:stop``: add into ``resp_sum``, ``first``, ``second``; return log-lik."""
    n_features = X.shape[1]
    n_components = shift.shape[0]
    has_weights = sample_weight.shape[0] > 0
    given_resp = resp.shape[0] > 0
    const = n_features * LOG_2PI
    diff = np.empty((n_components, n_features))
    lp = np.empty(n_components)
    loglik = 0.0
    for i in range(start, stop):
        w = sample_weight[i] if has_weights else 1.0
        if w == 0.0:
            continue
        for k in range(n_components):
            for a in range(n_features):
                diff[k, a] = np.float64(X[i, a]) - shift[k, a]
        if given_resp:
            for k in range(n_components):
                lp[k] = w * resp[i, k]
        else:
            top = -np.inf
            for k in range(n_components):
                maha = 0.0
                if matrix:
                    # y = (x - mu) @ U with U upper triangular: y_j sums rows a <= j.
                    for j in range(n_features):
                        y = 0.0
                        for a in range(j + 1):
                            y += diff[k, a] * prec_matrix[k, a, j]
                        maha += y * y
                else:
                    for a in range(n_features):
                        y = diff[k, a] * prec_diag[k, a]
                        maha += y * y
                lp[k] = -0.5 * (const + maha) + log_det[k] + log_weights[k]
                if lp[k] > top:
                    top = lp[k]
            if top == -np.inf:
                # No component gives this row positive density; it carries no
                # responsibility rather than a 0/0.
                loglik += -np.inf
                continue
            # One exp per component: r_k = exp(lp_k - top) / sum_j exp(lp_j - top).
            total = 0.0
            for k in range(n_components):
                lp[k] = np.exp(lp[k] - top)
                total += lp[k]
            loglik += w * (top + np.log(total))
            scale = w / total
            for k in range(n_components):
                lp[k] *= scale
        for k in range(n_components):
            r = lp[k]
            if r == 0.0:
                continue
            resp_sum[k] += r
            for a in range(n_features):
                rd = r * diff[k, a]
                first[k, a] += rd
                if matrix:
                    for b in range(a, n_features):
                        second[k, a, b] += rd * diff[k, b]
                else:
                    second[k, 0, a] += rd * diff[k, a]
    return loglik


@njit(fastmath=False, cache=True, nogil=True)
def _fused_pass(
    X, sample_weight, resp, shift, prec_matrix, prec_diag, log_weights, log_det, matrix
):
    n_samples, n_features = X.shape
    n_components = shift.shape[0]
    second_rows = n_features if matrix else 1
    resp_sum = np.zeros(n_components)
    first = np.zeros((n_components, n_features))
    second = np.zeros((n_components, second_rows, n_features))
    chunk_resp = np.empty(n_components)
    chunk_first = np.empty((n_components, n_features))
    chunk_second = np.empty((n_components, second_rows, n_features))
    loglik = 0.0
    for start in range(0, n_samples, _ROWS_PER_CHUNK):
        chunk_resp[:] = 0.0
        chunk_first[:] = 0.0
        chunk_second[:] = 0.0
        loglik += _chunk_pass(
            X,
            sample_weight,
            resp,
            shift,
            prec_matrix,
            prec_diag,
            log_weights,
            log_det,
            matrix,
            start,
            min(n_samples, start + _ROWS_PER_CHUNK),
            chunk_resp,
            chunk_first,
            chunk_second,
        )
        resp_sum += chunk_resp
        first += chunk_first
        second += chunk_second
    if matrix:
        # Only the upper triangle was accumulated.
        for k in range(n_components):
            for a in range(n_features):
                for b in range(a + 1, n_features):
                    second[k, b, a] = second[k, a, b]
    return resp_sum, first, second, loglik


@njit(fastmath=False, cache=True, nogil=True, error_model="numpy")
def lower_triangular_inverse(L):
    """Inverse of a lower-triangular (d, d) matrix by forward substitution (compiled callers).

    A zero on the diagonal gives inf/nan entries rather than raising (NumPy's error model), so
    the fast model's C entry point can report a non-finite density instead of failing.
    """
    d = L.shape[0]
    inv = np.zeros((d, d))
    for c in range(d):
        for i in range(c, d):
            value = 1.0 if i == c else 0.0
            for j in range(c, i):
                value -= L[i, j] * inv[j, c]
            inv[i, c] = value / L[i, i]
    return inv


# Covariance types as the integer codes the compiled kernels take.
COVARIANCE_CODES = {"full": 0, "tied": 1, "diag": 2, "spherical": 3}


@njit(fastmath=False, cache=True, nogil=True)
def _m_step_kernel(resp_sum, first, second, shift, kind, reg_covar, mass_floor):
    """Component masses, means and covariances from centred weighted statistics.

    The one M-step: :func:`workbench.em.m_step` wraps it and the bootstrap refits of
    :mod:`workbench.em._bootstrap` call it inside their compiled loop. It follows scikit-learn
    in exact arithmetic (``mass_floor`` added to every mass, ``reg_covar`` to the diagonal)
    and NumPy's order of operations, entry by entry, so the estimator's numbers do not
    depend on which of the two calls it.

    Parameters
    ----------
    resp_sum : ndarray of shape (n_components,)
    first : ndarray of shape (n_components, n_features)
    second : ndarray of shape (n_components, n_features, n_features) or (n_components, 1, d)
        As the fused pass returns it: the symmetric matrix for 'full' and 'tied' (kind 0, 1),
        its diagonal in row 0 for 'diag' and 'spherical' (kind 2, 3).
    shift : ndarray of shape (n_components, n_features)
    kind : int
        ``COVARIANCE_CODES`` of the covariance type.
    reg_covar, mass_floor : float

    Returns
    -------
    nk : ndarray of shape (n_components,)
        Masses including ``mass_floor`` (not normalised).
    means : ndarray of shape (n_components, n_features)
    cov_matrix : ndarray of shape (n_components, n_features, n_features), (1, d, d) or (0, 0, 0)
        'full' covariances, the one 'tied' covariance, or empty for the other kinds.
    cov_diag : ndarray of shape (n_components, n_features), (n_components, 1) or (0, 0)
        'diag' variances, the one 'spherical' variance per component, or empty.
    """
    n_components, n_features = first.shape
    nk = resp_sum + mass_floor
    means = np.empty((n_components, n_features))
    delta = np.empty((n_components, n_features))
    for c in range(n_components):
        for a in range(n_features):
            means[c, a] = (first[c, a] + resp_sum[c] * shift[c, a]) / nk[c]
            delta[c, a] = means[c, a] - shift[c, a]
    if kind <= 1:
        cov_matrix = np.zeros((n_components if kind == 0 else 1, n_features, n_features))
        for c in range(n_components):
            for a in range(n_features):
                for b in range(n_features):
                    # sum_i r (x - mu)(x - mu)^T expanded around the shift; every entry
                    # on its own, in NumPy's order, so the matrix is what NumPy gives.
                    scatter = (
                        second[c, a, b]
                        - delta[c, a] * first[c, b]
                        - delta[c, b] * first[c, a]
                        + resp_sum[c] * delta[c, a] * delta[c, b]
                    )
                    if kind == 0:
                        cov_matrix[c, a, b] = scatter / nk[c]
                    else:
                        # scikit-learn computes (X^T X - sum_k nk mu mu^T) / sum(nk); the
                        # (nk - R) term carries the mass floor that formula includes.
                        extra = (nk[c] - resp_sum[c]) * means[c, a] * means[c, b]
                        cov_matrix[0, a, b] += scatter + extra
        total = np.sum(nk)
        for c in range(cov_matrix.shape[0]):
            for a in range(n_features):
                for b in range(n_features):
                    if kind == 1:
                        cov_matrix[c, a, b] /= total
                    if a == b:
                        cov_matrix[c, a, b] += reg_covar
        return nk, means, cov_matrix, np.zeros((0, 0))
    variances = np.empty((n_components, n_features))
    for c in range(n_components):
        for a in range(n_features):
            d = delta[c, a]
            scatter = second[c, 0, a] - 2.0 * d * first[c, a] + resp_sum[c] * (d * d)
            # Mirrors scikit-learn's E_r[x^2] - mu^2, including its mass-floor term.
            variances[c, a] = (
                scatter / nk[c] + ((nk[c] - resp_sum[c]) / nk[c]) * (means[c, a] * means[c, a])
            ) + reg_covar
    if kind == 2:
        return nk, means, np.zeros((0, 0, 0)), variances
    spherical = np.empty((n_components, 1))
    for c in range(n_components):
        total = 0.0
        for a in range(n_features):
            total += variances[c, a]
        spherical[c, 0] = total / n_features
    return nk, means, np.zeros((0, 0, 0)), spherical


def sufficient_statistics(
    X: np.ndarray,
    *,
    shift: np.ndarray,
    covariance_type: str,
    sample_weight: np.ndarray | None = None,
    resp: np.ndarray | None = None,
    log_weights: np.ndarray | None = None,
    precisions_cholesky: np.ndarray | None = None,
) -> SufficientStats:
    """One pass over ``X``: responsibilities (computed or given) and weighted statistics.

    Either ``resp`` is given (initialisation from hard or soft labels), or ``log_weights``
    and ``precisions_cholesky`` are, and the pass runs the E-step itself with the
    component means equal to ``shift``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64 or float32
    shift : ndarray of shape (n_components, n_features)
        Centre of each component's accumulation; the current means during EM.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    sample_weight : ndarray of shape (n_samples,), optional
    resp : ndarray of shape (n_samples, n_components), optional
    log_weights : ndarray of shape (n_components,), optional
    precisions_cholesky : ndarray, optional
        Shaped by ``covariance_type`` as in :mod:`workbench.mixture`.

    Returns
    -------
    SufficientStats
        ``second`` is a full ``(K, d, d)`` matrix for 'full' and 'tied', and the
        ``(K, d)`` diagonal for 'diag' and 'spherical'.
    """
    n_samples, n_features = X.shape
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    n_components = shift.shape[0]
    matrix = covariance_type in ("full", "tied")
    weights_arg = (
        np.empty(0) if sample_weight is None else np.ascontiguousarray(sample_weight, float)
    )
    empty_matrix = np.empty((0, 0, 0))
    empty_diag = np.empty((0, 0))
    if resp is not None:
        resp_arg = np.ascontiguousarray(resp, dtype=np.float64)
        prec_matrix, prec_diag = empty_matrix, empty_diag
        log_weights_arg = log_det = np.zeros(n_components)
    else:
        resp_arg = empty_diag
        prec = np.asarray(precisions_cholesky, dtype=np.float64)
        log_det = np.broadcast_to(
            log_det_precision_cholesky(prec, covariance_type, n_features), (n_components,)
        ).astype(np.float64)
        log_weights_arg = np.ascontiguousarray(log_weights, dtype=np.float64)
        if covariance_type == "full":
            prec_matrix, prec_diag = np.ascontiguousarray(prec), empty_diag
        elif covariance_type == "tied":
            prec_matrix = np.ascontiguousarray(
                np.broadcast_to(prec, (n_components, n_features, n_features))
            )
            prec_diag = empty_diag
        elif covariance_type == "diag":
            prec_matrix, prec_diag = empty_matrix, np.ascontiguousarray(prec)
        else:
            prec_matrix = empty_matrix
            prec_diag = np.ascontiguousarray(np.repeat(prec[:, None], n_features, axis=1))

    def run(rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        return _fused_pass(
            X[rows],
            weights_arg[rows] if weights_arg.shape[0] else weights_arg,
            resp_arg[rows] if resp_arg.shape[0] else resp_arg,
            shift,
            prec_matrix,
            prec_diag,
            log_weights_arg,
            log_det,
            matrix,
        )

    blocks = _row_blocks(n_samples)
    if len(blocks) == 1:
        resp_sum, first, second, loglik = run(blocks[0])
    else:
        with ThreadPoolExecutor(len(blocks)) as pool:
            parts = list(pool.map(run, blocks))
        # Summed in block order, so the result does not depend on thread timing.
        resp_sum, first, second, loglik = (
            sum(values[1:], start=values[0]) for values in zip(*parts, strict=True)
        )
    if not matrix:
        second = second[:, 0, :]
    weight_sum = float(n_samples) if sample_weight is None else float(np.sum(weights_arg))
    return SufficientStats(resp_sum, first, second, shift, float(loglik), weight_sum)
