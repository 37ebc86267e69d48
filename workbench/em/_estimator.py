"""``GaussianMixture``: scikit-learn's estimator interface over our fused EM steps.

Constructor parameters, defaults, methods, fitted attributes, messages and random-number
use follow ``sklearn.mixture.GaussianMixture`` (scikit-learn 1.9), so the two give the same
fit from the same seed. On top of that this class offers ``sample_weight``, an optional
per-iteration ``history_``, explicit handling of collapsing components (``on_collapse``),
and :meth:`GaussianMixture.to_params`.

Private scikit-learn helpers: only these three, each part of the estimator contract with no
public equivalent in scikit-learn 1.9 (``tests/test_em_estimator.py`` keeps this list true):

- ``sklearn.utils._param_validation.Interval`` and ``StrOptions``: ``_parameter_constraints``
  is how ``check_estimator`` (``check_param_validation``) expects constraints.
- ``sklearn.base._fit_context``: validates those constraints once per fit, with
  scikit-learn's messages.
- ``sklearn.utils.validation._check_sample_weight``: the ``sample_weight`` contract (shape,
  scalar, NaN, negative, all-zero) and messages that scikit-learn's own estimators share.

Nothing from ``sklearn.mixture._*``: the EM numerics and the ``*_init`` checks are ours.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from time import time
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from workbench import mixture
from workbench.em._kernels import sufficient_statistics
from workbench.em._steps import (
    EMState,
    covariances_from_precisions,
    e_step,
    m_step,
    m_step_state,
    mean_log_likelihood,
    precisions_cholesky_from_precisions,
    safe_precisions_cholesky,
    split_widest,
    variance_floor,
)
from workbench.em.options import INIT_METHODS
from workbench.mixture import COVARIANCE_TYPES, MixtureParams, component_log_prob, n_parameters

__all__ = ["EMHistory", "GaussianMixture"]

# Rows per block when scoring: bounds the (block, n_components) temporaries of
# component_log_prob so prediction never needs more memory than its output.
_SCORE_BLOCK = 8192

# scikit-learn's collapse error, verbatim (sklearn/mixture/_gaussian_mixture.py), and the
# sentence it appends for float32 data.
_SKLEARN_COLLAPSE_MESSAGE = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)
_SKLEARN_FLOAT32_NOTE = (
    " The numerical accuracy can also be improved by passing float64 data instead of float32."
)


class EMHistory(NamedTuple):
    """Parameters of every EM iteration of the best initialisation.

    Entry 0 is the initialisation and entry ``t`` the parameters after ``t`` iterations,
    so every array has ``n_iter_ + 1`` rows.

    Attributes
    ----------
    weights : ndarray of shape (n_iter + 1, n_components)
    means : ndarray of shape (n_iter + 1, n_components, n_features)
    covariances : ndarray of shape (n_iter + 1, *covariances_.shape)
    lower_bound : ndarray of shape (n_iter + 1,)
        Mean log-likelihood of the training data under each entry's parameters; the
        first ``n_iter_`` values equal ``lower_bounds_``.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    lower_bound: np.ndarray


class _EMRun(NamedTuple):
    """Outcome of the EM iterations from one start.

    Attributes
    ----------
    state : EMState
        Parameters after the last iteration.
    lower_bound : float
        Lower bound at the last iteration.
    n_iter : int
    lower_bounds : list of float of length ``n_iter``
    converged : bool
    n_reseeds : int
        Components re-seeded during the iterations (not at initialisation).
    trace : list of EMState or None
        The initial state and the state after each iteration, if ``keep_history``.
    """

    state: EMState
    lower_bound: float
    n_iter: int
    lower_bounds: list[float]
    converged: bool
    n_reseeds: int
    trace: list[EMState] | None


def _history(trace: list[EMState], lower_bounds: list[float]) -> EMHistory:
    """Stack the states of one start into an :class:`EMHistory`.

    Parameters
    ----------
    trace : list of EMState of length ``n_iter + 1``
    lower_bounds : list of float of length ``n_iter + 1``
        The lower bound of every state, the last from the final E-step.

    Returns
    -------
    EMHistory
    """
    return EMHistory(
        weights=np.stack([state.weights for state in trace]),
        means=np.stack([state.means for state in trace]),
        covariances=np.stack([state.covariances for state in trace]),
        lower_bound=np.array(lower_bounds),
    )


def _check_shape(param: np.ndarray, param_shape: tuple[int, ...], name: str) -> None:
    if param.shape != param_shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {param_shape}, but got {param.shape}"
        )


def _check_weights(weights, n_components: int) -> np.ndarray:
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{np.max(weights):.5f}, min value {np.min(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(float(np.abs(1.0 - np.sum(weights))), 0.0, atol=atol):
        raise ValueError(
            "The parameter 'weights' should be normalized, "
            f"but got sum(weights) = {np.sum(weights):.5f}"
        )
    return weights


def _check_means(means, n_components: int, n_features: int) -> np.ndarray:
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precisions(
    precisions, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    precisions = check_array(
        precisions,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=covariance_type == "full",
    )
    shapes = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }
    _check_shape(precisions, shapes[covariance_type], f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
        return precisions
    for matrix in precisions if covariance_type == "full" else [precisions]:
        if not (np.allclose(matrix, matrix.T) and np.all(np.linalg.eigvalsh(matrix) > 0.0)):
            raise ValueError(
                f"'{covariance_type} precision' should be symmetric, positive-definite"
            )
    return precisions


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM; a drop-in for ``sklearn.mixture.GaussianMixture``.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        'full': each component has its own general covariance matrix; 'tied': all
        components share one; 'diag': each has its own diagonal covariance; 'spherical':
        each has its own single variance.
    tol : float, default=1e-3
        EM stops when the gain in the mean log-likelihood per sample is below ``tol``.
    reg_covar : float, default=1e-6
        Non-negative value added to the diagonal of every covariance.
    max_iter : int, default=100
        Number of EM iterations; 0 only initialises.
    n_init : int, default=1
        Number of initialisations; the one with the largest lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the initial responsibilities are chosen.
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances): (n_components,) spherical, (n_features,
        n_features) tied, (n_components, n_features) diag, (n_components, n_features,
        n_features) full. If all three ``*_init`` are given, no initialisation runs.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and :meth:`sample`.
    warm_start : bool, default=False
        Start each ``fit`` from the previous solution (``n_init`` is then ignored).
    verbose : int, default=0
    verbose_interval : int, default=10
    keep_history : bool, default=False
        Record the parameters of every iteration of the best initialisation in
        ``history_``. Off by default: nothing is copied when off.
    on_collapse : {'raise', 'reseed'}, default='raise'
        What to do when a component's covariance stops being positive definite (it has
        shrunk onto one sample or a subspace: its standard deviation in some direction is
        within ten rounding units of the data's largest value). 'raise' raises a
        ``ValueError`` naming the component. 'reseed' re-seeds it by splitting the widest
        healthy component in two along its longest axis, and continues; ``n_reseeds_``
        counts the re-seeds. A collapsed 'tied'
        covariance always raises: no split can repair a shared covariance.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        (n_components,) spherical, (n_features, n_features) tied, (n_components,
        n_features) diag, (n_components, n_features, n_features) full.
    precisions_ : ndarray
        Inverse covariances, same shape as ``covariances_``.
    precisions_cholesky_ : ndarray
        Upper Cholesky factors of ``precisions_``, same shape.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood of the best initialisation at its last E-step.
    lower_bounds_ : list of float of length ``n_iter_``
    n_reseeds_ : int
        Components re-seeded during the best initialisation (``on_collapse='reseed'``).
    history_ : EMHistory or None
        Per-iteration parameters when ``keep_history=True``, else None.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string feature names.
    """

    # Declared for the type checker (no value, so ``hasattr`` still means "fitted").
    lower_bound_: float

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions(set(INIT_METHODS))],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "keep_history": ["boolean"],
        "on_collapse": [StrOptions({"raise", "reseed"})],
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: ArrayLike | None = None,
        means_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        keep_history: bool = False,
        on_collapse: str = "raise",
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.keep_history = keep_history
        self.on_collapse = on_collapse

    # ------------------------------------------------------------------ fitting

    def fit(
        self, X: ArrayLike, y: None = None, sample_weight: ArrayLike | None = None
    ) -> GaussianMixture:
        """Estimate the parameters with EM, keeping the best of ``n_init`` starts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative finite weights; an integer weight acts like repeating the row.

        Returns
        -------
        self : GaussianMixture
        """
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(
        self, X: ArrayLike, y: None = None, sample_weight: ArrayLike | None = None
    ) -> np.ndarray:
        """Fit as :meth:`fit` does, then return the most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        X, sample_weight = self._validate_fit_data(X, sample_weight)
        inits = self._checked_inits(X.shape[1])
        floor = variance_floor(X)

        # With warm_start, a refit continues from the fitted parameters: one start, no init.
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        random_state = check_random_state(self.random_state)

        max_lower_bound = -np.inf
        best_params: EMState | None = None
        best_n_iter = 0
        best_lower_bounds: list[float] = []
        best_n_reseeds = 0
        best_trace: list[EMState] | None = None
        self.converged_ = False
        for init in range(n_init):
            self._print_verbose_msg_init_beg(init)
            if do_init:
                state, n_init_reseeds = self._initialize(
                    X, sample_weight, random_state, inits, floor
                )
            else:
                state, n_init_reseeds = self._fitted_state(), 0
            if self.max_iter == 0:
                # As in scikit-learn: the last start's initial parameters, no lower bound.
                best_params = state
                best_n_iter = 0
                best_lower_bounds = []
                best_n_reseeds = n_init_reseeds
                best_trace = [state] if self.keep_history else None
                continue
            run = self._run_em(
                X, sample_weight, state, -np.inf if do_init else self.lower_bound_, floor
            )
            self._print_verbose_msg_init_end(run.lower_bound, run.converged)
            if run.lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                max_lower_bound = run.lower_bound
                best_params = run.state
                best_n_iter = run.n_iter
                best_lower_bounds = run.lower_bounds
                best_n_reseeds = n_init_reseeds + run.n_reseeds
                best_trace = run.trace
                self.converged_ = run.converged

        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. "
                "Try different init parameters, or increase max_iter, "
                "tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )

        # n_init >= 1 (checked by the parameter constraints), so the loop set it.
        assert best_params is not None
        self._set_state(best_params)
        self.n_iter_ = best_n_iter
        self.lower_bound_ = max_lower_bound
        self.lower_bounds_ = best_lower_bounds
        self.n_reseeds_ = best_n_reseeds

        # A final E-step keeps fit_predict(X) consistent with fit(X).predict(X).
        labels, final_lower_bound = self._final_e_step(
            X, sample_weight, with_lower_bound=best_trace is not None
        )
        self.history_ = None
        if best_trace is not None:
            self.history_ = _history(best_trace, [*best_lower_bounds, final_lower_bound])
        return labels

    def _validate_fit_data(
        self, X: ArrayLike, sample_weight: ArrayLike | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``X`` as a C-contiguous float array and validated ``sample_weight`` (or None)."""
        X = np.asarray(validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2))
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}"
            )
        X = np.ascontiguousarray(X)
        if sample_weight is None:
            return X, None
        sample_weight = np.asarray(
            _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        )
        n_positive = int(np.count_nonzero(sample_weight))
        if n_positive < self.n_components:
            raise ValueError(
                f"sample_weight has {n_positive} positive entries, but n_components = "
                f"{self.n_components} needs at least that many samples with positive weight"
            )
        return X, sample_weight

    def _run_em(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray | None,
        state: EMState,
        lower_bound: float,
        floor: np.ndarray,
    ) -> _EMRun:
        """EM iterations from one start until convergence or ``max_iter``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        sample_weight : ndarray of shape (n_samples,) or None
        state : EMState
            The start's initial parameters.
        lower_bound : float
            Lower bound before the first iteration (-inf unless warm-starting).
        floor : ndarray of shape (n_features,)
            Collapse threshold from :func:`variance_floor`.

        Returns
        -------
        _EMRun
        """
        trace = [state] if self.keep_history else None
        lower_bounds: list[float] = []
        converged = False
        n_reseeds = 0
        last_reseed = -2
        for n_iter in range(1, self.max_iter + 1):
            prev_lower_bound = lower_bound
            stats = e_step(
                X, state, covariance_type=self.covariance_type, sample_weight=sample_weight
            )
            state, collapsed = m_step_state(
                stats,
                reg_covar=self.reg_covar,
                covariance_type=self.covariance_type,
                dtype=X.dtype,
                floor=floor,
            )
            # Of the parameters before this step, as scikit-learn records it.
            lower_bound = mean_log_likelihood(stats)
            if collapsed:
                self._collapse(collapsed, f"EM iteration {n_iter}", X.dtype)
                state = self._reseed(state, collapsed, floor)
                n_reseeds += len(collapsed)
                last_reseed = n_iter
            lower_bounds.append(lower_bound)
            if trace is not None:
                trace.append(state)
            change = lower_bound - prev_lower_bound
            self._print_verbose_msg_iter_end(n_iter, change)
            if self._has_converged(change, n_iter, last_reseed):
                converged = True
                break
        return _EMRun(state, lower_bound, n_iter, lower_bounds, converged, n_reseeds, trace)

    def _fitted_state(self) -> EMState:
        """The fitted parameters, where a warm start continues from."""
        return EMState(self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _has_converged(self, change: float, n_iter: int, last_reseed: int) -> bool:
        """Below ``tol``, and not in the iteration right after a re-seed.

        A re-seeded component has not been evaluated yet: no convergence until one full
        iteration has run with it.
        """
        return abs(change) < self.tol and n_iter > last_reseed + 1

    def _final_e_step(
        self, X: np.ndarray, sample_weight: np.ndarray | None, *, with_lower_bound: bool
    ) -> tuple[np.ndarray, float]:
        """Labels under the fitted parameters and, if asked, their mean log-likelihood.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        lower_bound : float
            Weighted mean log-likelihood of ``X``; NaN unless ``with_lower_bound``.
        """
        labels = np.empty(X.shape[0], dtype=np.intp)
        log_likelihood = 0.0
        for start, stop, weighted in self._weighted_log_prob_blocks(X):
            labels[start:stop] = np.argmax(weighted, axis=1)
            if with_lower_bound:
                norm = logsumexp(weighted, axis=1)
                if sample_weight is None:
                    log_likelihood += float(np.sum(norm))
                else:
                    w = sample_weight[start:stop]
                    log_likelihood += float(np.sum(w[w > 0] * norm[w > 0]))
        if not with_lower_bound:
            return labels, math.nan
        total_weight = X.shape[0] if sample_weight is None else np.sum(sample_weight)
        return labels, log_likelihood / total_weight

    def _checked_inits(self, n_features: int) -> tuple:
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = _check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            means = _check_means(self.means_init, self.n_components, n_features)
        if self.precisions_init is not None:
            precisions = _check_precisions(
                self.precisions_init, self.covariance_type, self.n_components, n_features
            )
        return weights, means, precisions

    def _initial_resp(self, X, sample_weight, random_state) -> np.ndarray:
        n_samples = X.shape[0]
        if self.init_params == "kmeans":
            resp = np.zeros((n_samples, self.n_components), dtype=X.dtype)
            label = (
                KMeans(n_clusters=self.n_components, n_init=1, random_state=random_state)
                .fit(X, sample_weight=sample_weight)
                .labels_
            )
            resp[np.arange(n_samples), label] = 1
        elif self.init_params == "random":
            resp = np.asarray(
                random_state.uniform(size=(n_samples, self.n_components)), dtype=X.dtype
            )
            resp /= resp.sum(axis=1)[:, np.newaxis]
        elif self.init_params == "random_from_data":
            resp = np.zeros((n_samples, self.n_components), dtype=X.dtype)
            p = None
            if sample_weight is not None and np.any(sample_weight != sample_weight[0]):
                # Equal weights draw exactly as no weights: numpy's choice takes another
                # path (and other random numbers) whenever p is given.
                p = sample_weight / sample_weight.sum()
            indices = random_state.choice(n_samples, size=self.n_components, replace=False, p=p)
            resp[indices, np.arange(self.n_components)] = 1
        else:
            resp = np.zeros((n_samples, self.n_components), dtype=X.dtype)
            _, indices = kmeans_plusplus(
                X, self.n_components, random_state=random_state, sample_weight=sample_weight
            )
            resp[indices, np.arange(self.n_components)] = 1
        return resp

    def _initialize(self, X, sample_weight, random_state, inits, floor) -> tuple[EMState, int]:
        weights_init, means_init, precisions_init = inits
        weights = means = covariances = None
        if weights_init is None or means_init is None or precisions_init is None:
            resp = self._initial_resp(X, sample_weight, random_state)
            # Two passes: the first finds the means, the second centres the scatter on them.
            n_components, n_features = self.n_components, X.shape[1]
            raw = sufficient_statistics(
                X,
                shift=np.zeros((n_components, n_features)),
                covariance_type="diag",
                sample_weight=sample_weight,
                resp=resp,
            )
            centre = raw.first / (raw.resp_sum + 10 * np.finfo(X.dtype).eps)[:, None]
            stats = sufficient_statistics(
                X,
                shift=centre,
                covariance_type=self.covariance_type,
                sample_weight=sample_weight,
                resp=resp,
            )
            nk, means, covariances = m_step(
                stats, reg_covar=self.reg_covar, covariance_type=self.covariance_type, dtype=X.dtype
            )
            # scikit-learn divides by n_samples here, not by sum(nk) as in the M-step.
            weights = nk / stats.weight_sum
            if self.covariance_type == "tied":
                unclaimed = self._unclaimed_scatter(X, sample_weight, resp)
                covariances += (unclaimed / np.sum(nk)).astype(X.dtype)
        weights = weights if weights_init is None else weights_init
        means = means if means_init is None else means_init
        # Whatever was not given was estimated above.
        assert weights is not None and means is not None
        if precisions_init is not None:
            prec_chol = precisions_cholesky_from_precisions(precisions_init, self.covariance_type)
            covariances = covariances_from_precisions(precisions_init, self.covariance_type)
            return EMState(weights, means, covariances, prec_chol), 0
        assert covariances is not None  # estimated above, as precisions_init is None
        prec_chol, collapsed = safe_precisions_cholesky(covariances, self.covariance_type, floor)
        state = EMState(weights, means, covariances, prec_chol)
        if collapsed:
            self._collapse(collapsed, "initialisation", X.dtype)
            state = self._reseed(state, collapsed, floor)
        return state, len(collapsed)

    @staticmethod
    def _unclaimed_scatter(X, sample_weight, resp) -> np.ndarray:
        """``sum_i w_i (1 - sum_k r_ik) x_i x_i^T``: second moment of unclaimed rows.

        scikit-learn's tied estimate ``(X^T X - sum_k n_k mu_k mu_k^T) / sum(n_k)`` counts
        every row, including rows that no component claims ('k-means++' and
        'random_from_data' start from ``n_components`` one-hot rows). Adding this term
        mirrors it, so the same seed gives the same (broad) starting covariance.
        """
        mass = 1.0 - resp.sum(axis=1, dtype=np.float64)
        if sample_weight is not None:
            mass *= sample_weight
        claimed = np.abs(mass) <= 1e-12
        if np.all(claimed):
            return np.zeros((X.shape[1], X.shape[1]))
        rows = X[~claimed]
        return (rows * mass[~claimed, None]).T @ rows

    # ------------------------------------------------------------- collapses

    def _collapse(self, collapsed: tuple[int, ...], when: str, dtype: np.dtype) -> None:
        """Raise unless ``on_collapse='reseed'`` (and the covariance is not tied).

        The message starts with scikit-learn's own (float32 note included), so code that
        matches scikit-learn's collapse error keeps working with this drop-in.
        """
        if self.on_collapse == "reseed" and self.covariance_type != "tied":
            return
        which = (
            "The tied covariance"
            if self.covariance_type == "tied"
            else f"Component {collapsed[0]}"
            + (f" (and components {list(collapsed[1:])})" if len(collapsed) > 1 else "")
        )
        ours = (
            "A tied covariance cannot be re-seeded."
            if self.covariance_type == "tied"
            else "Or pass on_collapse='reseed' to re-seed collapsed components."
        )
        raise ValueError(
            f"{_SKLEARN_COLLAPSE_MESSAGE}"
            f"{_SKLEARN_FLOAT32_NOTE if dtype == np.float32 else ''} "
            f"{which} collapsed at {when}: its covariance is singular or not positive "
            "definite (it holds a single sample or samples on a lower-dimensional subspace), "
            f"with reg_covar={self.reg_covar!r}. {ours}"
        )

    def _reseed(self, state: EMState, collapsed, floor) -> EMState:
        """Re-seed collapsed components by splitting the widest healthy ones."""
        weights, means, covariances = split_widest(
            state, collapsed, self.covariance_type, int(np.argmax(floor))
        )
        prec_chol, still = safe_precisions_cholesky(covariances, self.covariance_type, floor)
        if still:
            raise ValueError(
                f"Component {still[0]} could not be re-seeded: splitting another component "
                f"gave a singular covariance too, with reg_covar={self.reg_covar!r}. "
                "Increase reg_covar or decrease n_components."
            )
        return EMState(weights, means, covariances, prec_chol)

    # -------------------------------------------------------------- prediction

    def _set_state(self, state: EMState) -> None:
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = state
        chol = self.precisions_cholesky_
        if self.covariance_type == "full":
            self.precisions_ = chol @ np.swapaxes(chol, 1, 2)
        elif self.covariance_type == "tied":
            self.precisions_ = chol @ chol.T
        else:
            self.precisions_ = chol**2

    def _weighted_log_prob_blocks(self, X):
        """Yield ``(start, stop, log w_k + log N(x_i | k))`` over blocks of rows."""
        with np.errstate(divide="ignore"):
            # A weight of exactly 0 (possible through weights_init) gives log 0 = -inf.
            log_weights = np.log(self.weights_)
        for start in range(0, X.shape[0], _SCORE_BLOCK):
            stop = min(X.shape[0], start + _SCORE_BLOCK)
            block = component_log_prob(
                X[start:stop], self.means_, self.precisions_cholesky_, self.covariance_type
            )
            block += log_weights
            yield start, stop, block

    def _validated(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False)

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """Log density of each sample under the fitted mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        X = self._validated(X)
        out = None
        for start, stop, weighted in self._weighted_log_prob_blocks(X):
            norm = logsumexp(weighted, axis=1)
            if out is None:
                out = np.empty(X.shape[0], dtype=norm.dtype)
            out[start:stop] = norm
        assert out is not None  # validate_data rejects X without rows
        return out

    def score(self, X: ArrayLike, y: None = None) -> float:
        """Mean log-likelihood per sample of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        X = self._validated(X)
        labels = np.empty(X.shape[0], dtype=np.intp)
        for start, stop, weighted in self._weighted_log_prob_blocks(X):
            labels[start:stop] = np.argmax(weighted, axis=1)
        return labels

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Rows sum to 1.
        """
        X = self._validated(X)
        out = None
        for start, stop, weighted in self._weighted_log_prob_blocks(X):
            # softmax normalises in linear space: exp(weighted - logsumexp) would be off by
            # about |log density| * eps, which reaches 1e-12 for far-away rows.
            resp = softmax(weighted, axis=1)
            if out is None:
                out = np.empty((X.shape[0], self.n_components), dtype=resp.dtype)
            out[start:stop] = resp
        assert out is not None  # validate_data rejects X without rows
        return out

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture (the same draws as scikit-learn).

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each draw.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        _, n_features = self.means_.shape
        rng = check_random_state(self.random_state)
        n_samples_comp = rng.multinomial(n_samples, self.weights_)
        if self.covariance_type == "full":
            X = np.vstack(
                [
                    rng.multivariate_normal(mean, covariance, int(sample))
                    for (mean, covariance, sample) in zip(
                        self.means_, self.covariances_, n_samples_comp, strict=True
                    )
                ]
            )
        elif self.covariance_type == "tied":
            X = np.vstack(
                [
                    rng.multivariate_normal(mean, self.covariances_, int(sample))
                    for (mean, sample) in zip(self.means_, n_samples_comp, strict=True)
                ]
            )
        else:
            X = np.vstack(
                [
                    mean + rng.standard_normal(size=(sample, n_features)) * np.sqrt(covariance)
                    for (mean, covariance, sample) in zip(
                        self.means_, self.covariances_, n_samples_comp, strict=True
                    )
                ]
            )
        y = np.concatenate(
            [np.full(int(n_samples_comp[i]), i, dtype=np.int64) for i in range(self.n_components)]
        )
        return np.asarray(X, dtype=np.float64), y

    def _n_parameters(self) -> int:
        return n_parameters(self.n_components, self.means_.shape[1], self.covariance_type)

    def bic(self, X: np.ndarray) -> float:
        """Bayesian information criterion on ``X``; lower is better.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        float
        """
        return mixture.bic(self.score(X) * X.shape[0], self._n_parameters(), X.shape[0])

    def aic(self, X: np.ndarray) -> float:
        """Akaike information criterion on ``X``; lower is better.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        float
        """
        return mixture.aic(self.score(X) * X.shape[0], self._n_parameters())

    def to_params(self) -> MixtureParams:
        """The fitted mixture as :class:`workbench.mixture.MixtureParams`.

        Returns
        -------
        MixtureParams
            Weights (K,), means (K, d) and dense covariances (K, d, d) in float64.
        """
        check_is_fitted(self)
        return MixtureParams.from_covariance_type(
            self.weights_ / np.sum(self.weights_),
            self.means_,
            self.covariances_,
            self.covariance_type,
        )

    # ----------------------------------------------------------------- verbose

    def _print_verbose_msg_init_beg(self, n_init: int) -> None:
        if self.verbose == 1:
            print(f"Initialization {n_init}")
        elif self.verbose >= 2:
            print(f"Initialization {n_init}")
            self._init_prev_time = time()
            self._iter_prev_time = self._init_prev_time

    def _print_verbose_msg_iter_end(self, n_iter: int, diff_ll: float) -> None:
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                cur_time = time()
                lapse = cur_time - self._iter_prev_time
                print(f"  Iteration {n_iter}\t time lapse {lapse:.5f}s\t ll change {diff_ll:.5f}")
                self._iter_prev_time = cur_time

    def _print_verbose_msg_init_end(self, lb: float, init_has_converged: bool) -> None:
        converged_msg = "converged" if init_has_converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {converged_msg}.")
        elif self.verbose >= 2:
            t = time() - self._init_prev_time
            print(f"Initialization {converged_msg}. time lapse {t:.5f}s\t lower bound {lb:.5f}.")
