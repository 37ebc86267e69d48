"""The compiled kernels: the fused pass against the one density formula
(workbench.mixture.component_log_prob), and the M-step against dense weighted formulas."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import logsumexp

from workbench.em import EMState, _kernels, em_step, m_step, sufficient_statistics
from workbench.em._steps import m_step_state
from workbench.mixture import (
    COVARIANCE_TYPES,
    component_log_prob,
    precisions_cholesky_from_covariances,
)


def reference_statistics(X, weights, means, prec_chol, covariance_type, sample_weight):
    """Dense numpy E-step built on component_log_prob, then the same shifted sums."""
    weighted = component_log_prob(X, means, prec_chol, covariance_type) + np.log(weights)
    norm = logsumexp(weighted, axis=1)
    resp = np.exp(weighted - norm[:, None]) * sample_weight[:, None]
    diff = X[:, None, :] - means[None, :, :]
    first = np.einsum("nk,nkd->kd", resp, diff)
    second = np.einsum("nk,nka,nkb->kab", resp, diff, diff)
    return resp.sum(axis=0), first, second, float(np.sum(sample_weight * norm))


@pytest.fixture(params=[1, 3], ids=["one-block", "three-threads"])
def row_blocks(request, monkeypatch):
    """Run the kernel on one block, or split over three threads as on a large fit."""
    if request.param > 1:
        monkeypatch.setattr(_kernels, "_ROWS_PER_THREAD", 3000)
        monkeypatch.setattr(_kernels, "available_cpus", lambda: 3)
    assert len(_kernels._row_blocks(9000)) == request.param
    return request.param


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_agrees_with_component_log_prob(
    covariance_type, weighted, row_blocks, random_covariances
):
    rng = np.random.default_rng(11)
    k, d, n = 4, 3, 9000  # more rows than one chunk, so chunk accumulation is exercised
    X = rng.normal(size=(n, d)) * 2 + 5.0  # off-centre data: the shift must handle it
    means = X[rng.choice(n, k, replace=False)]
    weights = rng.dirichlet(np.ones(k))
    prec_chol = precisions_cholesky_from_covariances(
        random_covariances(rng, covariance_type, k, d), covariance_type
    )
    sample_weight = rng.uniform(0, 3, n) if weighted else np.ones(n)
    sample_weight[:10] = 0.0 if weighted else 1.0

    stats = sufficient_statistics(
        X,
        shift=means,
        covariance_type=covariance_type,
        sample_weight=sample_weight if weighted else None,
        log_weights=np.log(weights),
        precisions_cholesky=prec_chol,
    )
    resp_sum, first, second, loglik = reference_statistics(
        X, weights, means, prec_chol, covariance_type, sample_weight
    )
    assert_allclose(stats.resp_sum, resp_sum, rtol=1e-12)
    assert_allclose(stats.first, first, rtol=1e-10, atol=1e-9)
    expected_second = (
        second if covariance_type in ("full", "tied") else np.diagonal(second, 0, 1, 2)
    )
    assert_allclose(stats.second, expected_second, rtol=1e-11)
    assert_allclose(stats.log_likelihood, loglik, rtol=1e-12)
    assert stats.weight_sum == pytest.approx(sample_weight.sum(), rel=1e-14)


def test_kernel_on_float32_matches_float64():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(500, 2)).astype(np.float32)
    means = np.array([[-1.0, 0.0], [1.0, 0.0]])
    prec = precisions_cholesky_from_covariances(np.stack([np.eye(2)] * 2), "full")
    got = sufficient_statistics(
        X,
        shift=means,
        covariance_type="full",
        log_weights=np.log([0.5, 0.5]),
        precisions_cholesky=prec,
    )
    want = sufficient_statistics(
        X.astype(np.float64),
        shift=means,
        covariance_type="full",
        log_weights=np.log([0.5, 0.5]),
        precisions_cholesky=prec,
    )
    # Float32 values are exact in float64, and the kernel accumulates in float64.
    for a, b in zip(got[:4], want[:4], strict=True):
        assert_allclose(a, b, rtol=1e-14)


def test_given_responsibilities_reproduce_dense_weighted_moments():
    rng = np.random.default_rng(13)
    X = rng.normal(size=(300, 2)) + 100.0  # far from the origin
    resp = rng.dirichlet(np.ones(3), size=300)
    stats = sufficient_statistics(
        X, shift=np.full((3, 2), 100.0), covariance_type="full", resp=resp
    )
    nk, means, covariances = m_step(stats, reg_covar=0.0, covariance_type="full", dtype=X.dtype)
    for j in range(3):
        expected_mean = resp[:, j] @ X / resp[:, j].sum()
        assert_allclose(means[j], expected_mean, rtol=1e-13)
        expected_cov = np.cov(X.T, aweights=resp[:, j], bias=True)
        assert_allclose(covariances[j], expected_cov, rtol=1e-8)
    assert_allclose(nk, resp.sum(axis=0), rtol=1e-13)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_matches_dense_weighted_formulas(covariance_type):
    """The shared compiled M-step (m_step and the bootstrap refits) against scikit-learn's
    dense formulas, written out with responsibilities times sample weights."""
    rng = np.random.default_rng(15)
    X = rng.normal(size=(400, 3)) * [1.0, 2.0, 0.5] + 5.0
    resp = rng.dirichlet(np.full(3, 0.5), size=400)
    sample_weight = rng.exponential(size=400)
    # The statistics are centred on an arbitrary shift; the estimates must not depend on it.
    shift = 5.0 + rng.normal(size=(3, 3))
    reg_covar = 1e-3
    stats = sufficient_statistics(
        X, shift=shift, covariance_type=covariance_type, sample_weight=sample_weight, resp=resp
    )
    state, collapsed = m_step_state(
        stats, reg_covar=reg_covar, covariance_type=covariance_type, dtype=X.dtype
    )

    w = resp * sample_weight[:, None]
    nk = w.sum(axis=0) + 10 * np.finfo(X.dtype).eps
    means = w.T @ X / nk[:, None]
    if covariance_type == "full":
        expected = np.stack(
            [(w[:, k, None] * (X - means[k])).T @ (X - means[k]) / nk[k] for k in range(3)]
        )
        expected += reg_covar * np.eye(3)
    elif covariance_type == "tied":
        scatter = X.T @ (sample_weight[:, None] * X) - (nk[:, None] * means).T @ means
        expected = scatter / nk.sum() + reg_covar * np.eye(3)
    else:
        expected = w.T @ (X * X) / nk[:, None] - means**2 + reg_covar
        if covariance_type == "spherical":
            expected = expected.mean(axis=1)
    assert collapsed == ()
    assert_allclose(state.weights, nk / nk.sum(), rtol=1e-13)
    assert_allclose(state.means, means, rtol=1e-12)
    assert_allclose(state.covariances, expected, rtol=1e-10)


def test_em_step_is_pure():
    rng = np.random.default_rng(14)
    X = rng.normal(size=(200, 2))
    cov = np.stack([np.eye(2)] * 2)
    state = EMState(
        np.array([0.5, 0.5]),
        np.array([[-1.0, 0.0], [1.0, 0.0]]),
        cov,
        precisions_cholesky_from_covariances(cov, "full"),
    )
    copies = [a.copy() for a in state]
    first = em_step(X, state, reg_covar=1e-6, covariance_type="full")
    second = em_step(X, state, reg_covar=1e-6, covariance_type="full")
    for before, after in zip(copies, state, strict=True):
        assert np.array_equal(before, after)
    assert first.lower_bound == second.lower_bound
    assert first.collapsed == ()
    for a, b in zip(first.state, second.state, strict=True):
        assert np.array_equal(a, b)
