"""Tests of the report's plot layer: the artists sit where the numbers say they should."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import Ellipse
from matplotlib.path import Path
from scipy import stats

from workbench.mixture import MixtureParams, log_prob, sample
from workbench.report import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _mixture(d: int, rng: np.random.Generator) -> MixtureParams:
    a = rng.normal(size=(3, d, d))
    covariances = a @ np.swapaxes(a, 1, 2) / d + 0.3 * np.eye(d)
    return MixtureParams(np.array([0.3, 0.5, 0.2]), rng.normal(0, 4, (3, d)), covariances)


def _bias_summary() -> pd.DataFrame:
    rows = []
    for condition in ("easy", "hard"):
        for m, method in enumerate(("em", "bayes")):
            for kind, parameters in (
                ("weight", ["weight[0]", "weight[1]"]),
                ("mean", ["mean[0,0]"]),
            ):
                for p, parameter in enumerate(parameters):
                    rows.append(
                        {
                            "condition": condition,
                            "method": method,
                            "kind": kind,
                            "parameter": parameter,
                            "bias": 0.01 * (m + 1) * (p + 1) * (2 if condition == "hard" else 1),
                            "bias_mcse": 0.002 * (p + 1),
                        }
                    )
    return pd.DataFrame(rows)


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_bias_points_and_error_bars_match_the_summary():
    summary = _bias_summary()
    fig = plots.plot_bias(summary)
    axes = np.array(fig.axes[:4]).reshape(2, 2)
    for i, condition in enumerate(("easy", "hard")):
        for j, kind in enumerate(("weight", "mean")):
            ax = axes[i, j]
            # several conditions and kinds: each panel's title names both
            assert ax.get_title(loc="left") == f"{condition}\n{kind}"
            bars = _errorbars(ax)
            assert len(bars) == 2
            for bar, method in zip(bars, ("em", "bayes"), strict=True):
                expected = summary[
                    (summary["condition"] == condition)
                    & (summary["kind"] == kind)
                    & (summary["method"] == method)
                ]
                line = bar.lines[0]
                np.testing.assert_allclose(line.get_xdata(), expected["bias"])
                assert to_hex(line.get_color()) == to_hex(plots.ROLE_COLORS[method])
                # the error bar segments run from bias - 1.96 MCSE to bias + 1.96 MCSE
                segments = bar.lines[2][0].get_segments()
                widths = [seg[1, 0] - seg[0, 0] for seg in segments]
                np.testing.assert_allclose(widths, 2 * 1.96 * expected["bias_mcse"])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["em", "bayes"]


def test_bias_of_one_kind_puts_the_conditions_side_by_side_on_one_scale():
    summary = _bias_summary()
    fig = plots.plot_bias(summary[summary["kind"] == "weight"])
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["easy", "hard"]
    assert "weight" in [t.get_text() for t in fig.texts]
    # one x range for the kind, holding zero and every error bar of both conditions
    limits = {ax.get_xlim() for ax in fig.axes}
    assert len(limits) == 1
    (low, high), weights = limits.pop(), summary[summary["kind"] == "weight"]
    assert low < 0.0 < high
    assert high > (weights["bias"] + 1.96 * weights["bias_mcse"]).max()
    # the figure grows with its panels instead of squeezing them
    fig_wide = plots.plot_bias(summary, col_wrap=4)
    assert fig_wide.get_figwidth() > fig.get_figwidth()
    assert fig_wide.get_layout_engine() is None


def test_bias_of_a_single_replication_has_no_bars_and_a_finite_range():
    # one replication: no MCSE (NaN); the points still set the shared x range
    summary = _bias_summary().assign(bias_mcse=np.nan)
    means = summary[summary["kind"] == "mean"]
    fig = plots.plot_bias(means)
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert np.isfinite([low, high]).all()
        assert low < 0.0 < means["bias"].max() < high


def test_bias_needs_its_columns():
    with pytest.raises(ValueError, match="bias_mcse"):
        plots.plot_bias(_bias_summary().drop(columns="bias_mcse"))


def test_unknown_method_has_no_role():
    with pytest.raises(ValueError, match="'gibbs'"):
        plots.method_role("gibbs")


def test_coverage_band_is_the_monte_carlo_band_of_the_nominal_level():
    rows = []
    for level in (0.5, 0.9):
        for interval in ("central", "hdi"):
            for parameter in ("weight[0]", "mean[0,0]"):
                rows.append(
                    {
                        "condition": "c",
                        "method": "bayes",
                        "parameter": parameter,
                        "interval": interval,
                        "level": level,
                        "coverage": level - 0.02,
                        "coverage_mcse": 0.03,
                        "n_sim": 40,
                    }
                )
    fig = plots.plot_coverage(pd.DataFrame(rows))
    assert "c" in [t.get_text() for t in fig.texts]  # the condition names its row
    # the level panels list the same parameters, named in the first one only
    first, second = fig.axes[:2]
    assert [t.get_text() for t in first.get_yticklabels()] == ["weight[0]", "mean[0,0]"]
    assert not any(tick.label1.get_visible() for tick in second.yaxis.get_major_ticks())
    np.testing.assert_array_equal(first.get_yticks(), second.get_yticks())
    for ax, level in zip(fig.axes[:2], (0.5, 0.9), strict=True):
        band = [p for p in ax.patches if p.get_width() < 1][0]
        half = 1.96 * np.sqrt(level * (1 - level) / 40)
        np.testing.assert_allclose(
            [band.get_x(), band.get_x() + band.get_width()], [level - half, level + half]
        )
        nominal = [ln for ln in ax.lines if np.all(np.asarray(ln.get_xdata()) == level)]
        assert nominal, "no nominal line"
        assert len(_errorbars(ax)) == 2  # one per interval kind
        for bar in _errorbars(ax):
            np.testing.assert_allclose(bar.lines[0].get_xdata(), level - 0.02)


def _ellipses(ax, color):
    return [
        p
        for p in ax.patches
        if isinstance(p, Ellipse) and to_hex(p.get_edgecolor()) == to_hex(color)
    ]


def test_2d_ellipses_hold_the_stated_mass_of_each_component():
    rng = np.random.default_rng(3)
    truth = _mixture(2, rng)
    X, _ = sample(truth, 300, rng)
    em = MixtureParams(truth.weights, truth.means + 0.5, truth.covariances)
    fig = plots.plot_data_fit(X, truth=truth, em=em, bayes=None)
    ax = fig.axes[0]
    truth_ellipses = _ellipses(ax, plots.ROLE_COLORS["truth"])
    assert len(truth_ellipses) == 3
    assert len(_ellipses(ax, plots.ROLE_COLORS["em"])) == 3
    assert not _ellipses(ax, plots.ROLE_COLORS["bayes"])
    for k, ellipse in enumerate(truth_ellipses):
        one = MixtureParams(np.ones(1), truth.means[[k]], truth.covariances[[k]])
        draws, _ = sample(one, 20_000, rng)
        path = Path(ellipse.get_patch_transform().transform(ellipse.get_path().vertices))
        inside = path.contains_points(draws).mean()
        assert abs(inside - plots.ELLIPSE_MASS) < 0.015


def test_1d_curves_are_the_mixture_densities():
    rng = np.random.default_rng(4)
    truth = _mixture(1, rng)
    X, _ = sample(truth, 200, rng)
    bayes = MixtureParams(truth.weights, truth.means * 1.1, truth.covariances)
    fig = plots.plot_data_fit(X, truth=truth, em=None, bayes=bayes)
    ax = fig.axes[0]
    for role, params in (("truth", truth), ("bayes", bayes)):
        thick = [
            ln
            for ln in ax.lines
            if to_hex(ln.get_color()) == to_hex(plots.ROLE_COLORS[role]) and ln.get_linewidth() > 1
        ]
        assert len(thick) == 1
        x = np.asarray(thick[0].get_xdata())[:, None]
        np.testing.assert_allclose(thick[0].get_ydata(), np.exp(log_prob(x, params)))
    assert ax.get_xlabel() == "x1" and ax.get_ylabel() == "density"


def test_pairwise_grid_for_higher_d_uses_the_marginal_covariances():
    rng = np.random.default_rng(5)
    truth = _mixture(3, rng)
    X, _ = sample(truth, 150, rng)
    fig = plots.plot_data_fit(X, truth=truth, feature_names=["a", "b", "c"])
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 6  # lower triangle with the diagonal
    # axes are row-major: row 2 (feature c) against column 0 (feature a)
    ax = fig.axes[2 * 3 + 0]
    assert ax.get_xlabel() == "a" and ax.get_ylabel() == "c"
    ellipse = _ellipses(ax, plots.ROLE_COLORS["truth"])[0]
    sub = truth.covariances[0][np.ix_([0, 2], [0, 2])]
    values = np.linalg.eigvalsh(sub)
    radius = np.sqrt(stats.chi2.ppf(plots.ELLIPSE_MASS, 2) * values)
    np.testing.assert_allclose(sorted([ellipse.width, ellipse.height]), sorted(2 * radius))
    np.testing.assert_allclose(ellipse.center, truth.means[0, [0, 2]])


def test_data_fit_rejects_mismatched_dimensions():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="em has 2 features but X has 1"):
        plots.plot_data_fit(rng.normal(size=(10, 1)), em=_mixture(2, rng))


def test_em_trace_draws_the_lower_bound_and_spread_snapshots():
    rng = np.random.default_rng(7)
    truth = _mixture(2, rng)
    lower = np.array([-3.0, -2.5, -2.2, -2.1, -2.05, -2.04, -2.04])
    snapshots = [
        (it, MixtureParams(truth.weights, truth.means + (7 - it), truth.covariances))
        for it in range(8)
    ]
    fig = plots.plot_em_trace(lower, snapshots=snapshots, truth=truth, n_shown=3)
    trace_ax, comp_ax = fig.axes
    np.testing.assert_allclose(trace_ax.lines[0].get_ydata(), lower)
    np.testing.assert_allclose(trace_ax.lines[0].get_xdata(), np.arange(1, 8))
    legend = [t.get_text() for t in comp_ax.get_legend().get_texts()]
    assert legend == [
        "EM after iteration 0",
        "EM after iteration 4",
        "EM after iteration 7",
        "truth",
    ]
    em_ellipses = _ellipses(comp_ax, plots.ROLE_COLORS["em"])
    assert len(em_ellipses) == 9
    alphas = [e.get_alpha() for e in em_ellipses]
    assert alphas[0] < alphas[-1] == 1.0


def test_em_trace_rejects_an_empty_trace():
    with pytest.raises(ValueError, match="n_iter >= 1"):
        plots.plot_em_trace(np.array([]))


def test_posterior_plot_has_lines_at_em_and_truth():
    rng = np.random.default_rng(8)
    posterior = xr.Dataset(
        {
            "weight": (("chain", "draw", "component"), rng.dirichlet([3, 4, 3], size=(2, 100))),
            "mean": (
                ("chain", "draw", "component", "feature"),
                rng.normal([[-3.0], [0.0], [3.0]], 0.1, size=(2, 100, 3, 1)),
            ),
        }
    )
    em = xr.Dataset(
        {
            "weight": ("component", [0.31, 0.39, 0.3]),
            "mean": (("component", "feature"), [[-3.1], [0.1], [2.9]]),
        }
    )
    truth = xr.Dataset(
        {
            "weight": ("component", [0.3, 0.4, 0.3]),
            "mean": (("component", "feature"), [[-3.0], [0.0], [3.0]]),
        }
    )
    pc = plots.plot_posterior_vs_point(posterior, em=em, truth=truth)
    lines = pc.viz["ref_line"]
    for var in ("weight", "mean"):
        da = lines[var]
        for role, ref in (("em", em), ("truth", truth)):
            artists = da.sel(ref_dim=role)
            for artist, value in zip(artists.values.ravel(), ref[var].values.ravel(), strict=True):
                np.testing.assert_allclose(artist.get_xdata(), value)
                assert to_hex(artist.get_color()) == to_hex(plots.ROLE_COLORS[role])
    fig = pc.viz["figure"].item()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "mean[1, 0]" in titles and "weight[2]" in titles
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[1:] == ["EM estimate", "truth"]


def test_coverage_error_bars_stop_at_0_and_1():
    frame = pd.DataFrame(
        {
            "condition": "c",
            "method": "bayes",
            "parameter": ["weight[0]", "mean[0,0]"],
            "interval": "central",
            "level": 0.9,
            "coverage": [0.98, 0.03],
            "coverage_mcse": [0.05, 0.05],
            "n_sim": 20,
        }
    )
    fig = plots.plot_coverage(frame)
    (bar,) = _errorbars(fig.axes[0])
    ends = np.concatenate([seg[:, 0] for seg in bar.lines[2][0].get_segments()])
    assert ends.min() == pytest.approx(0.0) and ends.max() == pytest.approx(1.0)
    # the unclipped sides keep their full 1.96 MCSE
    lows = sorted(seg[0, 0] for seg in bar.lines[2][0].get_segments())
    assert lows[1] == pytest.approx(0.98 - 1.96 * 0.05)


@pytest.mark.parametrize(("ci_kind", "ci_prob"), [("hdi", 0.94), ("eti", 0.5)])
def test_posterior_plot_legend_names_the_interval_that_is_drawn(ci_kind, ci_prob):
    from arviz_stats.base import array_stats

    # A skewed posterior, where the HDI and the equal-tailed interval differ visibly.
    draws = np.random.default_rng(1).gamma(1.5, size=(2, 2000))
    posterior = xr.Dataset({"v": (("chain", "draw"), draws)})
    pc = plots.plot_posterior_vs_point(
        posterior, em=None, truth=None, ci_kind=ci_kind, ci_prob=ci_prob
    )
    bar = pc.viz["credible_interval"]["v"].values.item()
    expected = getattr(array_stats, ci_kind)(draws.ravel(), ci_prob)
    np.testing.assert_allclose(bar.get_xdata(), expected)
    other = array_stats.eti if ci_kind == "hdi" else array_stats.hdi
    assert not np.allclose(bar.get_xdata(), other(draws.ravel(), ci_prob), atol=1e-3)
    legend = pc.viz["figure"].item().legends[0].get_texts()[0].get_text()
    assert f"bar: {ci_prob:.0%} {ci_kind.upper()}" in legend


def test_em_interval_bar_sits_under_each_posterior_at_the_given_bounds():
    draws = np.random.default_rng(2).normal([0.3, -1.0], 0.05, size=(2, 200, 2))
    names = ["weight[0]", "mean[0,0]"]
    posterior = xr.Dataset(
        {"value": (("chain", "draw", "parameter"), draws)}, coords={"parameter": names}
    )

    def point(values):
        return xr.Dataset({"value": ("parameter", values)}, coords={"parameter": names})

    interval = plots.EMInterval(point([0.2, -1.2]), point([0.4, -0.8]), "EM sandwich-wald 95%")
    pc = plots.plot_posterior_vs_point(
        posterior, em=point([0.3, -1.0]), truth=None, em_interval=interval, ci_prob=0.95
    )
    ref_lines = pc.viz["ref_line"]["value"].sel(ref_dim="em").values.ravel()
    for artist, bounds in zip(ref_lines, ([0.2, 0.4], [-1.2, -0.8]), strict=True):
        bars = [
            line
            for line in artist.axes.lines
            if to_hex(line.get_color()) == to_hex(plots.ROLE_COLORS["em"])
            and line.get_marker() == "|"  # the estimate's own line has no marker
        ]
        assert [list(bar.get_xdata()) for bar in bars] == [bounds]
    legend = [t.get_text() for t in pc.viz["figure"].item().legends[0].get_texts()]
    assert legend[-1] == "EM sandwich-wald 95%"
    with pytest.raises(ValueError, match="em_interval needs em"):
        plots.plot_posterior_vs_point(posterior, em=None, truth=None, em_interval=interval)


def test_coverage_gives_each_interval_method_its_marker_and_each_fit_its_colour():
    rows = [
        {
            "condition": "c",
            "method": method,
            "parameter": "mean[0,0]",
            "interval": interval,
            "level": 0.95,
            "coverage": 0.9,
            "coverage_mcse": 0.02,
            "n_sim": 120,
        }
        for method, interval in [
            ("em", "hessian-wald"),
            ("em", "sandwich-wald"),
            ("em", "nonparametric-bootstrap-percentile"),
            ("bayes", "central"),
            ("bayes", "hdi"),
        ]
    ]
    fig = plots.plot_coverage(pd.DataFrame(rows))
    bars = _errorbars(fig.axes[0])
    styles = {(to_hex(b.lines[0].get_color()), b.lines[0].get_marker()) for b in bars}
    assert len(bars) == len(styles) == 5
    colours = sorted(colour for colour, _ in styles)
    em, bayes = to_hex(plots.ROLE_COLORS["em"]), to_hex(plots.ROLE_COLORS["bayes"])
    assert colours == sorted([em] * 3 + [bayes] * 2)
    assert len({marker for _, marker in styles}) == 5
