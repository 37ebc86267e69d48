"""Standard errors and confidence intervals for a fitted EM Gaussian mixture.

Two families, both reported under the parameter names of
:func:`workbench.metrics.parameter_names` (``weight[k]``, ``mean[k,j]``, ``cov[k,i,j]``
with ``i <= j``), so they can be scored exactly like posterior intervals:

**Analytic** (:func:`standard_errors`, :func:`wald_intervals`). The score and observed
Hessian of the log-likelihood in closed form (Louis 1982; Boldea & Magnus 2009; see
:mod:`workbench.em._information`), with the weights' sum-to-one constraint built into the
parametrisation (``K - 1`` free weights; the last weight's variance follows by the delta
method). Three estimators of the covariance of the estimates:

``"hessian"``
    ``H^-1`` with ``H = -sum_i d2 log p(x_i)``, the inverse observed information.
``"opg"``
    ``S^-1`` with ``S = sum_i s_i s_i^T``, the outer product of the per-row scores
    (the empirical information, as in EMMIX).
``"sandwich"``
    ``H^-1 S H^-1``, robust to a misspecified component density.

Wald intervals are ``estimate +- z * se`` on the natural scale, or on a transformed scale
mapped back: logit weights, log variances, and the Fisher z of each correlation (with
the standard deviations held at their estimates, so the interval is for the covariance
entry itself).

**Bootstrap** (:func:`bootstrap`, :func:`bootstrap_intervals`), as mclust's
``MclustBootstrap``: ``"nonparametric"`` (rows resampled, as multinomial counts),
``"weighted"`` (weighted-likelihood bootstrap with Dirichlet(1) weights, mclust's "wlbs")
and ``"parametric"`` (data simulated from the fit). Every refit starts from the fitted
parameters, so components keep their labels; each draw is still matched to the fit by the
Hungarian algorithm and disagreements are counted. A refit that collapses or does not
converge is counted and redrawn, so exactly ``n_boot`` draws are kept. Percentile and basic
intervals.

A matrix that cannot be inverted (a component holding about ``d`` points, a weight near
zero, a fit that is not a maximum) raises ``ValueError`` naming the component and the
reason; nothing is returned as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import ArrayLike
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from workbench._validation import check_choice, check_int, check_real
from workbench.align import align_draws
from workbench.em._bootstrap import STATUS_NAMES, refit
from workbench.em._estimator import GaussianMixture
from workbench.em._information import (
    Layout,
    check_information,
    information_terms,
    layout,
    reporting_jacobian,
)
from workbench.em._steps import variance_floor
from workbench.em.options import (
    BOOTSTRAP_INTERVALS,
    BOOTSTRAP_KINDS,
    DEFAULT_N_BOOT,
    SE_METHODS,
    WALD_SCALES,
)
from workbench.mixture import MixtureParams, flatten_parameters, parameter_names, sample

__all__ = [
    "BOOTSTRAP_INTERVALS",
    "BOOTSTRAP_KINDS",
    "SE_METHODS",
    "WALD_SCALES",
    "BootstrapResult",
    "ConfidenceIntervals",
    "ObservedInformation",
    "StandardErrors",
    "bootstrap",
    "bootstrap_intervals",
    "label_mismatches",
    "observed_information",
    "standard_errors",
    "wald_intervals",
]


def _level(level: object) -> float:
    return check_real("level", level, above=0.0, below=1.0)


@dataclass(frozen=True)
class ObservedInformation:
    """Sums over the data of the score and its derivatives, in the free parameters.

    Attributes
    ----------
    names : tuple of str
        The ``P`` free parameters: ``weight[k]`` for ``k < K - 1``, ``mean[k,j]``, and
        ``cov[k,a,b]`` (full, diag), ``cov[tied,a,b]`` or ``cov[k,variance]``.
    score : ndarray of shape (P,)
        ``sum_i s_i``; about zero at a converged maximum-likelihood fit.
    hessian : ndarray of shape (P, P)
        ``sum_i d2 log p(x_i) / dtheta dtheta^T``; the observed information is its negative.
    outer_product : ndarray of shape (P, P)
        ``sum_i s_i s_i^T``.
    resp_sum : ndarray of shape (K,)
        Effective number of rows per component.
    log_likelihood : float
    n_samples : int
    """

    names: tuple[str, ...]
    score: np.ndarray
    hessian: np.ndarray
    outer_product: np.ndarray
    resp_sum: np.ndarray
    log_likelihood: float
    n_samples: int


@dataclass(frozen=True)
class StandardErrors:
    """Analytic standard errors of every reported parameter.

    Attributes
    ----------
    names : tuple of str
        ``M = K + K d + K d (d + 1) / 2`` names, as ``workbench.metrics.parameter_names``.
    estimates : ndarray of shape (M,)
    se : ndarray of shape (M,)
        0 exactly for structural constants (the off-diagonal entries of a 'diag' or
        'spherical' model, the weight of a one-component model).
    covariance : ndarray of shape (M, M)
        Covariance matrix of the estimates.
    method : {'hessian', 'opg', 'sandwich'}
    covariance_type : str
    n_samples : int
    """

    names: tuple[str, ...]
    estimates: np.ndarray
    se: np.ndarray
    covariance: np.ndarray
    method: str
    covariance_type: str
    n_samples: int

    def interval(self, level: float = 0.95, *, scale: str = "natural") -> ConfidenceIntervals:
        """Wald intervals; see :func:`wald_intervals`."""
        return wald_intervals(self, level=level, scale=scale)


@dataclass(frozen=True)
class ConfidenceIntervals:
    """Confidence intervals of every reported parameter.

    Attributes
    ----------
    names : tuple of str
    estimates, lower, upper : ndarray of shape (M,)
    level : float
    method : str
        How they were made, e.g. ``"hessian-wald"``, ``"sandwich-wald-transformed"``,
        ``"nonparametric-bootstrap-percentile"``.
    """

    names: tuple[str, ...]
    estimates: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    method: str

    def covers(self, truth: ArrayLike) -> np.ndarray:
        """``lower <= truth <= upper`` per parameter; ``truth`` of shape (M,)."""
        truth = np.asarray(truth, dtype=float)
        return (self.lower <= truth) & (truth <= self.upper)


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap refits of a fitted mixture.

    Attributes
    ----------
    names : tuple of str
    estimates : ndarray of shape (M,)
        The original fit.
    draws : ndarray of shape (n_boot, M)
        One row per successful refit, in the order of ``names``.
    kind : {'nonparametric', 'parametric', 'weighted'}
    n_iter : ndarray of shape (n_boot,)
        EM iterations of each kept refit.
    n_failed : int
        Refits that failed (collapsed or did not converge) and were redrawn.
    failure_reasons : tuple of str
        One reason per failed refit.
    label_mismatch : ndarray of bool, shape (n_boot,)
        Draws whose Hungarian matching to the fit (KL cost) is not the identity. They are
        kept as fitted (each refit starts from the fit's labels); many of them mean the
        components are too close for component-wise intervals to mean much.
    covariance_type : str
    """

    names: tuple[str, ...]
    estimates: np.ndarray
    draws: np.ndarray
    kind: str
    n_iter: np.ndarray
    n_failed: int
    failure_reasons: tuple[str, ...]
    label_mismatch: np.ndarray
    covariance_type: str

    @property
    def n_boot(self) -> int:
        return self.draws.shape[0]

    @property
    def n_label_mismatches(self) -> int:
        return int(np.count_nonzero(self.label_mismatch))

    @property
    def se(self) -> np.ndarray:
        """Bootstrap standard deviation of each parameter, shape (M,)."""
        return np.std(self.draws, axis=0, ddof=1)

    @property
    def covariance(self) -> np.ndarray:
        """Bootstrap covariance matrix of the estimates, shape (M, M)."""
        return np.cov(self.draws, rowvar=False)

    def interval(self, level: float = 0.95, *, method: str = "percentile") -> ConfidenceIntervals:
        """Percentile or basic intervals; see :func:`bootstrap_intervals`."""
        return bootstrap_intervals(self, level=level, method=method)


# ----------------------------------------------------------------------------- analytic


def _checked(model: GaussianMixture, X: ArrayLike) -> np.ndarray:
    check_is_fitted(model)
    data: np.ndarray = check_array(X, dtype=np.float64, order="C")
    n_features = model.means_.shape[1]
    if data.shape[1] != n_features:
        raise ValueError(
            f"X has {data.shape[1]} features, but the model was fitted with {n_features}"
        )
    return data


def _estimates(model: GaussianMixture) -> np.ndarray:
    params = model.to_params()
    return flatten_parameters(params.weights, params.means, params.covariances)


def _moments(model: GaussianMixture, X: np.ndarray):
    return information_terms(
        X,
        weights=model.weights_ / np.sum(model.weights_),
        means=model.means_,
        precisions_cholesky=model.precisions_cholesky_,
        covariance_type=model.covariance_type,
    )


def observed_information(model: GaussianMixture, X: ArrayLike) -> ObservedInformation:
    """Score, Hessian and outer product of scores of a fitted mixture on ``X``.

    Parameters
    ----------
    model : GaussianMixture
        Fitted.
    X : array-like of shape (n_samples, n_features)
        The data it was fitted on.

    Returns
    -------
    ObservedInformation

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``model`` is not fitted.
    """
    X = _checked(model, X)
    m = _moments(model, X)
    names = layout(model.n_components, X.shape[1], model.covariance_type).free_names
    return ObservedInformation(
        names, m.score, m.hessian, m.outer_product, m.resp_sum, m.log_likelihood, m.n_samples
    )


def _minimum_size(covariance_type: str, n_features: int) -> tuple[float, str]:
    if covariance_type == "full":
        return n_features + 1, f"a full covariance in {n_features} dimensions"
    if covariance_type == "tied":
        return 1.0, "a mean"
    return 2.0, "a variance"


def _check_sizes(resp_sum: np.ndarray, weights: np.ndarray, lay: Layout) -> None:
    """Components with too few points to carry an invertible information matrix."""
    need, what = _minimum_size(lay.covariance_type, lay.n_features)
    small = np.flatnonzero(resp_sum < need)
    if small.size:
        c = int(small[np.argmin(resp_sum[small])])
        raise ValueError(
            f"component {c} holds an effective {resp_sum[c]:.3g} points (weight "
            f"{weights[c]:.3g}); {what} needs at least {need:g}, so the information matrix "
            "is singular and standard errors are not available. Refit with fewer "
            "components or more data"
        )


def standard_errors(
    model: GaussianMixture, X: ArrayLike, *, method: str = "hessian"
) -> StandardErrors:
    """Analytic standard errors and covariance matrix of a fitted mixture's estimates.

    Parameters
    ----------
    model : GaussianMixture
        Fitted (ideally to convergence: the formulas hold at a maximum of the likelihood),
        without ``sample_weight``: the estimator does not record weights, and these are
        the standard errors of an unweighted fit.
    X : array-like of shape (n_samples, n_features)
        The data it was fitted on.
    method : {'hessian', 'opg', 'sandwich'}, default='hessian'
        See the module docstring.

    Returns
    -------
    StandardErrors

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``model`` is not fitted.
    ValueError
        If a component holds too few points, or the information matrix is singular or not
        positive definite; the message names the component.

    Examples
    --------
    >>> import numpy as np
    >>> from workbench.em import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (300, 1)), rng.normal(3, 1, (200, 1))])
    >>> gm = GaussianMixture(2, random_state=0, tol=1e-10).fit(X)
    >>> errors = standard_errors(gm, X, method="sandwich")
    >>> errors.names[:3]
    ('weight[0]', 'weight[1]', 'mean[0,0]')
    >>> bool(np.isclose(errors.se[0], errors.se[1]))  # the two weights move together
    True
    """
    check_choice("method", method, SE_METHODS)
    X = _checked(model, X)
    m = _moments(model, X)
    k, d = model.means_.shape
    lay = layout(k, d, model.covariance_type)
    _check_sizes(m.resp_sum, model.weights_, lay)
    if method == "opg":
        free = check_information(m.outer_product, lay, what="outer product of the scores")
    else:
        inverse = check_information(-m.hessian, lay, what="observed information matrix")
        free = inverse if method == "hessian" else inverse @ m.outer_product @ inverse
    jac = reporting_jacobian(lay)
    covariance = jac @ free @ jac.T
    covariance = 0.5 * (covariance + covariance.T)
    se = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    return StandardErrors(
        tuple(p.name for p in parameter_names(k, d)),
        _estimates(model),
        se,
        covariance,
        method,
        model.covariance_type,
        X.shape[0],
    )


def _transforms(names: tuple[str, ...], estimates: np.ndarray):
    """Transformed estimates, the slope of each transform, and its inverse (None: identity)."""
    index = {name: i for i, name in enumerate(names)}
    transformed = estimates.copy()
    slope = np.ones(len(names))
    back: list = [None] * len(names)
    for i, name in enumerate(names):
        value = estimates[i]
        if name.startswith("weight") and 0 < value < 1:
            transformed[i] = logit(value)
            slope[i] = 1.0 / (value * (1.0 - value))
            back[i] = expit
        elif name.startswith("cov"):
            c, a, b = (int(s) for s in name[4:-1].split(","))
            if a == b:
                transformed[i] = math.log(value)
                slope[i] = 1.0 / value
                back[i] = np.exp
                continue
            # Fisher z of the correlation, with the standard deviations held at their
            # estimates: a monotone map of this entry alone, so the interval stays
            # first-order equal to the natural one and inside +-sd_a sd_b.
            sd = math.sqrt(
                estimates[index[f"cov[{c},{a},{a}]"]] * estimates[index[f"cov[{c},{b},{b}]"]]
            )
            rho = value / sd
            transformed[i] = math.atanh(rho)
            slope[i] = 1.0 / (sd * (1.0 - rho**2))
            back[i] = lambda z, sd=sd: np.tanh(z) * sd
    return transformed, slope, back


def wald_intervals(
    errors: StandardErrors, *, level: float = 0.95, scale: str = "natural"
) -> ConfidenceIntervals:
    """Wald intervals ``estimate +- z_{(1+level)/2} se``, optionally on a transformed scale.

    Parameters
    ----------
    errors : StandardErrors
    level : float in (0, 1), default=0.95
    scale : {'natural', 'transformed'}, default='natural'
        'transformed' builds the interval for ``logit(weight)``, ``log(variance)`` and,
        for an off-diagonal entry, the Fisher z of its correlation with the standard
        deviations held at their estimates (delta-method standard errors), and maps it
        back: weights stay in (0, 1), variances positive, and covariances inside
        ``+-sd_a sd_b``. Means are the same on both scales. Parameters with
        standard error 0 (structural constants) get the point interval.

    Returns
    -------
    ConfidenceIntervals
    """
    check_choice("scale", scale, WALD_SCALES)
    level = _level(level)
    z = float(norm.ppf(0.5 + level / 2))
    est, se = errors.estimates, errors.se
    method = f"{errors.method}-wald"
    if scale == "natural":
        lower, upper = est - z * se, est + z * se
    else:
        method += "-transformed"
        transformed, slope, back = _transforms(errors.names, est)
        lower, upper = est - z * se, est + z * se
        for i, inverse in enumerate(back):
            if inverse is not None and se[i] > 0:
                lower[i] = inverse(transformed[i] - z * slope[i] * se[i])
                upper[i] = inverse(transformed[i] + z * slope[i] * se[i])
    fixed = se == 0
    lower[fixed] = upper[fixed] = est[fixed]
    return ConfidenceIntervals(errors.names, est.copy(), lower, upper, level, method)


# ---------------------------------------------------------------------------- bootstrap


class _Problem(NamedTuple):
    """What every refit of one bootstrap shares (sent once to each worker)."""

    X: np.ndarray
    kind: str
    fit: MixtureParams
    covariances: np.ndarray  # the fit's, in the shape of its covariance type
    covariance_type: str
    reg_covar: float
    tol: float
    max_iter: int
    max_redraws: int


class _Share(NamedTuple):
    """One worker's refits, in draw order."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    n_iter: np.ndarray
    failure_reasons: list[str]


def _resample(problem: _Problem, gen: np.random.Generator):
    """One bootstrap data set: ``(X, sample_weight or None)``."""
    X, kind = problem.X, problem.kind
    n = X.shape[0]
    if kind == "nonparametric":
        # Multinomial counts as weights: the same likelihood as the resampled rows.
        return X, np.bincount(gen.integers(0, n, size=n), minlength=n).astype(np.float64)
    if kind == "weighted":
        weights = gen.standard_exponential(n)  # Gamma(1) draws: Dirichlet(1) once scaled
        return X, weights * (n / np.sum(weights))
    simulated, _ = sample(problem.fit, n, rng=gen)
    return np.ascontiguousarray(simulated), None


def _run_draws(problem: _Problem, generators: list[np.random.Generator], first: int) -> _Share:
    """Refits for draws ``first, first + 1, ...``, one generator each."""
    k, d = problem.fit.means.shape
    size = len(generators)
    weights, means = np.empty((size, k)), np.empty((size, k, d))
    covariances, n_iter = np.empty((size, k, d, d)), np.empty(size, dtype=np.int64)
    reasons: list[str] = []
    floor = variance_floor(problem.X)
    for b, gen in enumerate(generators):
        for _attempt in range(problem.max_redraws + 1):
            data, sample_weight = _resample(problem, gen)
            result = refit(
                data,
                weights=problem.fit.weights,
                means=problem.fit.means,
                covariances=problem.covariances,
                covariance_type=problem.covariance_type,
                reg_covar=problem.reg_covar,
                tol=problem.tol,
                max_iter=problem.max_iter,
                floor=floor if data is problem.X else variance_floor(data),
                sample_weight=sample_weight,
            )
            if result.status == 0:
                break
            reasons.append(STATUS_NAMES[result.status])
        else:
            raise ValueError(
                f"bootstrap draw {first + b} failed {problem.max_redraws + 1} times in a row "
                f"(last: {reasons[-1]}); the fit is too fragile for a {problem.kind} "
                "bootstrap. Increase max_iter or reg_covar, or fit fewer components"
            )
        weights[b], means[b], covariances[b] = result.weights, result.means, result.covariances
        n_iter[b] = result.n_iter
    return _Share(weights, means, covariances, n_iter, reasons)


def label_mismatches(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, fit: MixtureParams
) -> np.ndarray:
    """Which draws the Hungarian matching (KL cost) would relabel against the fit.

    Parameters
    ----------
    weights : ndarray of shape (n_draws, K)
    means : ndarray of shape (n_draws, K, d)
    covariances : ndarray of shape (n_draws, K, d, d)
    fit : MixtureParams

    Returns
    -------
    ndarray of bool, shape (n_draws,)
        True where :func:`workbench.align.align_draws` does not return the identity.
    """
    orders = align_draws(weights, means, covariances, fit)
    return np.any(orders != np.arange(fit.n_components), axis=1)


def bootstrap(
    model: GaussianMixture,
    X: ArrayLike,
    *,
    kind: str = "nonparametric",
    n_boot: int = DEFAULT_N_BOOT,
    rng: np.random.Generator | int | None = None,
    tol: float = 1e-8,
    max_iter: int = 1000,
    max_redraws: int = 10,
    n_jobs: int = 1,
) -> BootstrapResult:
    """Bootstrap a fitted mixture: ``n_boot`` EM refits, each started from the fit.

    Parameters
    ----------
    model : GaussianMixture
        Fitted.
    X : array-like of shape (n_samples, n_features)
        The data it was fitted on.
    kind : {'nonparametric', 'parametric', 'weighted'}, default='nonparametric'
        Rows resampled with replacement; data simulated from the fit; or every row
        reweighted by ``n`` times a Dirichlet(1) draw (weighted likelihood bootstrap).
    n_boot : int, default=999
        Draws kept (as mclust's ``MclustBootstrap``).
    rng : numpy.random.Generator or seed, optional
        Each draw gets its own child generator (``Generator.spawn``), so the draws do not
        depend on ``n_jobs``.
    tol : float, default=1e-8
        Convergence tolerance of each refit on the change of the mean log-likelihood.
        Tighter than the estimator's default: a refit starting at the fit that stops
        early is pulled towards it, and the bootstrap spread shrinks.
    max_iter : int, default=1000
    max_redraws : int, default=10
        A failed refit (a collapsed component, no convergence in ``max_iter``) is counted
        and its draw redrawn, at most this many times in a row.
    n_jobs : int, default=1
        Worker processes (joblib). Keep 1 inside a study whose tasks already use the cores.

    Returns
    -------
    BootstrapResult

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``model`` is not fitted.
    ValueError
        If one draw fails more than ``max_redraws`` times in a row.
    """
    check_choice("kind", kind, BOOTSTRAP_KINDS)
    n_boot = check_int("n_boot", n_boot, minimum=2)
    n_jobs = check_int("n_jobs", n_jobs, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    max_redraws = check_int("max_redraws", max_redraws, minimum=0)
    tol = check_real("tol", tol, at_least=0.0)
    X = _checked(model, X)
    fit = model.to_params()
    problem = _Problem(
        X,
        kind,
        fit,
        np.asarray(model.covariances_, dtype=np.float64),
        model.covariance_type,
        model.reg_covar,
        tol,
        max_iter,
        max_redraws,
    )
    generators = np.random.default_rng(rng).spawn(int(n_boot))
    if n_jobs == 1:
        shares = [_run_draws(problem, generators, 0)]
    else:
        bounds = np.linspace(0, len(generators), min(n_jobs, len(generators)) + 1).astype(int)
        shares = Parallel(n_jobs=n_jobs)(
            delayed(_run_draws)(problem, generators[a:b], int(a))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )
    weights = np.concatenate([s.weights for s in shares])
    means = np.concatenate([s.means for s in shares])
    covariances = np.concatenate([s.covariances for s in shares])
    n_iter = np.concatenate([s.n_iter for s in shares])
    reasons = tuple(r for s in shares for r in s.failure_reasons)
    mismatch = label_mismatches(weights, means, covariances, fit)
    k, d = fit.means.shape
    return BootstrapResult(
        tuple(p.name for p in parameter_names(k, d)),
        flatten_parameters(fit.weights, fit.means, fit.covariances),
        flatten_parameters(weights, means, covariances),
        kind,
        n_iter,
        len(reasons),
        reasons,
        mismatch,
        model.covariance_type,
    )


def bootstrap_intervals(
    result: BootstrapResult, *, level: float = 0.95, method: str = "percentile"
) -> ConfidenceIntervals:
    """Percentile or basic bootstrap intervals.

    Parameters
    ----------
    result : BootstrapResult
    level : float in (0, 1), default=0.95
    method : {'percentile', 'basic'}, default='percentile'
        'percentile': the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
        draws. 'basic': those quantiles reflected about the estimate,
        ``(2 est - q_hi, 2 est - q_lo)``.

    Returns
    -------
    ConfidenceIntervals
    """
    check_choice("method", method, BOOTSTRAP_INTERVALS)
    level = _level(level)
    low, high = np.quantile(result.draws, [0.5 - level / 2, 0.5 + level / 2], axis=0)
    est = result.estimates
    if method == "basic":
        low, high = 2 * est - high, 2 * est - low
    return ConfidenceIntervals(
        result.names, est.copy(), low, high, level, f"{result.kind}-bootstrap-{method}"
    )
