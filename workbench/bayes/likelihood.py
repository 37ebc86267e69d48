"""The Gaussian mixture log-likelihood as one PyTensor Op with a fused numba kernel.

Written as a graph of PyTensor operations, the marginal likelihood
``log sum_k w_k N(x_i | mu_k, Sigma_k)`` and its gradient allocate a dozen (K, n, d)
temporaries per evaluation, and the sampler spends most of its time there. This Op
computes the pointwise log-likelihood in one pass over the data, and its gradient Op the
vector-Jacobian product with respect to the log-weights, the means and the inverse
Cholesky factors in one more pass, with no temporaries larger than (K, d).

The density is parametrised by the lower-triangular inverse Cholesky factors
``A_k = L_k^{-1}`` of the covariances ``Sigma_k = L_k L_k^T``:

.. code-block:: text

    z_ik = A_k (x_i - mu_k)
    a_ik = log w_k + sum_j log A_k[j, j] - |z_ik|^2 / 2 - d log(2 pi) / 2
    out_i = logsumexp_k a_ik

Only the lower triangle of ``A_k`` is read, so the gradient of its upper triangle is 0.
Implementations: numba (the nutpie, PyMC-NUTS and ADVI backends), NumPy through the same
numba kernels (``perform``, PyTensor's default mode) and JAX (numpyro), registered when
the numpyro sampler first needs it so that importing this module does not import JAX.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

__all__ = [
    "MixtureLogLikelihood",
    "MixtureLogLikelihoodGrad",
    "mixture_log_likelihood",
    "register_jax",
]

LOG_2PI = math.log(2.0 * math.pi)


@numba.njit(cache=True)
def _offsets(log_w: np.ndarray, inv_chol: np.ndarray) -> np.ndarray:
    """``log w_k + log det A_k - d log(2 pi) / 2``, shape (K,)."""
    K, d = inv_chol.shape[0], inv_chol.shape[1]
    out = np.empty(K)
    for k in range(K):
        total = log_w[k] - 0.5 * d * LOG_2PI
        for j in range(d):
            total += np.log(inv_chol[k, j, j])
        out[k] = total
    return out


@numba.njit(cache=True)
def _terms(
    x: np.ndarray,
    mu: np.ndarray,
    inv_chol: np.ndarray,
    offsets: np.ndarray,
    diff: np.ndarray,
    z: np.ndarray,
    a: np.ndarray,
) -> float:
    """Fill ``diff``, ``z`` and ``a`` (the a_ik of one observation); return ``max_k a_ik``."""
    K, d = inv_chol.shape[0], inv_chol.shape[1]
    top = -np.inf
    for k in range(K):
        for c in range(d):
            diff[k, c] = x[c] - mu[k, c]
        squared = 0.0
        for r in range(d):
            value = 0.0
            for c in range(r + 1):
                value += inv_chol[k, r, c] * diff[k, c]
            z[k, r] = value
            squared += value * value
        a[k] = offsets[k] - 0.5 * squared
        top = max(top, a[k])
    return top


@numba.njit(cache=True)
def mixture_loglik_kernel(
    X: np.ndarray, log_w: np.ndarray, mu: np.ndarray, inv_chol: np.ndarray
) -> np.ndarray:
    """Pointwise log-likelihood, shape (n,); see the module docstring."""
    n = X.shape[0]
    K, d = inv_chol.shape[0], inv_chol.shape[1]
    offsets = _offsets(log_w, inv_chol)
    diff, z, a = np.empty((K, d)), np.empty((K, d)), np.empty(K)
    out = np.empty(n)
    for i in range(n):
        top = _terms(X[i], mu, inv_chol, offsets, diff, z, a)
        total = 0.0
        for k in range(K):
            total += np.exp(a[k] - top)
        out[i] = top + np.log(total)
    return out


@numba.njit(cache=True)
def mixture_loglik_grad_kernel(
    X: np.ndarray, log_w: np.ndarray, mu: np.ndarray, inv_chol: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sum_i g_i d out_i / d (log_w, mu, inv_chol)``: shapes (K,), (K, d), (K, d, d)."""
    n = X.shape[0]
    K, d = inv_chol.shape[0], inv_chol.shape[1]
    offsets = _offsets(log_w, inv_chol)
    diff, z, a = np.empty((K, d)), np.empty((K, d)), np.empty(K)
    g_log_w, g_mu, g_inv_chol = np.zeros(K), np.zeros((K, d)), np.zeros((K, d, d))
    for i in range(n):
        top = _terms(X[i], mu, inv_chol, offsets, diff, z, a)
        total = 0.0
        for k in range(K):
            a[k] = np.exp(a[k] - top)
            total += a[k]
        for k in range(K):
            weight = g[i] * a[k] / total  # g_i times the responsibility r_ik
            g_log_w[k] += weight
            for r in range(d):
                wz = weight * z[k, r]
                for c in range(r + 1):
                    g_mu[k, c] += wz * inv_chol[k, r, c]
                    g_inv_chol[k, r, c] -= wz * diff[k, c]
    for k in range(K):
        for j in range(d):
            g_inv_chol[k, j, j] += g_log_w[k] / inv_chol[k, j, j]
    return g_log_w, g_mu, g_inv_chol


def _float_tensors(*values: object) -> list[pt.TensorVariable]:
    return [pt.cast(pt.as_tensor_variable(v), "float64") for v in values]


class MixtureLogLikelihood(Op):
    """Pointwise Gaussian mixture log-likelihood ``(X, log_w, mu, inv_chol) -> (n,)``.

    Inputs have shapes (n, d), (K,), (K, d) and (K, d, d) (lower-triangular ``inv_chol``).
    """

    __props__ = ()

    def make_node(self, X, log_w, mu, inv_chol) -> Apply:
        inputs = _float_tensors(X, log_w, mu, inv_chol)
        names = ("X", "log_w", "mu", "inv_chol")
        for var, ndim, name in zip(inputs, (2, 1, 2, 3), names, strict=True):
            if var.ndim != ndim:
                raise TypeError(f"{name} must have {ndim} dimensions, got {var.ndim}")
        out = pt.tensor(dtype="float64", shape=(inputs[0].type.shape[0],))
        return Apply(self, inputs, [out])

    def perform(self, node, inputs, output_storage) -> None:
        output_storage[0][0] = mixture_loglik_kernel(*inputs)

    def infer_shape(self, node, input_shapes):
        return [(input_shapes[0][0],)]

    def pullback(self, inputs, outputs, cotangents):
        X, log_w, mu, inv_chol = inputs
        grads = mixture_log_likelihood_grad(X, log_w, mu, inv_chol, cotangents[0])
        return [grad_not_implemented(self, 0, X), *grads]


class MixtureLogLikelihoodGrad(Op):
    """Vector-Jacobian product of :class:`MixtureLogLikelihood` for a cotangent ``g`` (n,)."""

    __props__ = ()

    def make_node(self, X, log_w, mu, inv_chol, g) -> Apply:
        inputs = _float_tensors(X, log_w, mu, inv_chol, g)
        return Apply(self, inputs, [inputs[1].type(), inputs[2].type(), inputs[3].type()])

    def perform(self, node, inputs, output_storage) -> None:
        for storage, value in zip(output_storage, mixture_loglik_grad_kernel(*inputs), strict=True):
            storage[0] = value

    def infer_shape(self, node, input_shapes):
        return [input_shapes[1], input_shapes[2], input_shapes[3]]


mixture_log_likelihood = MixtureLogLikelihood()
mixture_log_likelihood_grad = MixtureLogLikelihoodGrad()


@register_funcify_default_op_cache_key(MixtureLogLikelihood)
def _numba_loglik(op, node=None, **kwargs):
    return mixture_loglik_kernel


@register_funcify_default_op_cache_key(MixtureLogLikelihoodGrad)
def _numba_loglik_grad(op, node=None, **kwargs):
    return mixture_loglik_grad_kernel


@functools.cache
def register_jax() -> None:
    """Teach PyTensor's JAX backend both Ops (for numpyro); imports JAX, so call it lazily."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp
    from pytensor.link.jax.dispatch import jax_funcify

    def loglik(X, log_w, mu, inv_chol):
        lower = jnp.tril(inv_chol)
        z = jnp.einsum("krc,kic->kir", lower, X[None, :, :] - mu[:, None, :])
        log_det = jnp.sum(jnp.log(jnp.diagonal(lower, axis1=-2, axis2=-1)), axis=-1)
        offsets = log_w + log_det - 0.5 * X.shape[1] * LOG_2PI
        return logsumexp(offsets[:, None] - 0.5 * jnp.sum(z**2, axis=-1), axis=0)

    def loglik_grad(X, log_w, mu, inv_chol, g):
        _, vjp = jax.vjp(lambda lw, m, a: loglik(X, lw, m, a), log_w, mu, inv_chol)
        return vjp(g)

    jax_funcify.register(MixtureLogLikelihood)(lambda op, **kwargs: loglik)
    jax_funcify.register(MixtureLogLikelihoodGrad)(lambda op, **kwargs: loglik_grad)
