"""Scenarios with known ground truth, and the datasets they generate.

A :class:`Scenario` is one data-generating mechanism of a simulation study. :func:`simulate`
turns a scenario and a seed into a :class:`Dataset`: training and held-out data, the true
labels and the true mixture parameters.

How the truth is built
----------------------
1. **Weights.** ``"balanced"``: ``w_k = 1/K``. ``"imbalanced"``: ``w_k`` proportional to
   ``2**-k`` (``k = 0..K-1``), so each component is half as large as the one before
   (``K=3``: 4/7, 2/7, 1/7). An explicit tuple is used as given.
2. **Covariances.** Each component gets a volume ``v_k`` (the geometric mean of its
   eigenvalues), drawn log-uniformly from ``[1/2, 2]``. ``"spherical"``: ``v_k I``.
   ``"diag"`` and ``"full"``: eigenvalues ``v_k * kappa**t`` with ``t`` evenly spaced in
   ``[-1/2, 1/2]``, so the largest over the smallest is exactly ``condition_number``
   (``kappa``). ``"diag"`` shuffles them along the axes; ``"full"`` turns them by a random
   (Haar) rotation.
3. **Means.** Raw means are drawn from ``N(0, I)`` and centred, then multiplied by one scale
   factor, found by bisection, so that the average pairwise overlap equals ``overlap``.

Overlap (MixSim, Melnykov, Chen & Maitra 2012)
----------------------------------------------
The misclassification probability of component ``i`` into ``j`` is
``omega_{j|i} = P(w_i phi(X; mu_i, Sigma_i) < w_j phi(X; mu_j, Sigma_j))`` with
``X ~ N(mu_i, Sigma_i)``. The pairwise overlap is ``omega_ij = omega_{j|i} + omega_{i|j}``,
and the *average overlap* (MixSim's ``BarOmega``) is the mean of ``omega_ij`` over the
``K(K-1)/2`` pairs. MixSim computes each ``omega_{j|i}`` exactly with Davies' algorithm; here
it is a Monte Carlo estimate with ``OVERLAP_DRAWS`` standard normal draws from the fixed seed
``OVERLAP_SEED``, so the overlap is a deterministic function of the parameters. The same
draws are used for every scale factor (common random numbers), which makes the estimated
overlap a step function of the scale that bisection solves to within one step. The relative
Monte Carlo standard error of the average overlap is about
``1 / sqrt(overlap * K (K - 1) / 2 * OVERLAP_DRAWS)``: 6% at 0.001 with ``K=3``, under 2%
at 0.01. ``OVERLAP_RTOL`` is the tolerance the test suite checks against an independent
estimate.

Misspecification
----------------
The true parameters are always those of a Gaussian mixture: the *moment-matched* one.
Every non-Gaussian component has exactly the mean ``mu_k`` and covariance ``Sigma_k`` of
the truth, so a Gaussian fit has a well-defined target. The overlap is that of this Gaussian
truth.

* ``"student_t"``: multivariate t with ``df`` degrees of freedom and scale
  ``Sigma_k (df - 2) / df`` (so ``df > 2``).
* ``"skew"``: ``mu_k + Q_k Lambda_k^{1/2} V``, where ``Sigma_k = Q_k Lambda_k Q_k^T`` and the
  coordinates of ``V`` are independent skew-normal variables with shape ``skewness``
  (Azzalini's alpha), standardised to mean 0 and variance 1. The skew runs along the
  principal axes.
* ``"outliers"``: a fraction ``outlier_fraction`` of each split (rounded to whole points) is
  replaced by points uniform on the box ``min_k(mu_k - 4 sigma_k), max_k(mu_k + 4 sigma_k)``
  per coordinate (``sigma_k`` the marginal standard deviations), labelled ``-1``. The
  truth is the mixture of the inlier components.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from workbench._validation import check_choice, check_int, check_real, is_int, is_real, not_allowed
from workbench.mixture import MixtureParams, log_prob, sample

__all__ = [
    "COVARIANCE_STRUCTURES",
    "MIN_OVERLAP",
    "MISSPECIFICATIONS",
    "OVERLAP_DRAWS",
    "OVERLAP_RTOL",
    "OVERLAP_SEED",
    "WEIGHT_SCHEMES",
    "Dataset",
    "Scenario",
    "data_log_density",
    "overlap_summary",
    "pairwise_overlap",
    "simulate",
    "simulate_from_truth",
]

WEIGHT_SCHEMES: tuple[str, ...] = ("balanced", "imbalanced")
COVARIANCE_STRUCTURES: tuple[str, ...] = ("spherical", "diag", "full")
MISSPECIFICATIONS: tuple[str, ...] = ("none", "student_t", "skew", "outliers")

OVERLAP_DRAWS = 100_000
OVERLAP_SEED = 20_120_101
# Smaller targets are not resolved by OVERLAP_DRAWS draws: at 0.001 an omega_{j|i} rests
# on about 50 misclassified draws.
MIN_OVERLAP = 0.001
# Relative tolerance on the achieved average overlap, checked in the tests against an
# independent estimate (different draws, sampled through workbench.mixture). About four
# standard errors of the difference of the two estimates at overlap 0.01 with K=3.
OVERLAP_RTOL = 0.1

_VOLUME_RANGE = (0.5, 2.0)
_OUTLIER_BOX_SDS = 4.0
# Scenario errors name the record: "scenario overlap=2.0 is not allowed; overlap must be ...".
_OWNER = "scenario"


@dataclass(frozen=True)
class Scenario:
    """One data-generating mechanism: sizes, weights, covariances, overlap, misspecification.

    Attributes
    ----------
    n_components, n_features : int
        ``K >= 2`` components in ``d >= 1`` dimensions.
    n_train, n_test : int
        Sizes of the training set and the held-out set.
    weights : {'balanced', 'imbalanced'} or tuple of float
        See the module docstring; an explicit tuple has ``K`` positive entries summing to 1.
    covariance : {'spherical', 'diag', 'full'}
    condition_number : float
        Largest over smallest eigenvalue of each covariance, ``>= 1``. Must be 1 for
        ``'spherical'`` and when ``d == 1``.
    overlap : float
        Target average pairwise overlap (MixSim's ``BarOmega``), in ``[0.001, 1)``. Large
        targets may be unreachable for some weights and covariances; :func:`simulate`
        then raises ``ValueError``.
    misspecification : {'none', 'student_t', 'skew', 'outliers'}
    df : float
        Degrees of freedom of the Student-t components, ``> 2``.
    skewness : float
        Skew-normal shape parameter (alpha) of the skewed components.
    outlier_fraction : float
        Fraction of uniform outliers, in ``(0, 0.5)``.
    truth_seed : int or None
        If given, the true parameters come from this seed, so every replication of the
        scenario shares one truth (a fixed estimand). If None, each replication's seed
        draws its own truth.
    """

    n_components: int = 3
    n_features: int = 2
    n_train: int = 500
    n_test: int = 1000
    weights: str | tuple[float, ...] = "balanced"
    covariance: str = "spherical"
    condition_number: float = 1.0
    overlap: float = 0.01
    misspecification: str = "none"
    df: float = 5.0
    skewness: float = 4.0
    outlier_fraction: float = 0.05
    truth_seed: int | None = None

    def __post_init__(self) -> None:
        for key, low in (("n_components", 2), ("n_features", 1), ("n_train", 1), ("n_test", 1)):
            object.__setattr__(
                self, key, check_int(key, getattr(self, key), minimum=low, owner=_OWNER)
            )
        self._check_weights()
        check_choice("covariance", self.covariance, COVARIANCE_STRUCTURES, owner=_OWNER)
        check_choice("misspecification", self.misspecification, MISSPECIFICATIONS, owner=_OWNER)
        reals: dict[str, dict[str, Any]] = {
            "condition_number": {"at_least": 1.0},
            "overlap": {"at_least": MIN_OVERLAP, "below": 1.0, "reason": "Monte Carlo resolution"},
            "df": {"above": 2.0, "reason": "the t covariance must exist"},
            "skewness": {},
            "outlier_fraction": {"above": 0.0, "below": 0.5},
        }
        for key, bounds in reals.items():
            object.__setattr__(
                self, key, check_real(key, getattr(self, key), owner=_OWNER, **bounds)
            )
        if self.condition_number != 1 and (self.covariance == "spherical" or self.n_features == 1):
            raise not_allowed(
                "condition_number",
                self.condition_number,
                "1.0 for covariance='spherical' or n_features=1 (use 'diag' or 'full')",
                owner=_OWNER,
            )
        if self.truth_seed is not None:
            if not is_int(self.truth_seed) or self.truth_seed < 0:
                raise not_allowed(
                    "truth_seed", self.truth_seed, "None or a non-negative integer", owner=_OWNER
                )
            object.__setattr__(self, "truth_seed", int(self.truth_seed))

    def _check_weights(self) -> None:
        weights = self.weights
        if isinstance(weights, str):
            if weights not in WEIGHT_SCHEMES:
                listed = ", ".join(repr(w) for w in WEIGHT_SCHEMES)
                raise not_allowed(
                    "weights", weights, f"one of {listed} or a tuple of floats", owner=_OWNER
                )
            return
        allowed = f"{WEIGHT_SCHEMES[0]!r}, {WEIGHT_SCHEMES[1]!r} or {self.n_components} "
        allowed += "positive numbers summing to 1"
        if not isinstance(weights, list | tuple) or not all(is_real(w) for w in weights):
            raise not_allowed("weights", weights, allowed, owner=_OWNER)
        values = tuple(float(w) for w in weights)
        if (
            len(values) != self.n_components
            or not all(w > 0 for w in values)
            or not math.isclose(sum(values), 1.0, abs_tol=1e-8)
        ):
            raise not_allowed("weights", weights, allowed, owner=_OWNER)
        object.__setattr__(self, "weights", values)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> Scenario:
        """Build a scenario from a mapping such as a parsed config file.

        Raises
        ------
        ValueError
            For an unknown key or a bad value; the message names the key, the value and
            what is allowed.
        """
        known = [f.name for f in fields(cls)]
        for key in mapping:
            if key not in known:
                raise ValueError(
                    f"unknown scenario key {key!r} (value {mapping[key]!r}); "
                    f"allowed keys are {', '.join(known)}"
                )
        return cls(**mapping)

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable dict that round-trips through :meth:`from_dict`."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.weights, tuple):
            out["weights"] = list(self.weights)
        return out

    def label(self) -> str:
        """Short human-readable name, e.g. ``"K3 d2 n500 test1000 overlap0.01 spherical"``.

        It names every field that changes the data (``truth_seed`` aside), so two scenarios
        with equal labels simulate the same data-generating mechanism.
        """
        parts = [
            f"K{self.n_components}",
            f"d{self.n_features}",
            f"n{self.n_train}",
            f"test{self.n_test}",
            f"overlap{self.overlap:g}",
            self.covariance,
        ]
        if self.condition_number != 1:
            parts.append(f"cond{self.condition_number:g}")
        if isinstance(self.weights, tuple):
            parts.append("w(" + ",".join(f"{w:.3g}" for w in self.weights) + ")")
        elif self.weights != "balanced":
            parts.append(self.weights)
        extra = {
            "none": "",
            "student_t": f"t(df={self.df:g})",
            "skew": f"skew(alpha={self.skewness:g})",
            "outliers": f"outliers{self.outlier_fraction:g}",
        }[self.misspecification]
        if extra:
            parts.append(extra)
        return " ".join(parts)

    def true_weights(self) -> np.ndarray:
        """Mixture weights, shape (n_components,)."""
        k = self.n_components
        if self.weights == "balanced":
            return np.full(k, 1.0 / k)
        if self.weights == "imbalanced":
            raw = 2.0 ** -np.arange(k)
            return raw / raw.sum()
        return np.asarray(self.weights, dtype=float)


@dataclass(frozen=True)
class Dataset:
    """Simulated training and test data with the truth that generated them.

    Attributes
    ----------
    X_train : ndarray of shape (n_train, n_features)
    y_train : ndarray of shape (n_train,)
        True component of each point; ``-1`` marks an outlier.
    X_test : ndarray of shape (n_test, n_features)
    y_test : ndarray of shape (n_test,)
    truth : MixtureParams
        The (moment-matched) Gaussian mixture of the inlier components.
    scenario : Scenario
    average_overlap, max_overlap : float
        Achieved average and largest pairwise overlap ``omega_ij`` of ``truth``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    truth: MixtureParams
    scenario: Scenario
    average_overlap: float = field(default=math.nan)
    max_overlap: float = field(default=math.nan)


def _overlap_draws(n_features: int) -> np.ndarray:
    return np.random.default_rng(OVERLAP_SEED).standard_normal((OVERLAP_DRAWS, n_features))


def _misclassification_terms(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, z: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, float, float]]:
    """Per ordered pair ``(i, j)``, the terms of ``q0 c**2 + q1 c + q2 < t``.

    With ``X = c mu_i + L_i z`` (``Sigma_i = L_i L_i^T``) and all means scaled by ``c``,
    component ``i`` is misclassified into ``j`` exactly when that inequality holds (the
    ``log w`` and ``log det`` terms are collected in ``t``).

    Yields
    ------
    i, j : int
    q2, q1 : ndarray of shape (n_draws,)
    q0, t : float
    """
    chol = np.linalg.cholesky(covariances)
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    precisions = np.linalg.inv(covariances)
    log_w = np.log(weights)
    zz = np.einsum("md,md->m", z, z)
    k = len(weights)
    for i in range(k):
        y = z @ chol[i].T
        for j in range(k):
            if i == j:
                continue
            delta = means[i] - means[j]
            py = y @ precisions[j]
            q2 = np.einsum("md,md->m", py, y) - zz
            q1 = 2.0 * (py @ delta)
            q0 = float(delta @ precisions[j] @ delta)
            t = 2.0 * (log_w[j] - log_w[i]) + log_det[i] - log_det[j]
            yield i, j, q2, q1, q0, t


def pairwise_overlap(params: MixtureParams) -> np.ndarray:
    """Misclassification probabilities ``omega_{j|i}`` (Monte Carlo, fixed internal seed).

    Parameters
    ----------
    params : MixtureParams

    Returns
    -------
    ndarray of shape (n_components, n_components)
        Entry ``[i, j]`` is ``omega_{j|i}``, the probability that a draw from component
        ``i`` has a larger weighted density under component ``j``; the diagonal is 0.
    """
    k = params.n_components
    omega = np.zeros((k, k))
    z = _overlap_draws(params.n_features)
    for i, j, q2, q1, q0, t in _misclassification_terms(
        params.weights, params.means, params.covariances, z
    ):
        omega[i, j] = np.mean(q0 + q1 + q2 < t)
    return omega


def overlap_summary(params: MixtureParams) -> tuple[float, float]:
    """MixSim's average and maximum pairwise overlap ``omega_ij = omega_{j|i} + omega_{i|j}``.

    Returns
    -------
    average : float
        Mean of ``omega_ij`` over the ``K(K-1)/2`` pairs (``BarOmega``).
    maximum : float
        Largest ``omega_ij`` (``MaxOmega``).
    """
    omega = pairwise_overlap(params)
    pairs = (omega + omega.T)[np.triu_indices(params.n_components, 1)]
    return float(pairs.mean()), float(pairs.max())


class _OverlapCurve:
    """Average overlap as a function of the scale ``c`` of the means.

    For each draw, misclassification happens for ``c`` inside an interval (where a quadratic
    in ``c`` with positive leading coefficient is negative), so the estimated overlap at any
    ``c`` is a count of the intervals containing it: two ``searchsorted`` calls.
    """

    def __init__(self, weights: np.ndarray, raw_means: np.ndarray, covariances: np.ndarray):
        z = _overlap_draws(raw_means.shape[1])
        lows, highs = [], []
        for _, _, q2, q1, q0, t in _misclassification_terms(weights, raw_means, covariances, z):
            disc = q1**2 - 4.0 * q0 * (q2 - t)
            ok = disc > 0
            root = np.sqrt(disc[ok])
            low = np.maximum((-q1[ok] - root) / (2.0 * q0), 0.0)
            high = (-q1[ok] + root) / (2.0 * q0)
            keep = high > low
            lows.append(low[keep])
            highs.append(high[keep])
        k = len(weights)
        self._low = np.sort(np.concatenate(lows))
        self._high = np.sort(np.concatenate(highs))
        self._norm = len(z) * k * (k - 1) / 2

    def __call__(self, scale: float) -> float:
        inside = np.searchsorted(self._low, scale, side="left") - np.searchsorted(
            self._high, scale, side="left"
        )
        return float(inside / self._norm)


def _scale_for_overlap(
    weights: np.ndarray, raw_means: np.ndarray, covariances: np.ndarray, target: float
) -> float:
    curve = _OverlapCurve(weights, raw_means, covariances)
    high = 1.0
    while curve(high) > target:
        high *= 2.0
    low = high / 2.0
    while curve(low) < target:
        low /= 2.0
        if low < 1e-8:
            raise ValueError(
                f"overlap={target!r} cannot be reached: even coincident means give an average "
                f"overlap of only {curve(low):.4g} for these weights and covariances; "
                "choose a smaller overlap"
            )
    while high / low > 1.0 + 1e-10:
        mid = math.sqrt(low * high)
        if curve(mid) > target:
            low = mid
        else:
            high = mid
    return high


def _true_covariances(scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    k, d = scenario.n_components, scenario.n_features
    volumes = np.exp(rng.uniform(*np.log(_VOLUME_RANGE), size=k))
    if scenario.covariance == "spherical":
        return volumes[:, None, None] * np.eye(d)
    shape = scenario.condition_number ** np.linspace(-0.5, 0.5, d)
    out = np.empty((k, d, d))
    for c in range(k):
        eigenvalues = volumes[c] * rng.permutation(shape)
        if scenario.covariance == "diag":
            out[c] = np.diag(eigenvalues)
        else:
            # Haar rotation; ortho_group draws and signs exactly as the QR code it replaced
            # (tests/test_simulate.py checks it), so stored studies keep their data.
            from scipy import stats  # on first use: reading configs never loads scipy

            rot = stats.ortho_group.rvs(d, random_state=rng)
            out[c] = (rot * eigenvalues) @ rot.T
    # Symmetrise exactly: the rotation leaves rounding asymmetry of order 1e-16.
    return 0.5 * (out + out.transpose(0, 2, 1))


def _true_params(scenario: Scenario, rng: np.random.Generator) -> MixtureParams:
    weights = scenario.true_weights()
    covariances = _true_covariances(scenario, rng)
    raw = rng.standard_normal((scenario.n_components, scenario.n_features))
    raw -= raw.mean(axis=0)
    scale = _scale_for_overlap(weights, raw, covariances, scenario.overlap)
    return MixtureParams(weights, scale * raw, covariances)


def _skew_constants(alpha: float) -> tuple[float, float, float]:
    """``delta``, mean and SD of a standard skew-normal variable with shape ``alpha``."""
    # Not scipy.stats.skewnorm.stats: it multiplies in another order and differs in the last
    # bit for about a third of alphas, which would change the data of stored studies.
    delta = alpha / math.sqrt(1.0 + alpha**2)
    mean = delta * math.sqrt(2.0 / math.pi)
    return delta, mean, math.sqrt(1.0 - mean**2)


def _standard_noise(scenario: Scenario, n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with mean 0 and identity covariance, shape (n, n_features)."""
    d = scenario.n_features
    if scenario.misspecification == "student_t":
        df = scenario.df
        g = rng.chisquare(df, size=(n, 1))
        return rng.standard_normal((n, d)) * np.sqrt((df - 2.0) / g)
    if scenario.misspecification == "skew":
        # Not scipy.stats.skewnorm.rvs: it draws the same two normals but returns
        # sign(u0) * (delta u0 + s u1), other values than ours from the same seed, so stored
        # studies' seed -> data mapping would change.
        delta, mean, sd = _skew_constants(scenario.skewness)
        u0 = np.abs(rng.standard_normal((n, d)))
        u1 = rng.standard_normal((n, d))
        return (delta * u0 + math.sqrt(1.0 - delta**2) * u1 - mean) / sd
    return rng.standard_normal((n, d))


def _principal_roots(truth: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """``A_k = Q_k Lambda_k^{1/2}`` with ``Sigma_k = A_k A_k^T``, and ``log |det A_k|``.

    Returns
    -------
    roots : ndarray of shape (K, d, d)
    log_det : ndarray of shape (K,)
    """
    eigenvalues, rotations = np.linalg.eigh(truth.covariances)
    return rotations * np.sqrt(eigenvalues)[:, None, :], 0.5 * np.sum(np.log(eigenvalues), axis=1)


def _outlier_box(truth: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners of the outlier box, each of shape (d,)."""
    sds = np.sqrt(np.diagonal(truth.covariances, axis1=1, axis2=2))
    low = np.min(truth.means - _OUTLIER_BOX_SDS * sds, axis=0)
    high = np.max(truth.means + _OUTLIER_BOX_SDS * sds, axis=0)
    return low, high


def _draw_split(
    scenario: Scenario, truth: MixtureParams, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n_out = round(scenario.outlier_fraction * n) if scenario.misspecification == "outliers" else 0
    n_in = n - n_out
    labels = rng.choice(truth.n_components, size=n_in, p=truth.weights)
    roots, _ = _principal_roots(truth)
    noise = _standard_noise(scenario, n_in, rng)
    X = truth.means[labels] + np.einsum("nij,nj->ni", roots[labels], noise)
    if n_out == 0:
        return X, labels
    low, high = _outlier_box(truth)
    outliers = rng.uniform(low, high, size=(n_out, truth.n_features))
    X = np.concatenate([X, outliers])
    labels = np.concatenate([labels, np.full(n_out, -1)])
    shuffle = rng.permutation(n)
    return X[shuffle], labels[shuffle]


def data_log_density(X: np.ndarray, truth: MixtureParams, scenario: Scenario) -> np.ndarray:
    """Log density of the data-generating distribution itself, misspecification included.

    Unlike ``workbench.mixture.log_prob(X, truth)``, the density of the moment-matched
    Gaussian truth, this is the density the data were drawn from: Student-t or skewed
    components, or the inlier mixture plus uniform outliers. For ``"outliers"`` it is
    ``(1 - f) p_inliers(x) + f / volume(box)`` inside the box, with ``f`` the scenario's
    ``outlier_fraction`` (each split holds ``round(f n)`` outliers, so its realised share
    differs from ``f`` by less than ``1/(2n)``).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    truth : MixtureParams
        ``Dataset.truth`` of a dataset simulated from ``scenario``.
    scenario : Scenario

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    from scipy import stats  # on first use: reading configs never loads scipy
    from scipy.special import logsumexp

    X = np.asarray(X, dtype=float)
    kind = scenario.misspecification
    if kind in ("none", "outliers"):
        inlier = log_prob(X, truth)
        if kind == "none":
            return inlier
        low, high = _outlier_box(truth)
        inside = np.all((X >= low) & (X <= high), axis=1)
        log_uniform = np.where(inside, -np.sum(np.log(high - low)), -np.inf)
        f = scenario.outlier_fraction
        return np.logaddexp(math.log1p(-f) + inlier, math.log(f) + log_uniform)
    weighted = np.empty((len(X), truth.n_components))
    if kind == "student_t":
        df = scenario.df
        for k in range(truth.n_components):
            shape = truth.covariances[k] * (df - 2.0) / df
            weighted[:, k] = stats.multivariate_t.logpdf(X, loc=truth.means[k], shape=shape, df=df)
    else:
        # x = mu + A v with v_j = (y_j - mean) / sd and y_j ~ SN(alpha): change of variables.
        _, mean, sd = _skew_constants(scenario.skewness)
        roots, log_det = _principal_roots(truth)
        for k in range(truth.n_components):
            v = np.linalg.solve(roots[k], (X - truth.means[k]).T).T
            log_v = stats.skewnorm.logpdf(mean + sd * v, scenario.skewness) + math.log(sd)
            weighted[:, k] = np.sum(log_v, axis=1) - log_det[k]
    return logsumexp(weighted + np.log(truth.weights), axis=1)


def simulate(scenario: Scenario, rng: np.random.Generator | int) -> Dataset:
    """Draw the truth (unless ``scenario.truth_seed`` fixes it) and the data of a scenario.

    Parameters
    ----------
    scenario : Scenario
    rng : numpy.random.Generator or int
        The same seed gives the same dataset.

    Returns
    -------
    Dataset
        ``X_train`` of shape (n_train, n_features), ``X_test`` of shape
        (n_test, n_features), labels, the true parameters and the achieved overlap.
    """
    rng = np.random.default_rng(rng)
    truth_rng = rng if scenario.truth_seed is None else np.random.default_rng(scenario.truth_seed)
    truth = _true_params(scenario, truth_rng)
    X_train, y_train = _draw_split(scenario, truth, scenario.n_train, rng)
    X_test, y_test = _draw_split(scenario, truth, scenario.n_test, rng)
    average, maximum = overlap_summary(truth)
    return Dataset(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        truth=truth,
        scenario=scenario,
        average_overlap=average,
        max_overlap=maximum,
    )


def simulate_from_truth(
    truth: MixtureParams, scenario: Scenario, rng: np.random.Generator | int
) -> Dataset:
    """Simulate a dataset from a given true mixture (e.g. one drawn from a prior).

    Only the sizes of ``scenario`` are read (``n_train``, ``n_test``); the data are drawn
    from ``truth`` itself by :func:`workbench.mixture.sample`, with no misspecification. A
    component may receive no point: the dataset is returned as it is, since dropping such
    draws would bias an average over truths.

    Parameters
    ----------
    truth : MixtureParams
        ``n_components`` and ``n_features`` must match ``scenario``.
    scenario : Scenario
        With ``misspecification == "none"``.
    rng : numpy.random.Generator or int

    Returns
    -------
    Dataset
        ``X_train`` (n_train, d), ``X_test`` (n_test, d), their labels, ``truth`` and its
        overlap.

    Raises
    ------
    ValueError
        If ``truth`` does not have the scenario's K and d, or the scenario is misspecified.
    """
    if (truth.n_components, truth.n_features) != (scenario.n_components, scenario.n_features):
        raise ValueError(
            f"truth has K={truth.n_components}, d={truth.n_features} but the scenario has "
            f"K={scenario.n_components}, d={scenario.n_features}"
        )
    if scenario.misspecification != "none":
        raise ValueError(
            f"scenario misspecification={scenario.misspecification!r} is not allowed with a "
            "given truth; the data are drawn from the truth itself ('none')"
        )
    rng = np.random.default_rng(rng)
    X_train, y_train = sample(truth, scenario.n_train, rng=rng)
    X_test, y_test = sample(truth, scenario.n_test, rng=rng)
    average, maximum = overlap_summary(truth)
    return Dataset(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        truth=truth,
        scenario=scenario,
        average_overlap=average,
        max_overlap=maximum,
    )
