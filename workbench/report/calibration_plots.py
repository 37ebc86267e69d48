"""Plots of simulation-based calibration: ECDF differences with simultaneous bands, rank bins.

Pure functions over the :class:`~workbench.bayes.calibration.SBCRanks` of one model's
simulations; they fit nothing and return the object they drew.

* :func:`plot_sbc_ecdf` -- the ECDF of each quantity's fractional ranks minus the uniform
  CDF, with 95% simultaneous bands (Säilynoja, Bürkner & Vehtari 2022) computed by
  ``arviz_stats``.
* :func:`plot_rank_histograms` -- ranks binned as in the uniformity test, with the
  central 99% range of a bin count under uniformity (Talts et al. 2018, figure 2 style).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from arviz_stats.ecdf_utils import ecdf_pit
from matplotlib.figure import Figure
from scipy import stats

from workbench.bayes.calibration import RANK_BINS, SBCRanks

__all__ = ["fractional_ranks", "plot_rank_histograms", "plot_sbc_ecdf"]

SIMULATION = "simulation"


def _completed(results: Sequence[SBCRanks | None]) -> list[SBCRanks]:
    done = [r for r in results if r is not None]
    if not done:
        raise ValueError("no simulation has ranks; nothing to plot")
    if any(r.quantities != done[0].quantities for r in done):
        raise ValueError("the simulations rank different quantities; plot one model at a time")
    return done


def fractional_ranks(results: Sequence[SBCRanks | None]) -> xr.Dataset:
    """Ranks scaled to (0, 1): ``(rank + 0.5) / (L + 1)``, one variable per quantity.

    The scaling puts each of the ``L + 1`` possible ranks in the middle of its own
    interval, so simulations with different ``L`` share one scale.

    Parameters
    ----------
    results : sequence of SBCRanks or None
        ``None`` (a failed fit) is skipped.

    Returns
    -------
    xarray.Dataset
        Variables named by the quantities, each of dims (simulation,).
    """
    done = _completed(results)
    ranks = np.stack([r.ranks for r in done])
    n_draws = np.array([r.n_draws for r in done])[:, None]
    pit = (ranks + 0.5) / (n_draws + 1)
    return xr.Dataset(
        {q: ((SIMULATION,), pit[:, i]) for i, q in enumerate(done[0].quantities)},
        coords={SIMULATION: np.arange(len(done))},
    )


def plot_sbc_ecdf(
    results: Sequence[SBCRanks | None],
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
    results : sequence of SBCRanks or None
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
    pit = fractional_ranks(results)
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
        ax.set_title(name)
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    fig.supxlabel("fractional rank")
    fig.supylabel(f"ECDF difference ({envelope_prob:.0%} simultaneous band)")
    fig.tight_layout()
    return fig


def plot_rank_histograms(
    results: Sequence[SBCRanks | None],
    *,
    n_bins: int = RANK_BINS,
    quantities: Sequence[str] | None = None,
    prob: float = 0.99,
) -> Figure:
    """Histograms of the binned ranks with the central ``prob`` range of a uniform bin count.

    Parameters
    ----------
    results : sequence of SBCRanks or None
        Computed with ``rank_bins`` a multiple of ``n_bins``.
    n_bins : int, default RANK_BINS
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
    done = _completed(results)
    names = list(done[0].quantities if quantities is None else quantities)
    index = [done[0].quantities.index(q) for q in names]
    ranks = np.stack([r.ranks for r in done])[:, index]
    n_draws = np.array([r.n_draws for r in done])[:, None]
    bins = ranks * n_bins // (n_draws + 1)
    n = len(done)
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
        ax.set_title(name)
        ax.set_xticks([])
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    fig.supxlabel(f"rank bin (of {n_bins})")
    fig.supylabel(f"simulations (of {n})")
    fig.tight_layout()
    return fig
