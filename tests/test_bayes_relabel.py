"""Relabelling of label-switched draws (Stephens, Hungarian), the detector and diagnostics."""

import numpy as np
import pytest
import xarray as xr

from workbench.bayes.diagnostics import component_parameters, convergence, sampler_counts
from workbench.bayes.relabel import (
    apply_orders,
    canonical_orders,
    label_switching_report,
    reference_orders,
    stephens_orders,
)
from workbench.mixture import MixtureParams, responsibilities, sample

TRUTH = MixtureParams(
    np.array([0.25, 0.45, 0.3]),
    np.array([[-5.0, 0.0], [0.0, 3.0], [5.0, -1.0]]),
    np.array([np.eye(2), 0.5 * np.eye(2), [[1.0, 0.3], [0.3, 0.8]]]),
)


def switched_draws(n_draws: int, rng: np.random.Generator):
    """Noisy draws around TRUTH, each with a random known permutation of its labels."""
    weights = TRUTH.weights * rng.uniform(0.9, 1.1, size=(n_draws, 3))
    weights /= weights.sum(axis=1, keepdims=True)
    means = TRUTH.means + 0.1 * rng.standard_normal((n_draws, 3, 2))
    covs = np.broadcast_to(TRUTH.covariances, (n_draws, 3, 2, 2)) * rng.uniform(
        0.9, 1.1, size=(n_draws, 3, 1, 1)
    )
    perms = np.stack([rng.permutation(3) for _ in range(n_draws)])
    return (
        (weights, means, covs),
        (apply_orders(weights, perms), apply_orders(means, perms), apply_orders(covs, perms)),
        perms,
    )


def test_apply_orders_matches_mixture_permuted():
    rng = np.random.default_rng(0)
    _, (w, m, c), _ = switched_draws(5, rng)
    orders = np.stack([rng.permutation(3) for _ in range(5)])
    for s in range(5):
        expected = MixtureParams(w[s], m[s], c[s]).permuted(orders[s])
        np.testing.assert_array_equal(apply_orders(m, orders)[s], expected.means)
        np.testing.assert_array_equal(apply_orders(c, orders)[s], expected.covariances)


def test_stephens_recovers_known_permutations():
    rng = np.random.default_rng(1)
    (w0, m0, c0), (w, m, c), perms = switched_draws(60, rng)
    X, _ = sample(TRUTH, 200, rng)
    probabilities = np.stack(
        [responsibilities(X, MixtureParams(*p)) for p in zip(w, m, c, strict=True)]
    )
    orders = canonical_orders(stephens_orders(probabilities))
    relabelled = apply_orders(m, orders)
    # Stephens' labels are defined up to one global permutation: find it from draw 0.
    glob = perms[0][orders[0]]
    np.testing.assert_array_equal(relabelled, m0[:, glob])
    # The labelling kept is the modal raw labelling, so recovering the truth's order
    # needs exactly the draws whose permutation differs from the modal one.
    report = label_switching_report(orders, n_chains=3)
    modal_count = np.max(np.unique(perms, axis=0, return_counts=True)[1])
    assert report["n_relabelled_draws"] == 60 - modal_count
    assert report["label_switching"]


def test_hungarian_to_reference_recovers_known_permutations():
    rng = np.random.default_rng(2)
    (w0, m0, c0), (w, m, c), perms = switched_draws(40, rng)
    orders = reference_orders(w, m, c, TRUTH)
    np.testing.assert_array_equal(orders, np.argsort(perms, axis=1))
    np.testing.assert_array_equal(apply_orders(w, orders), w0)
    np.testing.assert_array_equal(apply_orders(c, orders), c0)


def test_detector_quiet_on_consistent_labels_and_flags_a_switched_chain():
    orders = np.tile(np.arange(3), (4 * 50, 1))
    assert label_switching_report(orders, 4) == {
        "n_relabelled_draws": 0,
        "n_chains_disagreeing": 0,
        "label_switching": False,
    }
    orders[100:150] = [1, 0, 2]  # chain 2 sampled with components 0 and 1 swapped
    assert label_switching_report(orders, 4) == {
        "n_relabelled_draws": 50,
        "n_chains_disagreeing": 1,
        "label_switching": True,
    }


def test_canonical_orders_makes_modal_order_identity():
    orders = np.array([[2, 0, 1]] * 5 + [[0, 1, 2]] * 2)
    canon = canonical_orders(orders)
    np.testing.assert_array_equal(canon[:5], np.tile(np.arange(3), (5, 1)))
    # The other draws get the same global change of labels: raw label 1 -> 0, 2 -> 1, 0 -> 2.
    np.testing.assert_array_equal(canon[5:], [[1, 2, 0]] * 2)


def test_convergence_flags_chains_that_disagree():
    rng = np.random.default_rng(3)
    mixed = rng.standard_normal((4, 200, 2))
    assert convergence(mixed)["max_r_hat"] < 1.02
    assert convergence(mixed)["min_ess_bulk"] > 400
    stuck = mixed + np.array([0.0, 0.0, 0.0, 5.0])[:, None, None]
    bad = convergence(stuck)
    assert bad["max_r_hat"] > 1.5
    assert bad["min_ess_bulk"] < 50


def test_component_parameters_pick_free_entries():
    c, s, K, d = 2, 3, 2, 2
    covs = np.broadcast_to([[2.0, 0.5], [0.5, 3.0]], (c, s, K, d, d))
    w, mu = np.full((c, s, K), 0.5), np.zeros((c, s, K, d))
    assert component_parameters(w, mu, covs, "full").shape == (c, s, K + K * d + K * 3)
    assert component_parameters(w, mu, covs, "tied").shape == (c, s, K + K * d + 3)
    np.testing.assert_array_equal(
        component_parameters(w, mu, covs, "diag")[0, 0, -4:], [2, 3, 2, 3]
    )
    assert component_parameters(w, mu, covs, "spherical").shape == (c, s, K + K * d + K)


def test_sampler_counts_read_each_sampler_convention():
    diverging = np.zeros((2, 10), dtype=bool)
    diverging[0, 3] = diverging[1, 7] = True
    depth_flag = np.zeros((2, 10), dtype=bool)
    depth_flag[1, :4] = True
    nutpie = xr.Dataset(
        {
            "diverging": (("chain", "draw"), diverging),
            "maxdepth_reached": (("chain", "draw"), depth_flag),
        }
    )
    assert sampler_counts(nutpie) == {"n_divergences": 2, "n_max_treedepth": 4}
    numpyro = xr.Dataset(
        {
            "diverging": (("chain", "draw"), diverging),
            "tree_depth": (("chain", "draw"), np.where(depth_flag, 10, 3)),
        }
    )
    assert sampler_counts(numpyro) == {"n_divergences": 2, "n_max_treedepth": 4}
    assert all(np.isnan(v) for v in sampler_counts(None).values())


@pytest.mark.parametrize("n_chains", [1, 2])
def test_convergence_needs_enough_draws(n_chains):
    draws = np.random.default_rng(4).standard_normal((n_chains, 3, 2))
    assert np.isnan(convergence(draws)["max_r_hat"])


def test_convergence_skips_constant_parameters():
    # With K = 1 the weight is always 1: it must neither warn nor hide the others.
    rng = np.random.default_rng(5)
    params = np.concatenate([np.ones((4, 100, 1)), rng.standard_normal((4, 100, 2))], axis=-1)
    expected = convergence(params[..., 1:])
    assert convergence(params) == expected
    assert np.isfinite(expected["max_r_hat"])
