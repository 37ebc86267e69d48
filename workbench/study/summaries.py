"""Performance measures of a simulation study, each with its Monte Carlo standard error.

The measures and their Monte Carlo SEs (MCSE) follow Morris, White & Crowther (2019),
"Using simulation studies to evaluate statistical methods", Statistics in Medicine 38,
2074-2102, Table 6. The formulas live in the pure array functions at the top of this
module; the DataFrame wrappers :func:`summarise` and :func:`summarise_metrics` only group
rows and call them.

Truth that varies between replications
--------------------------------------
When each replication draws its own true parameters (``Scenario.truth_seed=None``), the
measures are computed on the errors ``e_i = estimate_i - truth_i``: bias is ``mean(e)``,
the empirical SE is ``sd(e)`` and the MSE is ``mean(e**2)``. With a fixed truth these are
exactly Morris et al.'s definitions, since ``sd(estimate - truth) = sd(estimate)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "Measure",
    "bias",
    "empirical_se",
    "mean_with_mcse",
    "model_se",
    "model_se_ratio",
    "mse",
    "proportion",
    "relative_error_model_se",
    "relative_precision",
    "rmse",
    "status_indicators",
    "summarise",
    "summarise_metrics",
]


class Measure(NamedTuple):
    """A performance measure and its Monte Carlo standard error."""

    value: float
    mcse: float


def _errors(estimates: np.ndarray, truth: np.ndarray | float) -> np.ndarray:
    return np.asarray(estimates, dtype=float) - np.asarray(truth, dtype=float)


def mean_with_mcse(values: np.ndarray) -> Measure:
    """Mean of ``n`` replications, MCSE ``sd / sqrt(n)``.

    Parameters
    ----------
    values : array-like of shape (n_sim,)
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    mcse = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Measure(float(values.mean()) if n else math.nan, mcse)


def bias(estimates: np.ndarray, truth: np.ndarray | float) -> Measure:
    """Bias ``mean(e)``, MCSE ``sqrt(sum((e - mean(e))**2) / (n (n - 1)))`` (Morris Table 6).

    Parameters
    ----------
    estimates : array-like of shape (n_sim,)
    truth : float or array-like of shape (n_sim,)
    """
    return mean_with_mcse(_errors(estimates, truth))


def empirical_se(estimates: np.ndarray, truth: np.ndarray | float) -> Measure:
    """Empirical SE ``sd(e)`` (``ddof=1``), MCSE ``EmpSE / sqrt(2 (n - 1))`` (Morris Table 6).

    Parameters
    ----------
    estimates : array-like of shape (n_sim,)
    truth : float or array-like of shape (n_sim,)
    """
    errors = _errors(estimates, truth)
    n = errors.size
    if n < 2:
        return Measure(math.nan, math.nan)
    empse = float(errors.std(ddof=1))
    return Measure(empse, empse / math.sqrt(2.0 * (n - 1)))


def mse(estimates: np.ndarray, truth: np.ndarray | float) -> Measure:
    """MSE ``mean(e**2)``, MCSE ``sqrt(sum((e**2 - MSE)**2) / (n (n - 1)))`` (Morris Table 6).

    Parameters
    ----------
    estimates : array-like of shape (n_sim,)
    truth : float or array-like of shape (n_sim,)
    """
    squared = _errors(estimates, truth) ** 2
    n = squared.size
    value = float(squared.mean()) if n else math.nan
    if n < 2:
        return Measure(value, math.nan)
    return Measure(value, float(math.sqrt(np.sum((squared - value) ** 2) / (n * (n - 1)))))


def rmse(estimates: np.ndarray, truth: np.ndarray | float) -> Measure:
    """Root MSE, MCSE by the delta method: ``MCSE(MSE) / (2 RMSE)``.

    Morris et al. give the MCSE of the MSE; the delta method carries it to its square root.

    Parameters
    ----------
    estimates : array-like of shape (n_sim,)
    truth : float or array-like of shape (n_sim,)
    """
    value, mcse = mse(estimates, truth)
    root = math.nan if math.isnan(value) else math.sqrt(value)
    return Measure(root, mcse / (2.0 * root) if root > 0 else math.nan)


def proportion(flags: np.ndarray) -> Measure:
    """Proportion ``C`` of true flags, MCSE ``sqrt(C (1 - C) / n)`` (Morris Table 6).

    Used for coverage (flags: the interval contains the truth) and for failure and
    non-convergence rates.

    Parameters
    ----------
    flags : array-like of shape (n_sim,) of 0/1 or bool
    """
    flags = np.asarray(flags, dtype=float)
    n = flags.size
    if n == 0:
        return Measure(math.nan, math.nan)
    c = float(flags.mean())
    return Measure(c, math.sqrt(c * (1.0 - c) / n))


def model_se(sds: np.ndarray) -> Measure:
    """Average model SE ``sqrt(mean(sd**2))``, MCSE ``sqrt(Var(sd**2) / (4 n ModSE**2))``.

    Morris Table 6. For a Bayesian fit ``sd`` is the posterior standard deviation.

    Parameters
    ----------
    sds : array-like of shape (n_sim,)
    """
    variances = np.asarray(sds, dtype=float) ** 2
    n = variances.size
    if n < 2:
        return Measure(math.nan, math.nan)
    modse = math.sqrt(float(variances.mean()))
    if modse == 0.0:
        # a parameter fixed by the model (an off-diagonal of a spherical covariance): every
        # posterior SD is 0, and the MCSE formula divides by ModSE
        return Measure(0.0, 0.0)
    return Measure(modse, math.sqrt(float(variances.var(ddof=1)) / (4.0 * n * modse**2)))


def model_se_ratio(estimates: np.ndarray, truth: np.ndarray | float, sds: np.ndarray) -> Measure:
    """``ModSE / EmpSE``: 1 when the model-based SEs match the estimates' spread.

    MCSE ``(ModSE / EmpSE) sqrt(Var(sd**2) / (4 n ModSE**4) + 1 / (2 (n - 1)))``, the
    MCSE of Morris's relative error in ModSE (Table 6) divided by 100.

    Parameters
    ----------
    estimates : array-like of shape (n_sim,)
    truth : float or array-like of shape (n_sim,)
    sds : array-like of shape (n_sim,)
        Standard errors (or posterior SDs), one per replication.
    """
    empse = empirical_se(estimates, truth).value
    variances = np.asarray(sds, dtype=float) ** 2
    n = variances.size
    if n < 2 or not empse > 0:
        return Measure(math.nan, math.nan)
    modse = math.sqrt(float(variances.mean()))
    ratio = modse / empse
    mcse = ratio * math.sqrt(
        float(variances.var(ddof=1)) / (4.0 * n * modse**4) + 1.0 / (2.0 * (n - 1))
    )
    return Measure(ratio, mcse)


def relative_error_model_se(
    estimates: np.ndarray, truth: np.ndarray | float, sds: np.ndarray
) -> Measure:
    """Relative % error in ModSE, ``100 (ModSE / EmpSE - 1)`` (Morris Table 6).

    MCSE ``100 (ModSE / EmpSE) sqrt(Var(sd**2) / (4 n ModSE**4) + 1 / (2 (n - 1)))``.

    Parameters
    ----------
    estimates : array-like of shape (n_sim,)
    truth : float or array-like of shape (n_sim,)
    sds : array-like of shape (n_sim,)
    """
    ratio, mcse = model_se_ratio(estimates, truth, sds)
    return Measure(100.0 * (ratio - 1.0), 100.0 * mcse)


def relative_precision(errors_a: np.ndarray, errors_b: np.ndarray) -> Measure:
    """Relative % increase in precision of method B against A (Morris Table 6).

    ``100 ((EmpSE_A / EmpSE_B)**2 - 1)``, MCSE
    ``200 (EmpSE_A / EmpSE_B)**2 sqrt((1 - rho**2) / (n - 1))`` with ``rho`` the correlation
    of the two methods' errors over the same replications. Positive means B is more
    precise.

    Parameters
    ----------
    errors_a, errors_b : array-like of shape (n_sim,)
        ``estimate - truth`` of methods A and B, paired by replication.
    """
    errors_a = np.asarray(errors_a, dtype=float)
    errors_b = np.asarray(errors_b, dtype=float)
    if errors_a.shape != errors_b.shape:
        raise ValueError(
            f"paired errors must have the same shape, got {errors_a.shape} and {errors_b.shape}"
        )
    n = errors_a.size
    if n < 3:
        return Measure(math.nan, math.nan)
    sd_a, sd_b = errors_a.std(ddof=1), errors_b.std(ddof=1)
    if not (sd_a > 0 and sd_b > 0):
        return Measure(math.nan, math.nan)
    ratio_sq = float((sd_a / sd_b) ** 2)
    rho = float(np.corrcoef(errors_a, errors_b)[0, 1])
    return Measure(100.0 * (ratio_sq - 1.0), 200.0 * ratio_sq * math.sqrt((1.0 - rho**2) / (n - 1)))


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing columns {missing}; it has {list(frame.columns)}")


def _measures(group: pd.DataFrame) -> dict[str, float]:
    estimate = group["estimate"].to_numpy(dtype=float)
    truth = group["truth"].to_numpy(dtype=float)
    out: dict[str, float] = {"n_sim": float(len(group))}
    named = {
        "mean_estimate": mean_with_mcse(estimate),
        "bias": bias(estimate, truth),
        "empse": empirical_se(estimate, truth),
        "mse": mse(estimate, truth),
        "rmse": rmse(estimate, truth),
    }
    out["mean_truth"] = float(truth.mean())
    if "sd" in group.columns and group["sd"].notna().all():
        sds = group["sd"].to_numpy(dtype=float)
        named["modse"] = model_se(sds)
        named["relerror"] = relative_error_model_se(estimate, truth, sds)
    if "covered" in group.columns and group["covered"].notna().all():
        named["coverage"] = proportion(group["covered"].to_numpy(dtype=float))
    for name, (value, mcse) in named.items():
        out[name] = value
        out[f"{name}_mcse"] = mcse
    return out


def summarise(
    estimates: pd.DataFrame,
    *,
    by: Sequence[str],
    method: str = "method",
    replication: str = "replication",
    reference: str | None = "em",
    interval_columns: Sequence[str] = ("interval", "level"),
) -> pd.DataFrame:
    """Performance measures per group (e.g. condition, method, parameter), with MCSEs.

    Parameters
    ----------
    estimates : DataFrame
        Long table, one row per replication, method and parameter (and, for coverage,
        interval kind and level). Columns: those in ``by``, ``truth``, ``estimate``; optional
        ``sd`` (posterior SD: adds ``modse`` and ``relerror``), ``covered`` (0/1: adds
        ``coverage``), and ``replication`` (needed for ``relprec``). Rows with a missing
        ``estimate`` or ``truth`` are dropped.
    by : sequence of str
        Grouping columns, e.g. ``["condition_id", "method", "parameter"]``.
    method, replication : str
        Names of the method and replication columns.
    reference : str or None
        Method that the relative precision of every other method is measured against
        (Morris's "A"); None skips it. Pairs are formed on the replication column within
        the groups of ``by`` without ``method`` and ``interval_columns`` (interval rows
        repeat the same estimate).
    interval_columns : sequence of str
        Columns that only distinguish intervals of one estimate.

    Returns
    -------
    DataFrame
        One row per group: the ``by`` columns, ``n_sim``, ``mean_truth``, and each of
        ``mean_estimate, bias, empse, mse, rmse`` (plus ``modse, relerror, coverage`` when
        their inputs are present, and ``relprec`` when ``reference`` is set and ``method``
        is in ``by``) with a ``<name>_mcse`` column.
    """
    by = list(by)
    _require(estimates, [*by, "truth", "estimate"], "the estimates table")
    data = estimates.dropna(subset=["truth", "estimate"])
    rows = [
        dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)) | _measures(group)
        for key, group in data.groupby(by, sort=True, dropna=False)
    ]
    if not rows:
        return pd.DataFrame(columns=[*by, "n_sim"])
    table = pd.DataFrame(rows)
    if reference is None or method not in by:
        return table
    _require(data, [replication], "the estimates table (for relative precision)")
    base = [c for c in by if c != method and c not in interval_columns]
    keys = [*base, method, replication]
    if (data.groupby(keys, dropna=False)["estimate"].nunique() > 1).any():
        raise ValueError(
            f"relative precision needs one estimate per {replication} and {method} within "
            f"each group of {base}; add the column that tells the estimates apart (e.g. "
            "'parameter') to by, or pass reference=None"
        )
    paired = data.drop_duplicates(subset=keys)
    errors = paired.assign(_error=paired["estimate"] - paired["truth"])
    relprec = []
    for key, group in errors.groupby(base, sort=True, dropna=False) if base else [((), errors)]:
        wide = group.pivot(index=replication, columns=method, values="_error")
        if reference not in wide.columns:
            continue
        for other in wide.columns:
            if other == reference:
                continue
            both = wide[[reference, other]].dropna()
            value, mcse = relative_precision(both[reference], both[other])
            group_keys = key if isinstance(key, tuple) else (key,)
            relprec.append(
                dict(zip(base, group_keys, strict=True))
                | {method: other, "relprec": value, "relprec_mcse": mcse}
            )
    relprec_frame = pd.DataFrame(relprec, columns=[*base, method, "relprec", "relprec_mcse"])
    return table.merge(relprec_frame, on=[*base, method], how="left")


def summarise_metrics(
    metrics: pd.DataFrame,
    *,
    by: Sequence[str],
    rates: Sequence[str] = ("failed", "nonconverged"),
) -> pd.DataFrame:
    """Mean and MCSE of every fit metric, and failure / non-convergence rates, per group.

    Parameters
    ----------
    metrics : DataFrame
        Long table with the ``by`` columns, ``metric`` and ``value`` (the shape of the
        store's ``metrics`` table). Metrics named in ``rates`` are 0/1 indicators, one per
        fit (e.g. ``failed`` for every attempted fit, ``nonconverged`` for every EM fit);
        see :func:`status_indicators`. Missing values are dropped.
    by : sequence of str
        Grouping columns, e.g. ``["condition_id", "method"]``; ``metric`` is added.
    rates : sequence of str
        Metrics summarised as proportions, with MCSE ``sqrt(p (1 - p) / n)``; all others
        get mean and ``sd / sqrt(n)``.

    Returns
    -------
    DataFrame
        One row per group and metric: the ``by`` columns, ``metric``, ``n_sim``, ``mean``,
        ``mcse``.
    """
    by = list(by)
    _require(metrics, [*by, "metric", "value"], "the metrics table")
    data = metrics.dropna(subset=["value"])
    rows = []
    for key, group in data.groupby([*by, "metric"], sort=True, dropna=False):
        values = group["value"].to_numpy(dtype=float)
        measure = proportion(values) if key[-1] in rates else mean_with_mcse(values)
        rows.append(
            dict(zip([*by, "metric"], key, strict=True))
            | {"n_sim": float(values.size), "mean": measure.value, "mcse": measure.mcse}
        )
    return pd.DataFrame(rows, columns=[*by, "metric", "n_sim", "mean", "mcse"])


def status_indicators(fits: pd.DataFrame, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """``failed`` and ``nonconverged`` indicator rows from the store's fit tables.

    Parameters
    ----------
    fits : DataFrame
        The store's ``fits`` table: ``condition_id, replication, method, status``.
    diagnostics : DataFrame
        The store's ``diagnostics`` table: ``condition_id, replication, method, key,
        value``; rows with ``key == "converged"`` (EM fits) are used.

    Returns
    -------
    DataFrame
        Columns ``condition_id, replication, method, metric, value``: one ``failed`` row
        (1.0 or 0.0) per fit, and one ``nonconverged`` row per fit that reports
        ``converged``. Concatenate it with the metrics table before
        :func:`summarise_metrics`.
    """
    key = ["condition_id", "replication", "method"]
    _require(fits, [*key, "status"], "the fits table")
    _require(diagnostics, [*key, "key", "value"], "the diagnostics table")
    failed = fits[key].assign(
        metric="failed", value=(fits["status"] == "failed").to_numpy(dtype=float)
    )
    converged = diagnostics[diagnostics["key"] == "converged"]
    nonconverged = converged[key].assign(
        metric="nonconverged",
        value=1.0 - pd.to_numeric(converged["value"]).to_numpy(dtype=float),
    )
    return pd.concat([failed, nonconverged], ignore_index=True)
