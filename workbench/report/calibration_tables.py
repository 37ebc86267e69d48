"""Tables of the report's "Calibration" section, from the store's calibration tables.

Pure functions over DataFrames shaped like the store's ``sbc_ranks``, ``ordered_intervals``,
``fits`` and ``conditions`` tables (see :mod:`workbench.study.store`); they exist only in
studies with ``truth = "prior"``. The uniformity test is
:func:`workbench.bayes.calibration.sbc_check`; coverage MCSEs come from
:func:`workbench.study.summaries.proportion`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from workbench.bayes.calibration import RANK_BINS, RankTable, sbc_check
from workbench.report.tables import format_mcse
from workbench.study.summaries import mean_with_mcse, proportion

__all__ = [
    "CALIBRATION_ALPHA",
    "RankCase",
    "coverage_display",
    "point_interval_rows",
    "pooled_coverage_display",
    "pooled_prior_coverage_table",
    "prior_coverage_table",
    "rank_cases",
    "uniformity_bins",
    "uniformity_display",
    "uniformity_table",
]

#: Level of the Bonferroni-adjusted uniformity p-values (as :func:`sbc_check`'s default).
CALIBRATION_ALPHA = 0.001


class RankCase(NamedTuple):
    """The stacked SBC ranks of one condition and method.

    Attributes
    ----------
    condition_id : int
    method : str
    table : RankTable
        ``ranks`` of shape (n_simulations, Q), rows in replication order.
    replications : ndarray of int, shape (n_simulations,)
    """

    condition_id: int
    method: str
    table: RankTable
    replications: np.ndarray


def rank_cases(sbc_ranks: pd.DataFrame, fits: pd.DataFrame) -> list[RankCase]:
    """Stack the stored ranks per condition and method.

    Parameters
    ----------
    sbc_ranks, fits : DataFrame
        The store's tables of those names.

    Returns
    -------
    list of RankCase
        Sorted by condition and method. ``table.n_failed`` counts that method's failed fits
        in the condition: they have no ranks but are not dropped from the verdict.
    """
    cases = []
    for (condition_id, method), group in sbc_ranks.groupby(["condition_id", "method"], sort=True):
        # quantities in the order they were written (the model's parameter order)
        quantities = list(pd.unique(group["quantity"]))
        kinds = group.drop_duplicates("quantity").set_index("quantity")["kind"]
        wide = group.pivot(index="replication", columns="quantity", values="rank")[quantities]
        n_draws = group.groupby("replication")["n_draws"].first().loc[wide.index]
        failed = fits[
            (fits["condition_id"] == condition_id)
            & (fits["method"] == method)
            & (fits["status"] == "failed")
        ]
        table = RankTable(
            quantities=tuple(quantities),
            kinds=tuple(kinds.loc[quantities]),
            ranks=wide.to_numpy(dtype=np.int64),
            n_draws=n_draws.to_numpy(dtype=np.int64),
            n_failed=len(failed),
        )
        cases.append(RankCase(int(condition_id), str(method), table, wide.index.to_numpy()))
    return cases


def uniformity_bins(n_simulations: int, rank_bins: int = RANK_BINS) -> int | None:
    """Bins of the uniformity test: the largest divisor of ``rank_bins`` with 5 ranks per bin.

    Ranks were computed with ``L + 1`` a multiple of ``rank_bins``, so any divisor of it
    gives equally likely bins.

    Returns
    -------
    int or None
        None when even 2 bins would hold fewer than 5 expected ranks each.
    """
    usable = [b for b in range(2, rank_bins + 1) if rank_bins % b == 0 and n_simulations >= 5 * b]
    return max(usable) if usable else None


def uniformity_table(
    cases: list[RankCase], conditions: pd.DataFrame, *, alpha: float = CALIBRATION_ALPHA
) -> pd.DataFrame:
    """Chi-square uniformity test of every quantity's ranks, per condition and method.

    Parameters
    ----------
    cases : list of RankCase
    conditions : DataFrame
        The store's ``conditions`` table.
    alpha : float
        Level of the Bonferroni-adjusted p-values.

    Returns
    -------
    DataFrame
        One row per condition, method and quantity: ``condition_id, condition, method,
        quantity, kind, n_sim, n_failed, n_bins, median_L, statistic, p_value, p_adjusted,
        flagged`` (``p_adjusted < alpha``). Cases with too few simulations for 2 bins have
        NaN statistics and ``flagged`` False.
    """
    labels = dict(zip(conditions["condition_id"], conditions["label"], strict=True))
    rows = []
    for case in cases:
        n_sim = case.table.ranks.shape[0]
        bins = uniformity_bins(n_sim)
        base = {
            "condition_id": case.condition_id,
            "condition": labels[case.condition_id],
            "method": case.method,
        }
        median_l = float(np.median(case.table.n_draws))
        if bins is None:
            for q, kind in zip(case.table.quantities, case.table.kinds, strict=True):
                rows.append(
                    {
                        **base,
                        "quantity": q,
                        "kind": kind,
                        "n_sim": n_sim,
                        "n_failed": case.table.n_failed,
                        "n_bins": 0,
                        "median_L": median_l,
                        "statistic": math.nan,
                        "p_value": math.nan,
                        "p_adjusted": math.nan,
                        "flagged": False,
                    }
                )
            continue
        check = sbc_check(case.table, n_bins=bins, alpha=alpha)
        for test in check.tests:
            rows.append(
                {
                    **base,
                    "quantity": test.quantity,
                    "kind": test.kind,
                    "n_sim": test.n_simulations,
                    "n_failed": check.n_failed,
                    "n_bins": test.n_bins,
                    "median_L": median_l,
                    "statistic": test.statistic,
                    "p_value": test.p_value,
                    "p_adjusted": test.p_adjusted,
                    "flagged": test.p_adjusted < alpha,
                }
            )
    return pd.DataFrame(rows)


def prior_coverage_table(ordered_intervals: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """Coverage of the ordered-label central intervals, averaged over the prior, with MCSE.

    Under a calibrated posterior the target is exact: coverage equals the nominal level.
    The MCSE is the usual ``sqrt(C (1 - C) / n)``; the check against the nominal level
    uses the MCSE *at* the nominal level, ``sqrt(level (1 - level) / n)``, which stays
    positive when every interval covered.

    Parameters
    ----------
    ordered_intervals, conditions : DataFrame
        The store's tables of those names.

    Returns
    -------
    DataFrame
        One row per condition, method, quantity and level: ``condition_id, condition,
        method, quantity, kind, level, n_sim, coverage, coverage_mcse, nominal_mcse,
        z`` (``(coverage - level) / nominal_mcse``) and ``within_2_mcse``.
    """
    labels = dict(zip(conditions["condition_id"], conditions["label"], strict=True))
    rows = []
    by = ["condition_id", "method", "quantity", "level"]
    for (condition_id, method, quantity, level), group in ordered_intervals.groupby(by, sort=False):
        measure = proportion(group["covered"].to_numpy())
        n = len(group)
        nominal_mcse = math.sqrt(level * (1.0 - level) / n)
        z = (measure.value - level) / nominal_mcse
        rows.append(
            {
                "condition_id": condition_id,
                "condition": labels[condition_id],
                "method": method,
                "quantity": quantity,
                "kind": group["kind"].iloc[0],
                "level": level,
                "n_sim": n,
                "coverage": measure.value,
                "coverage_mcse": measure.mcse,
                "nominal_mcse": nominal_mcse,
                "z": z,
                "within_2_mcse": abs(z) <= 2.0,
            }
        )
    return pd.DataFrame(rows)


def point_interval_rows(
    intervals: pd.DataFrame, estimates: pd.DataFrame, posterior_methods: set[str]
) -> pd.DataFrame:
    """The confidence intervals of point-estimate methods (EM's Wald or bootstrap), shaped like
    the store's ``ordered_intervals`` so the prior-averaged coverage tables can hold them.

    Their labels are aligned to the truth, as everywhere else in the report; an interval
    method with exact frequentist coverage at every truth also covers its nominal share
    averaged over the prior, which puts it on the posterior's yardstick.

    Parameters
    ----------
    intervals, estimates : DataFrame
        The store's tables of those names.
    posterior_methods : set of str
        Methods whose intervals come from ``ordered_intervals`` instead (the Bayes fits).

    Returns
    -------
    DataFrame
        Columns ``condition_id, replication, method, quantity, kind, level, covered``;
        ``method`` is ``"<method> <interval>"``, e.g. ``"em sandwich-wald"``.
    """
    columns = ["condition_id", "replication", "method", "quantity", "kind", "level", "covered"]
    rows = intervals[~intervals["method"].isin(posterior_methods)]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    kinds = estimates.drop_duplicates(["method", "parameter"]).set_index(["method", "parameter"])
    kind = kinds["kind"].reindex(pd.MultiIndex.from_frame(rows[["method", "parameter"]]))
    return pd.DataFrame(
        {
            "condition_id": rows["condition_id"].to_numpy(),
            "replication": rows["replication"].to_numpy(),
            "method": (rows["method"] + " " + rows["interval"]).to_numpy(),
            "quantity": rows["parameter"].to_numpy(),
            "kind": kind.to_numpy(),
            "level": rows["level"].to_numpy(),
            "covered": rows["covered"].to_numpy(),
        }
    ).dropna(subset=["covered"])


def pooled_prior_coverage_table(
    ordered_intervals: pd.DataFrame, conditions: pd.DataFrame
) -> pd.DataFrame:
    """Prior-averaged coverage pooled over a fit's parameters, per condition, method and level.

    Each simulation contributes the share of its parameters whose interval covered; the
    coverage is the mean of those shares and its MCSE their standard deviation over
    ``sqrt(n_sim)``, which allows for the parameters of one fit being correlated. Pooling
    makes a shortfall that every parameter shares visible with a few hundred simulations.

    Parameters
    ----------
    ordered_intervals, conditions : DataFrame
        The store's tables of those names.

    Returns
    -------
    DataFrame
        One row per condition, method and level: ``condition_id, condition, method, level,
        n_sim, n_quantities, coverage, coverage_mcse, z`` (``(coverage - level) /
        coverage_mcse``) and ``within_2_mcse``.
    """
    labels = dict(zip(conditions["condition_id"], conditions["label"], strict=True))
    rows = []
    for (condition_id, method, level), group in ordered_intervals.groupby(
        ["condition_id", "method", "level"], sort=False
    ):
        shares = group.groupby("replication")["covered"].mean().to_numpy(dtype=float)
        measure = mean_with_mcse(shares)
        z = (measure.value - level) / measure.mcse if measure.mcse > 0 else math.nan
        # with no spread the MCSE is 0: only an exact hit is within it
        within = bool(abs(z) <= 2.0) if math.isfinite(z) else measure.value == level
        rows.append(
            {
                "condition_id": condition_id,
                "condition": labels[condition_id],
                "method": method,
                "level": level,
                "n_sim": len(shares),
                "n_quantities": group["quantity"].nunique(),
                "coverage": measure.value,
                "coverage_mcse": measure.mcse,
                "z": z,
                "within_2_mcse": within,
            }
        )
    return pd.DataFrame(rows)


def pooled_coverage_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`pooled_prior_coverage_table` as shown: one row per condition and method, one
    column per level; ``coverage (MCSE)``, ``*`` when more than 2 MCSEs from nominal."""
    return _by_level(table, ["condition", "method"], {"n_quantities": "parameters"})


def uniformity_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`uniformity_table` as shown in the report (rounded p-values, readable headings)."""
    return pd.DataFrame(
        {
            "condition": table["condition"],
            "method": table["method"],
            "quantity": table["quantity"],
            "simulations": table["n_sim"],
            "failed fits": table["n_failed"],
            "bins": table["n_bins"],
            "median L": table["median_L"],
            "chi-square": table["statistic"],
            "p": table["p_value"],
            "p (Bonferroni)": table["p_adjusted"],
            "flagged": table["flagged"].map({True: "yes", False: ""}),
        }
    )


def coverage_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`prior_coverage_table` as shown: one row per quantity, one column per level.

    Each cell is ``coverage (MCSE)``, marked ``*`` when more than 2 MCSEs (at the nominal
    level) from the nominal level.
    """
    return _by_level(table, ["condition", "method", "quantity"], {})


def _by_level(table: pd.DataFrame, index: list[str], counts: dict[str, str]) -> pd.DataFrame:
    """Coverage rows pivoted to one column per level, then ``counts`` columns (renamed) and
    the number of simulations."""
    if table.empty:
        return pd.DataFrame()
    cells = table.assign(
        cell=[
            format_mcse(c, m) + ("" if ok else " *")
            for c, m, ok in zip(
                table["coverage"], table["coverage_mcse"], table["within_2_mcse"], strict=True
            )
        ],
        column=[f"{100 * level:g}%" for level in table["level"]],
    )
    wide = cells.pivot_table(index=index, columns="column", values="cell", aggfunc="first")
    wide = wide[[f"{100 * level:g}%" for level in sorted(table["level"].unique())]]
    order = cells.drop_duplicates(index)[index]
    wide = order.merge(wide.reset_index(), on=index, how="left")
    extra = table.groupby(index, sort=False)[[*counts, "n_sim"]].first().reset_index()
    return wide.merge(extra, on=index, how="left").rename(
        columns={**counts, "n_sim": "simulations"}
    )
