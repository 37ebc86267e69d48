"""SBC plots: fractional ranks, ECDF differences inside ArviZ's bands, binned rank counts."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from workbench.bayes.calibration import SBCRanks, rank_table, sbc_quantity_names
from workbench.report.calibration_plots import (
    fractional_ranks,
    plot_rank_histograms,
    plot_sbc_ecdf,
)

NAMES, KINDS = sbc_quantity_names(2, 1, "full")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _table(n: int, rng: np.random.Generator, *, skew_first: bool = False):
    out = []
    for _ in range(n):
        L = int(rng.choice([9, 99, 199]))
        ranks = rng.integers(0, L + 1, size=len(NAMES))
        if skew_first:
            ranks[0] = min(ranks[0], L // 4)  # all in the lowest quarter
        out.append(SBCRanks(NAMES, KINDS, ranks, L, 50.0, 400))
    return rank_table(out)


def test_fractional_ranks_centre_each_rank_in_its_interval():
    results = [
        SBCRanks(NAMES, KINDS, np.array([0, 9, 4, 0, 0, 0, 0]), 9, 10.0, 40),
        None,  # a failed fit is skipped
        SBCRanks(NAMES, KINDS, np.array([99, 0, 50, 0, 0, 0, 0]), 99, 120.0, 400),
    ]
    table = rank_table(results)
    assert table.n_failed == 1 and table.ranks.shape == (2, len(NAMES))
    pit = fractional_ranks(table)
    assert list(pit.data_vars) == list(NAMES)
    assert np.allclose(pit["weight[0]"].values, [0.05, 99.5 / 100])
    assert np.allclose(pit["mean[0,0]"].values, [0.45, 0.505])


def _line_and_band(ax):
    y = ax.lines[0].get_ydata()
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    return y, band.min(), band.max()


def test_ecdf_difference_stays_in_the_band_for_uniform_ranks_and_leaves_it_for_skewed():
    fig = plot_sbc_ecdf(_table(200, np.random.default_rng(0), skew_first=True))
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == list(NAMES)
    y, low, high = _line_and_band(axes[0])
    assert y.max() > high  # three quarters of the ranks below 1/4
    for ax in axes[1:]:
        y, low, high = _line_and_band(ax)
        assert 0.03 < high < 0.2 and -0.2 < low < -0.03
        assert np.all((y >= low - 1e-12) & (y <= high + 1e-12))


def test_rank_histograms_count_the_bins_of_the_uniformity_test():
    table = _table(100, np.random.default_rng(1))
    fig = plot_rank_histograms(table, quantities=["loglik"], n_bins=5)
    (ax,) = [ax for ax in fig.axes if ax.get_title()]
    heights = [bar.get_height() for bar in ax.containers[0]]
    ranks, L = table.ranks[:, -1], table.n_draws
    assert heights == list(np.bincount(ranks * 5 // (L + 1), minlength=5))
    assert sum(heights) == 100
