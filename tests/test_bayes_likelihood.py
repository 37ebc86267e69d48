"""The fused mixture log-likelihood Op: value against mixture.py, gradient against finite
differences, and the numba and JAX backends against the kernels."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.gradient import verify_grad

from workbench.bayes.likelihood import (
    mixture_log_likelihood,
    mixture_loglik_grad_kernel,
    mixture_loglik_kernel,
    register_jax,
)
from workbench.mixture import MixtureParams, log_prob

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


def random_case(rng: np.random.Generator, n: int, K: int, d: int):
    X = rng.normal(size=(n, d)) * 2.0
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(size=(K, d))
    factors = rng.normal(size=(K, d, d)) * 0.4
    covariances = factors @ np.swapaxes(factors, -1, -2) + np.eye(d) * 0.5
    inv_chol = np.linalg.inv(np.linalg.cholesky(covariances))
    return X, MixtureParams(weights, means, covariances), np.tril(inv_chol)


@pytest.mark.parametrize(("n", "K", "d"), [(40, 3, 2), (25, 2, 1), (30, 2, 4)])
def test_value_matches_mixture_log_prob(n, K, d):
    X, params, inv_chol = random_case(np.random.default_rng(n + K + d), n, K, d)
    got = mixture_loglik_kernel(X, np.log(params.weights), params.means, inv_chol)
    np.testing.assert_allclose(got, log_prob(X, params), rtol=1e-12)


@pytest.mark.parametrize(("n", "K", "d"), [(15, 3, 2), (10, 2, 3)])
def test_gradient_matches_finite_differences(n, K, d):
    rng = np.random.default_rng(100 + d)
    X, params, inv_chol = random_case(rng, n, K, d)
    g = rng.normal(size=n)

    def weighted(log_w, mu, inv_chol):
        return pt.dot(mixture_log_likelihood(X, log_w, mu, inv_chol), g)

    verify_grad(weighted, [np.log(params.weights), params.means, inv_chol], rng=rng)


def test_upper_triangle_is_ignored_and_gets_no_gradient():
    X, params, inv_chol = random_case(np.random.default_rng(3), 20, 2, 3)
    noisy = inv_chol + np.triu(np.ones((3, 3)), 1)
    log_w = np.log(params.weights)
    np.testing.assert_array_equal(
        mixture_loglik_kernel(X, log_w, params.means, noisy),
        mixture_loglik_kernel(X, log_w, params.means, inv_chol),
    )
    _, _, g_inv_chol = mixture_loglik_grad_kernel(X, log_w, params.means, noisy, np.ones(20))
    assert np.all(np.triu(g_inv_chol, 1) == 0.0)


@pytest.mark.parametrize("mode", ["NUMBA", "JAX"])
def test_compiled_backends_agree_with_the_kernels(mode):
    if mode == "JAX":
        register_jax()
    X, params, inv_chol = random_case(np.random.default_rng(5), 30, 3, 2)
    log_w, mu, chol = pt.vector("log_w"), pt.matrix("mu"), pt.tensor3("inv_chol")
    values = mixture_log_likelihood(X, log_w, mu, chol)
    grads = pytensor.grad(values.sum(), [log_w, mu, chol])
    fn = pytensor.function([log_w, mu, chol], [values, *grads], mode=mode)
    args = (np.log(params.weights), params.means, inv_chol)
    value, *grad = fn(*args)
    np.testing.assert_allclose(value, mixture_loglik_kernel(X, *args), rtol=1e-10)
    expected = mixture_loglik_grad_kernel(X, *args, np.ones(30))
    for got, want in zip(grad, expected, strict=True):
        np.testing.assert_allclose(np.tril(got) if got.ndim == 3 else got, want, rtol=1e-9)
