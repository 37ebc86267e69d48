"""The mixture model's log density and gradient written out in numba, for nutpie.

:func:`workbench.bayes.model.build_model` is the definition of the model; this module
computes the same log density (up to a constant per structure) and its exact gradient on the
same unconstrained space, so that nutpie can sample it without PyTensor compiling anything.
A cold compile of PyTensor's graph for nutpie (d = 2, K = 3, full) took 80-100 s and every new
process still spent 13-21 s rebuilding nutpie's entry points from PyTensor's disk cache; the
two numba functions here compile once per machine (``cache=True``) and then load from numba's
disk cache in well under a second, whatever the structure, because the structure, the data
and every prior hyperparameter are runtime inputs.

The flat unconstrained vector has PyMC's layout, the order in which nutpie lays out the
model's free variables (``model.free_RVs``), each with PyMC's default transform:

=================================  ==============  =======================================
value variable                     length          transform (PyMC 6.4)
=================================  ==============  =======================================
``w_simplex__``                    K - 1           simplex (softmax of ``[y, -sum(y)]``)
``mu_first_ordered__``             K               ordered (first, then log-gaps); or
  (``mu_first`` when unordered)                    none when unordered or K = 1
``mu_rest``                        K (d - 1)       none (only when d > 1)
``chol_{k}_cholesky-cov-packed__`` d (d + 1) / 2   log of the diagonal of the packed
  (per component; ``chol_...``                     row-major lower Cholesky factor
  once for ``tied``)
``sigma_log__``                    K d, K or 1     log (``diag``, ``spherical``, 1-D tied)
=================================  ==============  =======================================

so start values mapped by PyMC's initial-point function apply unchanged, and the draws that
nutpie expands carry PyMC's variable names and shapes (the free variables, then ``w``,
``mu_first`` when ordered, the Cholesky or ``sigma`` variables, ``mu`` and ``cov``).

The likelihood and its sufficient statistics come from the EM's fused pass
(:func:`workbench.em._kernels._fused_pass`: responsibilities, ``sum r``, ``sum r (x - mu)``
and ``sum r (x - mu)(x - mu)'`` in one sweep), from which the gradient follows in closed
form: with ``P = Sigma^{-1} = U U'`` (``U = L^{-T}``) the gradient is ``P first_k`` for
``mu_k`` and ``tril(P second_k U) - N_k diag(1 / L)`` for the Cholesky factor ``L_k``.

numba's disk cache keys the compiled functions of this module on this file only: after an
edit of ``em/_kernels.py`` (``_fused_pass``, ``lower_triangular_inverse``), delete
``workbench/bayes/__pycache__/fast_model.*.nb[ic]``, or the cached entry points keep the
old kernel.

``tests/test_bayes_fast_model.py`` checks values (up to a constant) and gradients against
PyMC's compiled ``logp``/``dlogp`` for every parametrisation.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numba
import numpy as np
import pymc as pm
from numba.core import cgutils, types
from numba.extending import intrinsic

from workbench.bayes.model import DATA, _parametrisation
from workbench.bayes.priors import BayesPriors
from workbench.em._kernels import _fused_pass, lower_triangular_inverse
from workbench.mixture import LOG_2PI

__all__ = [
    "FastStructure",
    "compile_fast_model",
    "expand",
    "layout",
    "logp_and_grad",
    "structure_of",
    "supported",
    "unconstrained_point",
]

#: The nutpie releases whose private model class :func:`compile_fast_model` was written
#: against (version prefixes); with any other, sampling.py compiles through PyMC instead.
NUTPIE_VERSIONS: tuple[str, ...] = ("0.16.",)

# Integer codes of the parametrisations of model._parametrisation, as the kernels take them
# (the kernels treat every code after _SPHERICAL as "tied_sigma").
KINDS: dict[str, int] = {"full_lkj": 0, "tied_lkj": 1, "diag": 2, "spherical": 3, "tied_sigma": 4}
_FULL, _TIED, _DIAG, _SPHERICAL = (KINDS[k] for k in ("full_lkj", "tied_lkj", "diag", "spherical"))

#: The runtime inputs, in the order of nutpie's user-data record, with their ranks. The
#: first four are the model's ``pm.Data`` containers (swapped by ``with_data``); the last
#: holds the structure, see :func:`_structure_vector`.
INPUTS: tuple[tuple[str, int], ...] = (
    (DATA, 2),
    ("mean_loc", 1),
    ("mean_scale", 1),
    ("scale_prior", 1),
    ("structure", 1),
)


class FastStructure(NamedTuple):
    """The structure of one model: what its runtime ``structure`` vector says.

    Attributes
    ----------
    n_components, n_features : int
    kind : str
        The parametrisation, a key of :data:`KINDS` (``model._parametrisation``).
    ordered : bool
        The first mean coordinate has the ordered transform (never with one component).
    dirichlet_concentration, lkj_eta : float
    """

    n_components: int
    n_features: int
    kind: str
    ordered: bool
    dirichlet_concentration: float
    lkj_eta: float


# ---------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scale_length(kind: int, K: int, d: int) -> int:
    if kind == _FULL:
        return K * (d * (d + 1) // 2)
    if kind == _TIED:
        return d * (d + 1) // 2
    if kind == _DIAG:
        return K * d
    if kind == _SPHERICAL:
        return K
    return 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _n_dim(kind: int, K: int, d: int) -> int:
    return (K - 1) + K * d + _scale_length(kind, K, d)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _n_expanded(kind: int, K: int, d: int, ordered: bool) -> int:
    n_ordered = K if ordered else 0
    return _n_dim(kind, K, d) + K + n_ordered + _scale_length(kind, K, d) + K * d + K * d * d


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _unpack(x, structure, d):
    """Constrained parameters of the flat unconstrained vector ``x``.

    Returns ``(log_w, mu, chol, sigma)``: ``log_w`` (K,), ``mu`` (K, d), and the Cholesky
    factors (K, d, d) for the LKJ kinds or the standard deviations (K, d) for the others (the
    other one is empty). Arithmetic as PyMC's backward transforms.
    """
    K = int(structure[0])
    kind = int(structure[1])
    ordered = structure[2] != 0.0
    # simplex: w = softmax([y, -sum(y)])
    z = np.empty(K)
    total = 0.0
    for k in range(K - 1):
        z[k] = x[k]
        total += x[k]
    z[K - 1] = -total
    top = z.max()
    # log-softmax: nutpie's PyTensor compile rewrites log(softmax) the same way, so a
    # weight of 0.0 (as the draws store it) still has a finite log (the sparse mixture's
    # empty components under Dirichlet(0.01) go there)
    acc = 0.0
    for k in range(K):
        acc += np.exp(z[k] - top)
    log_w = z - (top + np.log(acc))
    pos = K - 1
    mu = np.empty((K, d))
    for k in range(K):
        if ordered and k > 0:
            mu[k, 0] = mu[k - 1, 0] + np.exp(x[pos + k])
        else:
            mu[k, 0] = x[pos + k]
    pos += K
    for k in range(K):
        for j in range(1, d):
            mu[k, j] = x[pos]
            pos += 1
    if kind == _FULL or kind == _TIED:
        n_chol = K if kind == _FULL else 1
        chol = np.zeros((n_chol, d, d))
        for c in range(n_chol):
            for i in range(d):
                for j in range(i + 1):
                    chol[c, i, j] = np.exp(x[pos]) if i == j else x[pos]
                    pos += 1
        return log_w, mu, chol, np.empty((0, d))
    sigma = np.empty((K, d))
    for k in range(K):
        for j in range(d):
            if kind == _DIAG:
                sigma[k, j] = np.exp(x[pos + k * d + j])
            elif kind == _SPHERICAL:
                sigma[k, j] = np.exp(x[pos + k])
            else:
                sigma[k, j] = np.exp(x[pos])
    return log_w, mu, np.empty((0, d, d)), sigma


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _product(A, B):
    """``A @ B`` for the tiny (d, d) matrices here, where a BLAS call costs more than it does."""
    out = np.zeros((A.shape[0], B.shape[1]))
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            for c in range(A.shape[1]):
                out[i, j] += A[i, c] * B[c, j]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lkj_prior(L, sd_scale, eta, g_L):
    """Log density of ``LKJCholeskyCov(eta, HalfNormal(sd_scale))`` at the factor ``L`` with
    the log-diagonal Jacobian, minus constants; adds its gradient in ``L``'s packed entries
    into ``g_L`` (d, d), where the diagonal entries are already per log-diagonal entry.

    PyMC's density, per row ``i`` with ``var_i = sum_j L_ij^2``: HalfNormal(sqrt(var_i)),
    ``(2 eta - 3 + d - i) log(L_ii / sd_i)`` (LKJ) and ``log(L_ii / sd_i) - i log(sd_i)``
    (the Jacobian from correlations and sds to ``L``); plus ``log L_ii`` from the transform.
    """
    d = L.shape[0]
    total = 0.0
    for i in range(d):
        var = 0.0
        for j in range(i + 1):
            var += L[i, j] * L[i, j]
        c = 2.0 * eta - 2.0 + d - i
        log_diag = np.log(L[i, i])
        s = sd_scale[i]
        total += -0.5 * var / (s * s) - np.log(s) + (c + 1.0) * log_diag
        total -= 0.5 * (c + i) * np.log(var)
        dvar = -0.5 / (s * s) - 0.5 * (c + i) / var
        for j in range(i):
            g_L[i, j] += 2.0 * L[i, j] * dvar
        g_L[i, i] += 2.0 * L[i, i] * L[i, i] * dvar + c + 1.0
    return total


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_and_grad(x, X, mean_loc, mean_scale, scale_prior, structure, grad):
    """Log density (up to a constant per structure) at ``x``; its gradient into ``grad``.

    Parameters
    ----------
    x, grad : ndarray of shape (n_dim,)
        The flat unconstrained point (PyMC's layout, see the module docstring) and the
        output gradient.
    X : ndarray of shape (n, d)
    mean_loc, mean_scale, scale_prior : ndarray of shape (d,)
    structure : ndarray of shape (5,)
        ``K``, the parametrisation code, ordered (0/1), Dirichlet concentration, LKJ eta.

    Returns
    -------
    float
    """
    d = X.shape[1]
    K = int(structure[0])
    kind = int(structure[1])
    ordered = structure[2] != 0.0
    alpha = structure[3]
    eta = structure[4]
    log_w, mu, chol, sigma = _unpack(x, structure, d)
    lkj = kind == _FULL or kind == _TIED
    n_chol = chol.shape[0]

    # likelihood and its sufficient statistics (the EM's fused pass)
    if lkj:
        U = np.empty((K, d, d))
        log_det = np.empty(K)
        for k in range(K):
            inv = lower_triangular_inverse(chol[k if n_chol == K else 0])
            U[k] = inv.T
            log_det[k] = 0.0
            for j in range(d):
                log_det[k] += np.log(inv[j, j])
        resp_sum, first, second, loglik = _fused_pass(
            X, np.empty(0), np.empty((0, 0)), mu, U, np.empty((0, 0)), log_w, log_det, True
        )
    else:
        inv_sigma = 1.0 / sigma
        log_det = np.empty(K)
        for k in range(K):
            log_det[k] = 0.0
            for j in range(d):
                log_det[k] += np.log(inv_sigma[k, j])
        resp_sum, first, second, loglik = _fused_pass(
            X,
            np.empty(0),
            np.empty((0, 0)),
            mu,
            np.empty((0, 0, 0)),
            inv_sigma,
            log_w,
            log_det,
            False,
        )
    total = loglik

    # gradient in the constrained means, then the priors of the means
    g_mu = np.empty((K, d))
    for k in range(K):
        for a in range(d):
            if lkj:
                value = 0.0
                for b in range(d):
                    # P = U U'
                    p_ab = 0.0
                    for c in range(max(a, b), d):
                        p_ab += U[k, a, c] * U[k, b, c]
                    value += p_ab * first[k, b]
                g_mu[k, a] = value
            else:
                g_mu[k, a] = first[k, a] * inv_sigma[k, a] * inv_sigma[k, a]
    for k in range(K):
        for a in range(d):
            z = (mu[k, a] - mean_loc[a]) / mean_scale[a]
            total += -0.5 * z * z - np.log(mean_scale[a]) - 0.5 * LOG_2PI
            g_mu[k, a] -= z / mean_scale[a]

    # weights: Dirichlet(alpha) plus the simplex Jacobian log K + sum(log w)
    w = np.exp(log_w)
    g_total = 0.0
    g_logw = np.empty(K)
    for k in range(K):
        total += alpha * log_w[k]
        g_logw[k] = resp_sum[k] + alpha
        g_total += g_logw[k]
    total += math.lgamma(K * alpha) - K * math.lgamma(alpha) + np.log(K)
    for k in range(K - 1):
        grad[k] = g_logw[k] - g_logw[K - 1] - (w[k] - w[K - 1]) * g_total
    pos = K - 1

    # first mean coordinate: ordered (first value, log-gaps) or as is
    if ordered:
        tail = 0.0
        for k in range(K - 1, -1, -1):
            tail += g_mu[k, 0]
            if k > 0:
                grad[pos + k] = tail * np.exp(x[pos + k]) + 1.0
                total += x[pos + k]
            else:
                grad[pos] = tail
    else:
        for k in range(K):
            grad[pos + k] = g_mu[k, 0]
    pos += K
    for k in range(K):
        for a in range(1, d):
            grad[pos] = g_mu[k, a]
            pos += 1

    # scales
    if lkj:
        for c in range(n_chol):
            g_L = np.zeros((d, d))
            for k in range(K):
                if n_chol == K and k != c:
                    continue
                # tril(P second U) - N diag(1 / L) with P = U U'
                P = _product(U[k], U[k].T)
                A = _product(_product(P, second[k]), U[k])
                for i in range(d):
                    for j in range(i + 1):
                        g_L[i, j] += A[i, j]
                    g_L[i, i] -= resp_sum[k] / chol[c, i, i]
            for i in range(d):
                g_L[i, i] *= chol[c, i, i]
            total += _lkj_prior(chol[c], scale_prior, eta, g_L)
            for i in range(d):
                for j in range(i + 1):
                    grad[pos] = g_L[i, j]
                    pos += 1
    else:
        n_scale = _scale_length(kind, K, d)
        for q in range(n_scale):
            grad[pos + q] = 0.0
        for k in range(K):
            for a in range(d):
                # d loglik / d log sigma_ka
                g = second[k, 0, a] * inv_sigma[k, a] * inv_sigma[k, a] - resp_sum[k]
                if kind == _DIAG:
                    grad[pos + k * d + a] += g
                elif kind == _SPHERICAL:
                    grad[pos + k] += g
                else:
                    grad[pos] += g
        # HalfNormal priors (with the log Jacobian), one per free scale
        prior_scale = 0.0
        if kind == _SPHERICAL:
            for a in range(d):
                prior_scale += scale_prior[a]
            prior_scale /= d
        for q in range(n_scale):
            if kind == _DIAG:
                k, a = q // d, q % d
                s, value = scale_prior[a], sigma[k, a]
            elif kind == _SPHERICAL:
                s, value = prior_scale, sigma[q, 0]
            else:
                s, value = scale_prior[0], sigma[0, 0]
            ratio = value / s
            # the log Jacobian is the unconstrained value itself, as in PyMC
            total += -0.5 * ratio * ratio - np.log(s) + x[pos + q]
            grad[pos + q] += 1.0 - ratio * ratio
    return total


@numba.njit(cache=True, nogil=True, error_model="numpy")
def expand(x, X, structure, out):
    """The draw nutpie stores for ``x``: ``x`` itself, then the constrained variables.

    ``out`` (n_expanded,) receives ``x``, ``w``, ``mu_first`` (ordered only), the packed
    Cholesky factors (``chol_k`` or ``chol``) or ``sigma``, ``mu`` (K, d) and ``cov``
    (K, d, d), each flattened row-major: the order of ``model.unobserved_value_vars``.
    """
    d = X.shape[1]
    K = int(structure[0])
    kind = int(structure[1])
    ordered = structure[2] != 0.0
    log_w, mu, chol, sigma = _unpack(x, structure, d)
    n = x.shape[0]
    out[:n] = x
    pos = n
    for k in range(K):
        out[pos + k] = np.exp(log_w[k])
    pos += K
    if ordered:
        for k in range(K):
            out[pos + k] = mu[k, 0]
        pos += K
    cov = np.zeros((K, d, d))
    if kind == _FULL or kind == _TIED:
        for c in range(chol.shape[0]):
            for i in range(d):
                for j in range(i + 1):
                    out[pos] = chol[c, i, j]
                    pos += 1
        for k in range(K):
            L = chol[k if chol.shape[0] == K else 0]
            cov[k] = _product(L, L.T)
    else:
        n_scale = _scale_length(kind, K, d)
        for q in range(n_scale):
            if kind == _DIAG:
                out[pos + q] = sigma[q // d, q % d]
            else:
                out[pos + q] = sigma[q, 0]
        pos += n_scale
        for k in range(K):
            for a in range(d):
                cov[k, a, a] = sigma[k, a] * sigma[k, a]
    for k in range(K):
        for a in range(d):
            out[pos] = mu[k, a]
            pos += 1
    for k in range(K):
        for a in range(d):
            for b in range(d):
                out[pos] = cov[k, a, b]
                pos += 1


# ---------------------------------------------------------------------------------------
# C entry points for nutpie
# ---------------------------------------------------------------------------------------

# nutpie's user-data record (nutpie.compile_pymc.make_user_data) for INPUTS, read here as
# 64-bit words: the data pointers, then the sizes, then the shapes.
_N_INPUTS = len(INPUTS)
_SHAPE_WORD = [2 * _N_INPUTS]
for _, _rank in INPUTS[:-1]:
    _SHAPE_WORD.append(_SHAPE_WORD[-1] + _rank)
_N_WORDS = _SHAPE_WORD[-1] + INPUTS[-1][1]
_X_SHAPE = _SHAPE_WORD[0]


@intrinsic
def _as_pointer(typingctx, address):
    """A ``void*`` from an integer address (nutpie stores the data's addresses)."""
    sig = types.voidptr(address)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _vector(words, index):
    size = int(words[_N_INPUTS + index])
    return numba.carray(_as_pointer(words[index]), (size,), np.float64)


@numba.njit(cache=True, nogil=True)
def _inputs(user_data):
    words = numba.carray(user_data, (_N_WORDS,), np.uint64)
    X = numba.carray(
        _as_pointer(words[0]), (int(words[_X_SHAPE]), int(words[_X_SHAPE + 1])), np.float64
    )
    return X, _vector(words, 1), _vector(words, 2), _vector(words, 3), _vector(words, 4)


def _c_logp(dim, x_, out_, logp_, user_data):
    # Return codes as nutpie's own PyTensor entry point: -1 wrong size, 3 a non-finite
    # gradient, 4 a non-finite log density (nutpie treats 3 and 4 as divergences).
    X, mean_loc, mean_scale, scale_prior, structure = _inputs(user_data)
    kind, K = int(structure[1]), int(structure[0])
    if dim != _n_dim(kind, K, X.shape[1]):
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, ())
    value = logp_and_grad(x, X, mean_loc, mean_scale, scale_prior, structure, out)
    logp[()] = value
    if not np.all(np.isfinite(out)):
        return 3
    if not np.isfinite(value):
        return 4
    return 0


def _c_expand(dim, expanded, x_, out_, user_data):
    X, _, _, _, structure = _inputs(user_data)
    kind, K, d = int(structure[1]), int(structure[0]), X.shape[1]
    if dim != _n_dim(kind, K, d) or expanded != _n_expanded(kind, K, d, structure[2] != 0.0):
        return -1
    expand(numba.carray(x_, (dim,)), X, structure, numba.carray(out_, (expanded,)))
    return 0


@functools.cache
def _cfuncs() -> tuple[Any, Any]:
    """Compile (or load from numba's disk cache) the two C entry points, once per process."""
    logp_sig = types.int64(
        types.uint64,
        types.CPointer(types.double),
        types.CPointer(types.double),
        types.CPointer(types.double),
        types.voidptr,
    )
    expand_sig = types.int64(
        types.uint64,
        types.uint64,
        types.CPointer(types.double),
        types.CPointer(types.double),
        types.voidptr,
    )
    return (
        numba.cfunc(logp_sig, cache=True)(_c_logp),
        numba.cfunc(expand_sig, cache=True)(_c_expand),
    )


# ---------------------------------------------------------------------------------------
# Python side
# ---------------------------------------------------------------------------------------


def layout(structure: FastStructure) -> tuple[list[str], list[tuple[int, ...]], list[str]]:
    """Names and shapes of what nutpie stores per draw, and the transformed value names.

    Returns
    -------
    names, shapes : lists
        The free (unconstrained) value variables in ``model.free_RVs`` order, then the
        remaining ``model.unobserved_value_vars`` (constrained variables, ``mu``, ``cov``).
    reparameterized : list of str
        The value variables that carry a transform.
    """
    K, d, kind, ordered = structure[:4]
    free: list[tuple[str, tuple[int, ...]]] = [("w_simplex__", (K - 1,))]
    free.append(("mu_first_ordered__" if ordered else "mu_first", (K,)))
    if d > 1:
        free.append(("mu_rest", (K, d - 1)))
    packed: tuple[int, ...] = (d * (d + 1) // 2,)
    constrained: list[tuple[str, tuple[int, ...]]] = [("w", (K,))]
    if ordered:
        constrained.append(("mu_first", (K,)))
    if kind == "full_lkj":
        scales = [(f"chol_{k}", packed) for k in range(K)]
        free += [(f"{name}_cholesky-cov-packed__", shape) for name, shape in scales]
    elif kind == "tied_lkj":
        scales = [("chol", packed)]
        free.append(("chol_cholesky-cov-packed__", packed))
    else:
        shape = {"diag": (K, d), "spherical": (K,), "tied_sigma": ()}[kind]
        scales = [("sigma", shape)]
        free.append(("sigma_log__", shape))
    constrained += [*scales, ("mu", (K, d)), ("cov", (K, d, d))]
    reparameterized = [name for name, _ in free if name.endswith("__")]
    names, shapes = zip(*(free + constrained), strict=True)
    return list(names), list(shapes), reparameterized


def supported(nutpie_version: str | None = None) -> bool:
    """Whether the installed nutpie (or ``nutpie_version``) is one the fast model supports."""
    if nutpie_version is None:
        from importlib.metadata import version

        nutpie_version = version("nutpie")
    return nutpie_version.startswith(NUTPIE_VERSIONS)


def unconstrained_point(values: dict[str, np.ndarray], structure: FastStructure) -> np.ndarray:
    """The flat unconstrained vector of constrained values (PyMC's forward transforms).

    Parameters
    ----------
    values : dict of str to ndarray
        The free variables by name, constrained, as
        :func:`~workbench.bayes.model.initial_values` returns them.
    structure : FastStructure

    Returns
    -------
    ndarray of shape (n_dim,)
    """
    names, shapes, _ = layout(structure)
    n_free = names.index("w")
    parts = []
    for name, shape in zip(names[:n_free], shapes[:n_free], strict=True):
        base = name.split("_cholesky-cov-packed__")[0].removesuffix("__")
        if name == "w_simplex__":
            log_w = np.log(np.asarray(values["w"], dtype=float))
            value = log_w[:-1] - log_w.mean()
        elif name == "mu_first_ordered__":
            first = np.asarray(values["mu_first"], dtype=float)
            value = np.concatenate([first[:1], np.log(np.diff(first))])
        elif name.endswith("_cholesky-cov-packed__"):
            value = np.array(values[base], dtype=float)
            diagonal = np.cumsum(np.arange(1, structure.n_features + 1)) - 1
            value[diagonal] = np.log(value[diagonal])
        elif name == "sigma_log__":
            value = np.log(np.asarray(values["sigma"], dtype=float))
        else:
            value = np.asarray(values[name], dtype=float)
        parts.append(np.reshape(value, shape).ravel())
    return np.concatenate(parts)


def structure_of(model: pm.Model, covariance_type: str, priors: BayesPriors) -> FastStructure:
    """The :class:`FastStructure` of a model built by :func:`~workbench.bayes.model.build_model`."""
    K = len(model.coords["component"])
    d = len(model.coords["feature"])
    ordered = K > 1 and model.rvs_to_transforms[model["mu_first"]] is not None
    return FastStructure(
        K,
        d,
        _parametrisation(covariance_type, d),
        ordered,
        float(priors.dirichlet_concentration),
        float(priors.lkj_eta),
    )


def _structure_vector(structure: FastStructure) -> np.ndarray:
    return np.array(
        [
            structure.n_components,
            KINDS[structure.kind],
            float(structure.ordered),
            structure.dirichlet_concentration,
            structure.lkj_eta,
        ]
    )


class _Input(NamedTuple):
    """Stands in for a shared variable in nutpie's ``shared_var_keys`` (it reads only these)."""

    name: str
    ndim: int


def compile_fast_model(model: pm.Model, covariance_type: str, priors: BayesPriors) -> Any:
    """A nutpie model of ``model`` that samples with the numba kernels of this module.

    Parameters
    ----------
    model : pymc.Model
        Built by :func:`~workbench.bayes.model.build_model` (any data; ``with_data`` swaps
        them, with any number of samples).
    covariance_type : str
        The one ``model`` was built with.
    priors : BayesPriors
        Its ``dirichlet_concentration`` and ``lkj_eta`` (the data-scaled values come from
        the model's data containers).

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        Samples with :func:`nutpie.sample`; its ``initial_point_func`` is the unconstrained
        origin (callers replace it with their start).
    """
    # The one place that relies on nutpie's private API (checked for nutpie 0.16.x): the
    # dataclass that nutpie.compile_pymc_model returns takes C function pointers, a
    # user-data record of data addresses (make_user_data; with_data rewrites it) and the
    # expanded layout; _prepare_dims_and_coords names the draws as for the PyMC model.
    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _prepare_dims_and_coords,
        make_user_data,
    )

    structure = structure_of(model, covariance_type, priors)
    values = {name: model[name].get_value() for name, _ in INPUTS[:-1]}
    values["structure"] = _structure_vector(structure)
    shared_var_keys = {_Input(name, rank): name for name, rank in INPUTS}
    shared_data = {}
    for name, value in values.items():
        array = np.array(value, dtype=np.float64, order="C", copy=True)
        array.flags.writeable = False
        shared_data[name] = array
    user_data = make_user_data(shared_var_keys, shared_data)
    if user_data.dtype.itemsize != 8 * _N_WORDS:
        raise RuntimeError(
            f"nutpie's user-data record has {user_data.dtype.itemsize} bytes, expected "
            f"{8 * _N_WORDS}: this nutpie version is not supported by the fast model"
        )
    names, shapes, reparameterized = layout(structure)
    sizes = [math.prod(shape) for shape in shapes]
    ends = np.cumsum(sizes)
    slices = [slice(int(end - size), int(end)) for end, size in zip(ends, sizes, strict=True)]
    # the free variables come first, up to the constrained weights
    n_dim = int(sum(sizes[: names.index("w")]))
    shape_info = (names, slices, [tuple(s) for s in shapes])
    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    logp_cfunc, expand_cfunc = _cfuncs()
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, shape in zip(names, shapes, strict=True)},
        compiled_logp_func=logp_cfunc,
        compiled_expand_func=expand_cfunc,
        initial_point_func=lambda seed: np.zeros(n_dim),
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=int(ends[-1]),
        shape_info=shape_info,
        logp_func=None,
        expand_func=None,
        reparameterized_names=reparameterized,
    )
