"""Post-hoc relabelling of mixture posterior draws and label-switching detection.

Every function works on flat draws, ``S`` = chains x draws, and returns or takes
``orders`` of shape (S, K): row ``s`` says which raw component becomes each relabelled
component, ``relabelled[s] = raw[s][orders[s]]`` (the convention of
:meth:`workbench.mixture.MixtureParams.permuted` and :func:`workbench.align.align_draws`).

Two relabellers:

* :func:`stephens_orders` -- Stephens' (2000) KL algorithm on the per-draw allocation
  probabilities ``p[s, i, k]``; needs no reference.
* :func:`reference_orders` -- the Hungarian match of each draw to a reference mixture (an
  EM fit or the truth), by :func:`workbench.align.align_draws`.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from workbench.align import align_draws
from workbench.mixture import MixtureParams

__all__ = [
    "apply_orders",
    "canonical_orders",
    "label_switching_report",
    "reference_orders",
    "stephens_orders",
]


def _permutation_orders(costs: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment per draw; ``costs[s, j, l]`` = cost of raw ``j`` -> label ``l``."""
    orders = np.empty(costs.shape[:2], dtype=np.intp)
    for s, cost in enumerate(costs):
        rows, cols = linear_sum_assignment(cost)
        orders[s, cols] = rows
    return orders


def stephens_orders(probabilities: np.ndarray, *, max_iter: int = 100) -> np.ndarray:
    """Stephens' KL relabelling algorithm.

    Alternates between the mean allocation matrix ``q = mean_s p_s[:, order_s]`` and, per
    draw, the permutation minimising ``KL(p_s || q)``; the cost of sending raw label
    ``j`` to label ``l`` is ``-sum_i p_s[i, j] log q[i, l]`` (the ``p log p`` term does
    not depend on the permutation). Each step cannot increase the total KL, so it stops
    when no permutation changes.

    Parameters
    ----------
    probabilities : ndarray of shape (S, n_samples, K)
        Allocation probabilities under the raw labels of each draw.
    max_iter : int, default 100

    Returns
    -------
    orders : ndarray of shape (S, K)
        Starts from the identity, so draws that agree with the raw labelling keep it.
    """
    p = np.asarray(probabilities, dtype=float)
    S, _, K = p.shape
    orders = np.tile(np.arange(K), (S, 1))
    for _ in range(max_iter):
        permuted = np.take_along_axis(p, orders[:, None, :], axis=2)
        log_q = np.log(np.maximum(permuted.mean(axis=0), 1e-300))
        costs = -np.einsum("sij,il->sjl", p, log_q)
        new = _permutation_orders(costs)
        if np.array_equal(new, orders):
            break
        orders = new
    return orders


def reference_orders(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, reference: MixtureParams
) -> np.ndarray:
    """Hungarian match of every draw to a reference mixture (KL cost).

    Parameters
    ----------
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, d)
    covariances : ndarray of shape (S, K, d, d)
    reference : MixtureParams with K components

    Returns
    -------
    orders : ndarray of shape (S, K)
        ``relabelled[s, k]`` is matched to ``reference`` component ``k``.
    """
    return align_draws(weights, means, covariances, reference, cost="kl")


def apply_orders(values: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Reorder the component axis (axis 1) of per-draw arrays.

    Parameters
    ----------
    values : ndarray of shape (S, K, ...)
    orders : ndarray of shape (S, K)

    Returns
    -------
    ndarray of shape (S, K, ...)
    """
    index = orders.reshape(orders.shape + (1,) * (values.ndim - 2))
    return np.take_along_axis(values, index, axis=1)


def _modal_order(orders: np.ndarray) -> np.ndarray:
    unique, counts = np.unique(orders, axis=0, return_counts=True)
    return unique[np.argmax(counts)]


def canonical_orders(orders: np.ndarray) -> np.ndarray:
    """Compose ``orders`` with one global permutation so that the modal order is the identity.

    Stephens' labels are defined only up to a global permutation; this keeps the raw
    (ordered-transform) labels for the majority of draws.

    Parameters
    ----------
    orders : ndarray of shape (S, K)

    Returns
    -------
    ndarray of shape (S, K)
    """
    return orders[:, np.argsort(_modal_order(orders))]


def label_switching_report(orders: np.ndarray, n_chains: int) -> dict[str, int | bool]:
    """Detect whether chains or draws disagree on the component order.

    Parameters
    ----------
    orders : ndarray of shape (S, K)
        Relabelling orders of the flat draws, chain-major (``S = n_chains * n_draws``).
    n_chains : int

    Returns
    -------
    dict
        ``n_relabelled_draws``: draws whose order differs from the modal order over all
        draws (a draw whose raw labels were swapped relative to the rest);
        ``n_chains_disagreeing``: chains whose own modal order differs from the overall
        one (a whole chain on a different labelling); ``label_switching``: True if either
        count is non-zero.
    """
    modal = _modal_order(orders)
    differs = np.any(orders != modal, axis=1)
    per_chain = orders.reshape(n_chains, -1, orders.shape[1])
    chains_disagreeing = sum(not np.array_equal(_modal_order(chain), modal) for chain in per_chain)
    n_relabelled = int(differs.sum())
    return {
        "n_relabelled_draws": n_relabelled,
        "n_chains_disagreeing": int(chains_disagreeing),
        "label_switching": bool(n_relabelled > 0 or chains_disagreeing > 0),
    }
