"""Plots of simulation-based calibration: ECDF differences with simultaneous bands, rank bins.

Pure functions over the stacked ranks of one model's simulations (a
:class:`~workbench.bayes.calibration.RankTable`, or the same arrays read back from a
store); they fit nothing and return the figure they drew.

* :func:`plot_sbc_ecdf` -- the ECDF of each quantity's fractional ranks minus the uniform
  CDF, with 95% simultaneous bands (Säilynoja, Bürkner & Vehtari 2022) computed by
  ``arviz_stats``.
* :func:`plot_rank_histograms` -- ranks binned as in the uniformity test, with the
  central 99% range of a bin count under uniformity (Talts et al. 2018, figure 2 style).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from arviz_stats.ecdf_utils import ecdf_pit
from matplotlib.figure import Figure
from scipy import stats

from workbench.report.plots import _fixed_margins

if TYPE_CHECKING:
    # only a type here; the module imports PyMC, which a worker drawing plots need not load
    from workbench.bayes.calibration import RankTable

__all__ = ["fractional_ranks", "plot_rank_histograms", "plot_sbc_ecdf"]

SIMULATION = "simulation"


def fractional_ranks(table: RankTable) -> xr.Dataset:
    """Ranks scaled to (0, 1): ``(rank + 0.5) / (L + 1)``, one variable per quantity.

    The scaling puts each of the ``L + 1`` possible ranks in the middle of its own
    interval, so simulations with different ``L`` share one scale.

    Parameters
    ----------
    table : RankTable
        ``ranks`` of shape (n_simulations, Q), ``n_draws`` of shape (n_simulations,).

    Returns
    -------
    xarray.Dataset
        Variables named by the quantities, each of dims (simulation,).
    """
    pit = (np.asarray(table.ranks) + 0.5) / (np.asarray(table.n_draws)[:, None] + 1)
    return xr.Dataset(
        {q: ((SIMULATION,), pit[:, i]) for i, q in enumerate(table.quantities)},
        coords={SIMULATION: np.arange(pit.shape[0])},
    )


def plot_sbc_ecdf(
    table: RankTable,
    *,
    quantities: Sequence[str] | None = None,
    envelope_prob: float = 0.95,
    n_band_simulations: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> Figure:
    """ECDF-difference plot of each quantity's ranks with simultaneous bands.

    The band is ``arviz_stats.ecdf_utils.ecdf_pit``'s: pointwise intervals of a uniform
    sample's ECDF whose level is adjusted by simulation so that the whole curve stays
    inside with probability ``envelope_prob`` (Säilynoja, Bürkner & Vehtari 2022).
    ``arviz_plots.plot_ecdf_pit(method="envelope")`` would draw the same, but in
    arviz-plots 1.3.2 that path fails (``np.linspace`` gets a DataArray), so only the band
    is taken from ArviZ and drawn here.

    Parameters
    ----------
    table : RankTable
    quantities : sequence of str, optional
        Default: all.
    envelope_prob : float, default 0.95
        Probability that the whole ECDF difference of uniform ranks stays in the band.
    n_band_simulations : int, default 1000
        Simulations ArviZ uses to calibrate the band.
    rng : numpy.random.Generator or seed, default 0
        For the band's simulations, so the same ranks give the same figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per quantity: the ECDF minus the uniform CDF (blue) and the band (grey).
    """
    pit = fractional_ranks(table)
    names = list(pit.data_vars if quantities is None else quantities)
    rng = np.random.default_rng(rng)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False, sharex=True, sharey=True
    )
    for ax, name in zip(axes.flat, names, strict=False):
        x, ecdf, lower, upper = ecdf_pit(
            pit[name].values, envelope_prob, n_band_simulations, rng=rng
        )
        ax.fill_between(x, lower - x, upper - x, color="0.85", step="post", lw=0)
        ax.step(x, ecdf - x, where="post", color="#0072B2")
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.set_title(name, y=1.0)  # a fixed position: no measuring on every draw
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    fig.supxlabel("fractional rank")
    fig.supylabel(f"ECDF difference ({envelope_prob:.0%} simultaneous band)")
    _fixed_margins(fig, left=0.85, top=0.3, bottom=0.6, gap_w=0.15, gap_h=0.35)
    return fig


def plot_rank_histograms(
    table: RankTable,
    *,
    n_bins: int,
    quantities: Sequence[str] | None = None,
    prob: float = 0.99,
) -> Figure:
    """Histograms of the binned ranks with the central ``prob`` range of a uniform bin count.

    Parameters
    ----------
    table : RankTable
        Ranks computed with ``rank_bins`` a multiple of ``n_bins``.
    n_bins : int
        The bins of the uniformity test (``sbc_check``'s ``n_bins``).
    quantities : sequence of str, optional
        Default: all.
    prob : float, default 0.99
        Each bin count of uniform ranks is Binomial(n_simulations, 1 / n_bins); the grey
        band is its central ``prob`` interval.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per quantity.
    """
    names = list(table.quantities if quantities is None else quantities)
    index = [table.quantities.index(q) for q in names]
    ranks = np.asarray(table.ranks)[:, index]
    bins = ranks * n_bins // (np.asarray(table.n_draws)[:, None] + 1)
    n = ranks.shape[0]
    low, high = stats.binom(n, 1 / n_bins).interval(prob)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    for ax, name, column in zip(axes.flat, names, bins.T, strict=False):
        ax.axhspan(low, high, color="0.85", zorder=0)
        ax.axhline(n / n_bins, color="0.4", lw=1)
        ax.bar(
            np.arange(n_bins),
            np.bincount(column, minlength=n_bins),
            width=1.0,
            color="#0072B2",
            edgecolor="white",
        )
        ax.set_title(name, y=1.0)  # a fixed position: no measuring on every draw
        ax.set_xticks([])
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    fig.supxlabel(f"rank bin (of {n_bins})")
    fig.supylabel(f"simulations (of {n})")
    _fixed_margins(fig, left=0.8, top=0.3, bottom=0.4, gap_w=0.45, gap_h=0.35)
    return fig
