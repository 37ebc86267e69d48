"""Plots for the comparison report: pure functions over arrays, DataFrames and Datasets.

Every function returns the object it drew (a matplotlib ``Figure`` or an ArviZ
``PlotCollection``) so that a caller can restyle it before saving. Nothing here reads the
store or fits anything.

One colour per role is used in every plot, from the Okabe-Ito palette, which stays
distinguishable under the common forms of colour blindness:

=========  ==============  =========
role       colour          line
=========  ==============  =========
truth      black           solid
EM         vermillion      dashed
Bayes      blue            solid
ADVI       bluish green    dash-dot
data       grey            (points)
=========  ==============  =========
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, cast

import arviz as az
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from arviz_base.labels import BaseLabeller
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch
from matplotlib.typing import LineStyleType
from scipy import stats

from workbench.mixture import MixtureParams, log_prob

__all__ = [
    "EMInterval",
    "ROLES",
    "ROLE_COLORS",
    "ROLE_LABELS",
    "ROLE_LINESTYLES",
    "ROLE_MARKERS",
    "method_role",
    "parameter_sort_key",
    "plot_bias",
    "plot_coverage",
    "plot_data_fit",
    "plot_em_trace",
    "plot_posterior_vs_point",
    "plot_selection_accuracy",
    "plot_selection_curves",
]

ROLES: tuple[str, ...] = ("truth", "em", "bayes", "advi")
ROLE_COLORS: dict[str, str] = {
    "truth": "#000000",
    "em": "#D55E00",
    "bayes": "#0072B2",
    "advi": "#009E73",
    "data": "#999999",
}
ROLE_LINESTYLES: dict[str, LineStyleType] = {"truth": "-", "em": "--", "bayes": "-", "advi": "-."}
ROLE_LABELS: dict[str, str] = {
    "truth": "truth",
    "em": "EM",
    "bayes": "Bayes",
    "advi": "ADVI",
}
# Probability mass inside each drawn ellipse; stated in every 2-D caption and legend.
ELLIPSE_MASS = 0.9
ROLE_MARKERS: dict[str, str] = {"em": "o", "bayes": "s", "advi": "D"}
# One marker per interval method (a posterior's central / HDI, EM's Wald and bootstrap
# intervals); the colour says which fit it belongs to.
_INTERVAL_MARKERS = ("o", "^", "v", "P", "X", "D", "*", "s")


def parameter_sort_key(parameter: str) -> tuple[int, tuple[int, ...], str]:
    """Sort key that puts weights, then means, then covariances, each by numeric index.

    ``"mean[10,0]"`` sorts after ``"mean[2,0]"``; names of another form sort last.
    """
    name, _, rest = parameter.partition("[")
    rank = {"weight": 0, "mean": 1, "cov": 2}.get(name, 3)
    digits = rest.rstrip("]").split(",") if rest else []
    index = tuple(int(i) for i in digits) if all(i.isdigit() for i in digits) else ()
    return rank, index, parameter


def method_role(method: str) -> str:
    """The plotting role of a stored method name: ``'em'``, ``'bayes'`` or ``'advi'``.

    Raises
    ------
    ValueError
        If ``method`` is none of them.
    """
    if method not in ("em", "bayes", "advi"):
        raise ValueError(f"method {method!r} has no plotting role; use 'em', 'bayes' or 'advi'")
    return method


def _method_styles(methods: Sequence[str]) -> dict[str, dict[str, object]]:
    return {
        m: {
            "color": ROLE_COLORS[method_role(m)],
            "marker": ROLE_MARKERS[m],
            "linestyle": ROLE_LINESTYLES[m],
        }
        for m in methods
    }


# Sizes in inches. Margins are computed from the text they must hold (a character of an
# 8-point label is about _CHAR wide, a line _LINE high), so a figure is sized to its
# content and needs no layout engine: constrained layout and tight bounding boxes measure
# every text on every draw, which dominated the report's run time for large studies.
_CHAR = 0.07
_LINE = 0.19
_TICKS = 0.28  # tick labels and ticks below an axis
# Height of one parameter's row in a dodged point panel: its markers plus some air.
_ROW_BASE = 0.17
_ROW_PER_MARKER = 0.07


def _panel_grid(
    heights: Sequence[float],
    n_cols: int,
    *,
    width: float,
    left: float,
    right: float,
    top: float,
    bottom: float,
    gap_h: float,
    gap_w: float,
) -> tuple[Figure, np.ndarray]:
    """Panels of a given size in inches, with fixed margins between and around them.

    Parameters
    ----------
    heights : sequence of float, length n_rows
        Height of each row of panels.
    n_cols : int
        Panels per row, each ``width`` wide.
    left, right, top, bottom : float
        Margins around the panels.
    gap_h, gap_w : float
        Space between rows and between columns.

    Returns
    -------
    (Figure, ndarray of Axes of shape (n_rows, n_cols))
    """
    heights = [float(h) for h in heights]
    fig_w = left + n_cols * width + (n_cols - 1) * gap_w + right
    fig_h = top + sum(heights) + (len(heights) - 1) * gap_h + bottom
    fig = plt.figure(figsize=(fig_w, fig_h))
    # GridSpec spaces are fractions of the mean panel size: this makes them gap_h, gap_w.
    grid = fig.add_gridspec(
        len(heights),
        n_cols,
        height_ratios=heights,
        left=left / fig_w,
        right=1 - right / fig_w,
        bottom=bottom / fig_h,
        top=1 - top / fig_h,
        wspace=gap_w / width,
        hspace=gap_h / float(np.mean(heights)),
    )
    axes = np.empty((len(heights), n_cols), dtype=object)
    for i in range(len(heights)):
        for j in range(n_cols):
            axes[i, j] = fig.add_subplot(grid[i, j])
    return fig, axes


def _fixed_margins(
    fig: Figure,
    *,
    left: float,
    right: float = 0.15,
    top: float = 0.15,
    bottom: float,
    gap_w: float = 0.0,
    gap_h: float = 0.0,
) -> None:
    """Place the grid of ``fig``'s axes with margins and gaps given in inches.

    The figure's axes must come from one grid (``plt.subplots``). The fixed margins replace
    a layout engine, which measures every text on every draw.
    """
    width, height = fig.get_size_inches()
    spec = fig.axes[0].get_subplotspec()
    if spec is None:
        raise ValueError("the figure's axes must come from one grid (plt.subplots)")
    n_rows, n_cols = spec.get_gridspec().get_geometry()
    panel_w = (width - left - right - (n_cols - 1) * gap_w) / n_cols
    panel_h = (height - top - bottom - (n_rows - 1) * gap_h) / n_rows
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap_w / panel_w,
        hspace=gap_h / panel_h,
    )


def _text_width(labels: Sequence[str], *, fontsize: float = 8) -> float:
    """Width in inches of the longest label at ``fontsize`` points (an estimate)."""
    return max((len(s) for s in labels), default=0) * _CHAR * fontsize / 8


def _bottom_legend(
    fig: Figure, handles: Sequence[Artist], *, title: str, n_cols: int, xlabel: str
) -> None:
    """A legend at the bottom of ``fig`` and, above it, the x label shared by the panels.

    The figure's bottom margin must hold ``_legend_height(len(handles), n_cols)``.
    """
    height = fig.get_figheight()
    _figure_legend(fig, handles, n_cols=n_cols, title=title, y=0.02 / height)
    rows = -(-len(handles) // n_cols)
    y = (_legend_height(rows) + 0.05) / height
    fig.text(0.5, y, xlabel, ha="center", va="bottom", fontsize=8)


def _figure_legend(
    fig: Figure,
    handles: Sequence[Artist],
    *,
    n_cols: int,
    title: str | None = None,
    y: float = 0.0,
) -> None:
    """The house legend of a figure: centred at the bottom (``y`` in figure fractions),
    frameless, 8-point entries and title."""
    fig.legend(
        handles=handles,
        title=title,
        loc="lower center",
        bbox_to_anchor=(0.5, y),
        ncols=n_cols,
        frameon=False,
        fontsize=8,
        title_fontsize=8,
    )


def _legend_height(n_rows: int) -> float:
    """Height in inches of a legend with a title and ``n_rows`` rows of entries."""
    return 0.12 + _LINE * (n_rows + 1)


def _ordered(values: pd.Series, order: Sequence[str]) -> list[str]:
    """Distinct values, those named in ``order`` first and in that order."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def _dodged_points(
    ax: mpl.axes.Axes,
    frame: pd.DataFrame,
    *,
    rows: Sequence[str],
    value: str,
    below: str,
    above: str,
    group: str,
    styles: Mapping[str, Mapping[str, object]],
    markers: Mapping[str, str] | None = None,
    marker_col: str | None = None,
    labels: bool = True,
) -> None:
    """Points with horizontal error bars, one row per label, groups dodged vertically.

    ``labels=False`` hides the row labels (a panel to the left shows them).
    """
    if (markers is None) != (marker_col is None):
        raise ValueError("give markers and marker_col together, or neither")
    marker_of: Mapping[str, str] = {} if markers is None else markers
    present = set(frame[group])
    keys: list = [m for m in styles if m in present]
    if marker_col is not None:
        pairs = set(frame[[group, marker_col]].itertuples(index=False, name=None))
        keys = [(m, k) for m in keys for k in marker_of if (m, k) in pairs]
    step = 0.6 / max(len(keys), 1)
    positions = {label: i for i, label in enumerate(rows)}
    for j, key in enumerate(keys):
        if marker_col is None:
            sub = frame[frame[group] == key]
            style = dict(styles[key])
        else:
            sub = frame[(frame[group] == key[0]) & (frame[marker_col] == key[1])]
            style = dict(styles[key[0]])
            style["marker"] = marker_of[key[1]]
        y = np.array([positions[p] for p in sub["parameter"]]) + (j - (len(keys) - 1) / 2) * step
        ax.errorbar(
            sub[value].to_numpy(float),
            y,
            xerr=sub[[below, above]].to_numpy(float).T,
            fmt=str(style["marker"]),
            color=str(style["color"]),
            markersize=5,
            capsize=2,
            linewidth=1.2,
        )
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(axis="y", labelleft=labels)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    # A fixed number of x ticks: the default asks every axis how many labels would fit.
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(nbins=4))
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _padded(low: float, high: float) -> tuple[float, float]:
    """``(low, high)`` widened by 5% on each side (by 1e-3 when they are equal)."""
    pad = 0.05 * (high - low) or 1e-3
    return low - pad, high + pad


def plot_bias(summary: pd.DataFrame, *, z: float = 1.96, col_wrap: int = 3) -> Figure:
    """Forest plot of bias with Monte Carlo error bars.

    One panel per condition and parameter type (conditions first), ``col_wrap`` panels
    to a row. Panels of one parameter type share their x scale, so conditions can be
    compared by eye; weights and covariances live on different scales and do not. Each
    row of a panel is one parameter; methods are dodged vertically and coloured by role.
    The figure is sized to its panels: pass one parameter type (or a few conditions) at a
    time to keep a large study's figures readable.

    Parameters
    ----------
    summary : DataFrame
        One row per condition, method and parameter with columns ``condition`` (str),
        ``method`` (str), ``kind`` (parameter type, e.g. ``"mean"``), ``parameter`` (str,
        e.g. ``"mean[1,0]"``), ``bias`` and ``bias_mcse``.
    z : float, default 1.96
        Error bars span ``bias +- z * bias_mcse``.
    col_wrap : int, default 3
        At most this many panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        Panel titles name the condition and, when the summary has several parameter
        types, the type; with one type the figure's title names it.
    """
    _require_columns(summary, ["condition", "method", "kind", "parameter", "bias", "bias_mcse"])
    frame = summary.assign(halfwidth=z * summary["bias_mcse"])
    frame["below"] = frame["above"] = frame["halfwidth"]
    conditions = list(frame["condition"].drop_duplicates())
    kinds = _ordered(frame["kind"], ("weight", "mean", "covariance"))
    styles = _method_styles(_ordered(frame["method"], ROLES))
    panels = [
        (condition, kind)
        for condition in conditions
        for kind in kinds
        if ((frame["condition"] == condition) & (frame["kind"] == kind)).any()
    ]
    # as few rows as col_wrap allows, filled evenly: 4 panels make 2 x 2, not 3 + 1
    n_cols = -(-len(panels) // -(-len(panels) // col_wrap))
    n_params = frame.groupby(["condition", "kind"])["parameter"].nunique()
    per_row = _ROW_BASE + _ROW_PER_MARKER * len(styles)
    heights = [
        per_row * max(2, *(int(n_params[p]) for p in panels[i : i + n_cols]))
        for i in range(0, len(panels), n_cols)
    ]
    title_lines = int(len(conditions) > 1) + int(len(kinds) > 1)
    label_width = _text_width(frame["parameter"].unique()) + 0.12
    fig, axes = _panel_grid(
        heights,
        n_cols,
        width=3.2,
        left=label_width + 0.1,
        right=0.2,
        top=0.15 + _LINE * title_lines + (_LINE + 0.1 if len(kinds) == 1 else 0.0),
        bottom=_TICKS + _LINE + _legend_height(1) + 0.1,  # the methods fit one row
        gap_h=_TICKS + _LINE * title_lines + 0.1,
        gap_w=label_width + 0.25,
    )
    # One x range per parameter type, with zero (no bias) always in view. A study of one
    # replication has no MCSE (NaN): its bars are absent and must not blank the range.
    ends = frame.assign(
        low=frame["bias"] - frame["below"].fillna(0.0),
        high=frame["bias"] + frame["above"].fillna(0.0),
    )
    limits = {
        kind: _padded(float(np.nanmin([*g["low"], 0.0])), float(np.nanmax([*g["high"], 0.0])))
        for kind, g in ends.groupby("kind")
    }
    for ax, (condition, kind) in zip(axes.flat, panels, strict=False):
        sub = frame[(frame["condition"] == condition) & (frame["kind"] == kind)]
        rows = sorted(set(sub["parameter"]), key=parameter_sort_key)
        ax.axvline(0.0, color=ROLE_COLORS["truth"], linewidth=0.8)
        _dodged_points(
            ax,
            sub,
            rows=rows,
            value="bias",
            below="below",
            above="above",
            group="method",
            styles=styles,
        )
        ax.set_xlim(limits[kind])
        title = [condition] * (len(conditions) > 1) + [kind] * (len(kinds) > 1)
        ax.set_title("\n".join(title), fontsize=8, loc="left", y=1.0)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    if len(kinds) == 1:
        heading = f"{kinds[0]}" + (f": {conditions[0]}" if len(conditions) == 1 else "")
        fig.text(
            0.01, 1 - 0.1 / fig.get_figheight(), heading, va="top", fontsize=10, fontweight="bold"
        )
    _bottom_legend(
        fig,
        [_method_handle(m, s) for m, s in styles.items()],
        title=f"error bars: ±{z:g} MCSE",
        n_cols=len(styles),
        xlabel="bias (estimate - truth)",
    )
    return fig


def plot_coverage(summary: pd.DataFrame, *, z: float = 1.96) -> Figure:
    """Coverage of credible and confidence intervals, with the nominal line and a Monte Carlo band.

    One panel per condition (rows) and nominal level (columns); the panels of a row list
    the same parameters, named in the first one. Each interval method has its own marker
    (a posterior's ``central`` and ``hdi``, EM's ``sandwich-wald``,
    ``...-bootstrap-percentile`` ...), in its fit's colour (EM vermillion, Bayes blue).
    The shaded band is
    ``nominal +- z * sqrt(nominal * (1 - nominal) / n_sim)``: where coverage would fall
    with probability about 95% if the intervals were exactly calibrated. It uses the
    smallest ``n_sim`` in the panel, so it is the widest band that applies. The figure is
    sized to its panels: pass one condition at a time to keep a large study's figures
    readable.

    Parameters
    ----------
    summary : DataFrame
        One row per condition, method, parameter, interval kind and level with columns
        ``condition``, ``method``, ``parameter``, ``interval`` (e.g. ``"central"``,
        ``"hdi"``), ``level`` (nominal coverage in (0, 1)), ``coverage``,
        ``coverage_mcse`` and ``n_sim`` (replications behind the estimate).
    z : float, default 1.96

    Returns
    -------
    matplotlib.figure.Figure
        Each row's title (the condition) is a figure text above its first panel.
    """
    _require_columns(
        summary,
        [
            "condition",
            "method",
            "parameter",
            "interval",
            "level",
            "coverage",
            "coverage_mcse",
            "n_sim",
        ],
    )
    frame = summary.assign(halfwidth=z * summary["coverage_mcse"])
    # A proportion lies in [0, 1]: the error bars stop there.
    frame["below"] = np.minimum(frame["halfwidth"], frame["coverage"])
    frame["above"] = np.minimum(frame["halfwidth"], 1.0 - frame["coverage"])
    conditions = list(frame["condition"].drop_duplicates())
    levels = sorted(frame["level"].unique())
    styles = _method_styles(_ordered(frame["method"], ROLES))
    kinds = _ordered(frame["interval"], ("central", "hdi"))
    kind_markers = {
        kind: _INTERVAL_MARKERS[i % len(_INTERVAL_MARKERS)] for i, kind in enumerate(kinds)
    }
    rows_of = {
        condition: sorted(set(group["parameter"]), key=parameter_sort_key)
        for condition, group in frame.groupby("condition", sort=False)
    }
    n_markers = len(frame[["method", "interval"]].drop_duplicates())
    per_row = 0.6 * (_ROW_BASE + _ROW_PER_MARKER * n_markers) + 0.05
    handles: list[Artist] = [Patch(color=str(s["color"]), label=m) for m, s in styles.items()]
    handles += [
        Line2D([], [], color="#555555", linestyle="", marker=mk, label=kind)
        for kind, mk in kind_markers.items()
    ]
    handles += [
        Line2D([], [], color=ROLE_COLORS["truth"], label="nominal"),
        Patch(color="#e6e6e6", label=f"Monte Carlo band (±{z:g} SE)"),
    ]
    legend_cols = min(len(handles), 4)
    label_width = _text_width(frame["parameter"].unique()) + 0.12
    heights = [per_row * max(len(rows_of[c]), 2) for c in conditions]
    fig, axes = _panel_grid(
        heights,
        len(levels),
        # four levels fit the report's column (about 12 inches) side by side
        width=min(3.6, 10.8 / len(levels)),
        left=label_width + 0.1,
        right=0.2,
        top=0.15 + 2 * _LINE,
        bottom=_TICKS + _LINE + _legend_height(-(-len(handles) // legend_cols)) + 0.1,
        gap_h=_TICKS + 2 * _LINE + 0.15,
        gap_w=0.2,
    )
    # One x range per level, so that the conditions in a column can be compared by eye.
    left = {
        level: max(0.0, min(float(low.min()), level - 0.15)) - 0.03
        for level, low in (frame["coverage"] - frame["below"]).groupby(frame["level"])
    }
    for i, condition in enumerate(conditions):
        for j, level in enumerate(levels):
            ax = axes[i, j]
            sub = frame[(frame["condition"] == condition) & (frame["level"] == level)]
            if len(sub):
                n_sim = int(sub["n_sim"].min())
                band = z * np.sqrt(level * (1 - level) / n_sim)
                ax.axvspan(
                    max(level - band, 0.0), min(level + band, 1.0), color="#e6e6e6", linewidth=0
                )
            ax.axvline(level, color=ROLE_COLORS["truth"], linewidth=1.0)
            _dodged_points(
                ax,
                sub,
                rows=rows_of[condition],
                value="coverage",
                below="below",
                above="above",
                group="method",
                styles=styles,
                markers=kind_markers,
                marker_col="interval",
                labels=j == 0,
            )
            ax.set_xlim(left[level], 1.03)
            ax.set_title(f"nominal {level:.0%}", fontsize=8, y=1.0)
        # the row's title: above the panel titles, at the left edge of the figure
        top = axes[i, 0].get_position().y1
        fig.text(
            0.01,
            top + (_LINE + 0.08) / fig.get_figheight(),
            condition,
            va="bottom",
            fontsize=9,
            fontweight="bold",
        )
    _bottom_legend(
        fig,
        handles,
        title=f"error bars: ±{z:g} MCSE",
        n_cols=legend_cols,
        xlabel="coverage of the truth",
    )
    return fig


class EMInterval(NamedTuple):
    """EM confidence intervals drawn under the posterior densities.

    Attributes
    ----------
    lower, upper : Dataset
        Bounds with the variables and ``param_dims`` of the posterior (no chain or draw).
    label : str
        What they are, for the legend, e.g. ``"EM sandwich-wald 95%"``.
    """

    lower: xr.Dataset
    upper: xr.Dataset
    label: str


class _FlatLabeller(BaseLabeller):
    """Titles like ``means[1, 0]`` on one line instead of the name over the coordinates."""

    def make_label_vert(self, var_name, sel, isel):  # noqa: D102
        return self.make_label_flat(var_name, sel, isel)


def plot_posterior_vs_point(
    posterior: xr.Dataset,
    *,
    em: xr.Dataset | None,
    truth: xr.Dataset | None,
    em_interval: EMInterval | None = None,
    var_names: Sequence[str] | None = None,
    col_wrap: int = 4,
    ci_kind: str = "hdi",
    ci_prob: float = 0.94,
    labeller: BaseLabeller | None = None,
) -> az.PlotCollection:
    """Marginal posterior density of each parameter, with lines at the EM estimate and truth.

    Drawn with ArviZ: ``arviz.plot_dist`` for the densities (with the posterior mean and
    the ``ci_prob`` credible interval of kind ``ci_kind`` under each curve; both are passed
    explicitly, so the legend states what is drawn whatever ArviZ's settings say) and
    ``arviz.add_lines`` for the reference lines.

    Parameters
    ----------
    posterior : Dataset
        Draws with dims ``(chain, draw, *param_dims)`` for every variable, already
        relabelled to match the truth.
    em, truth : Dataset or None
        Point values with the same variables and ``param_dims`` (no chain or draw).
        ``None`` leaves that line out (real data have no truth).
    em_interval : EMInterval, optional
        A confidence interval around the EM estimate, drawn as a vermillion bar near the
        bottom of each panel, above the posterior's credible-interval bar. Needs ``em``.
    var_names : sequence of str, optional
        Variables to draw; default all of ``posterior``.
    col_wrap : int, default 4
        Panels per row.
    ci_kind : {'hdi', 'eti'}, default 'hdi'
        Highest-density or equal-tailed interval.
    ci_prob : float, default 0.94
        Its probability.
    labeller : arviz_base.labels.BaseLabeller, optional
        Makes the panel titles; default ``name[coords]`` on one line, e.g. ``mean[1, 0]``.
        With one variable whose coordinate values already name the scalars (e.g.
        ``"mean[1,0]"``), ``arviz_base.labels.NoVarLabeller()`` shows just those.

    Returns
    -------
    arviz_plots.PlotCollection
        Its ``viz["figure"]`` holds the matplotlib figure.
    """
    # cast: xarray types variable names as Hashable; ours are strings.
    var_names = cast(list[str], list(posterior.data_vars)) if var_names is None else list(var_names)
    posterior = posterior[var_names]
    n_panels = sum(
        int(np.prod([posterior[v].sizes[d] for d in posterior[v].dims[2:]])) for v in var_names
    )
    n_cols = min(col_wrap, n_panels)
    n_rows = -(-n_panels // n_cols)
    bayes = ROLE_COLORS["bayes"]
    pc = az.plot_dist(
        xr.DataTree.from_dict({"posterior": posterior}),
        var_names=var_names,
        point_estimate="mean",
        ci_kind=ci_kind,
        ci_prob=ci_prob,
        labeller=_FlatLabeller() if labeller is None else labeller,
        col_wrap=n_cols,
        visuals={
            "dist": {"color": bayes},
            "credible_interval": {"color": bayes},
            "point_estimate": {"color": bayes},
            "point_estimate_text": False,
            "remove_axis": False,
        },
        figure_kwargs={"figsize": (2.6 * n_cols, 2.0 * n_rows + 0.75)},
    )
    refs = [(role, ds) for role, ds in (("em", em), ("truth", truth)) if ds is not None]
    if refs:
        ref_ds = xr.concat(
            [ds[var_names] for _, ds in refs], dim=pd.Index([r for r, _ in refs], name="ref_dim")
        )
        az.add_lines(
            pc,
            ref_ds,
            aes_by_visuals={"ref_line": ["color", "linestyle"]},
            color=[ROLE_COLORS[r] for r, _ in refs],
            linestyle=[ROLE_LINESTYLES[r] for r, _ in refs],
        )
    if em_interval is not None:
        if em is None:
            raise ValueError("em_interval needs em, the estimate it belongs to")
        lines = pc.viz["ref_line"]
        for var in var_names:
            artists = lines[var].sel(ref_dim="em").values.ravel()
            lows = em_interval.lower[var].values.ravel()
            highs = em_interval.upper[var].values.ravel()
            for artist, low, high in zip(artists, lows, highs, strict=True):
                ax = artist.axes
                # x in data units, y in axes units: the bar sits just above the axis
                ax.plot(
                    [low, high],
                    [0.07, 0.07],
                    transform=ax.get_xaxis_transform(),
                    color=ROLE_COLORS["em"],
                    linewidth=2.0,
                    marker="|",
                    markersize=6,
                )
    fig = pc.viz["figure"].item()
    for ax in fig.axes:
        ax.set_yticks([])
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(nbins=4))
        ax.tick_params(labelsize=8)
        # a fixed title position: matplotlib otherwise measures the axis on every draw
        ax.set_title(ax.get_title(), fontsize=9, y=1.0)
    handles = [
        Line2D(
            [],
            [],
            color=bayes,
            label=f"posterior density (dot: mean, bar: {ci_prob:.0%} {ci_kind.upper()})",
        ),
        *[
            Line2D(
                [],
                [],
                color=ROLE_COLORS[r],
                linestyle=ROLE_LINESTYLES[r],
                label="EM estimate" if r == "em" else "truth",
            )
            for r, _ in refs
        ],
    ]
    if em_interval is not None:
        handles.append(
            Line2D([], [], color=ROLE_COLORS["em"], lw=2.0, marker="|", label=em_interval.label)
        )
    _figure_legend(fig, handles, n_cols=len(handles))
    # room for the titles above and the tick labels below each panel
    _fixed_margins(fig, left=0.2, top=0.3, bottom=0.65, gap_w=0.3, gap_h=0.6)
    return pc


def _fit_label(role: str) -> str:
    return {
        "truth": "truth",
        "em": "EM estimate",
        "bayes": "Bayes posterior mean",
        "advi": "ADVI posterior mean",
    }[role]


def _marginal(params: MixtureParams, dims: Sequence[int]) -> MixtureParams:
    """The mixture of the coordinates ``dims``: Gaussian marginals keep the sub-blocks."""
    idx = np.asarray(dims)
    return MixtureParams(
        params.weights, params.means[:, idx], params.covariances[:, idx[:, None], idx[None, :]]
    )


def _draw_density_1d(
    ax: mpl.axes.Axes, x: np.ndarray, fits: Sequence[tuple[str, MixtureParams]]
) -> None:
    grid = np.linspace(x.min(), x.max(), 400)
    span = grid[-1] - grid[0]
    grid = np.linspace(grid[0] - 0.1 * span, grid[-1] + 0.1 * span, 400)[:, None]
    ax.hist(x, bins="auto", density=True, color=ROLE_COLORS["data"], alpha=0.45, linewidth=0)
    for role, params in fits:
        color, ls = ROLE_COLORS[role], ROLE_LINESTYLES[role]
        ax.plot(grid[:, 0], np.exp(log_prob(grid, params)), color=color, linestyle=ls, lw=1.8)
        # Each weighted component, thin: shows which part of the mixture a bump belongs to.
        ax.plot(
            grid[:, 0],
            np.exp(params.weighted_log_prob(grid)),
            color=color,
            linestyle=ls,
            lw=0.8,
            alpha=0.7,
        )


def _ellipse(mean: np.ndarray, cov: np.ndarray, *, mass: float, **kwargs: object) -> Ellipse:
    """The contour of a 2-D Gaussian that holds ``mass`` of its probability."""
    values, vectors = np.linalg.eigh(cov)
    radius = np.sqrt(stats.chi2.ppf(mass, df=2) * values)
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    centre = (float(mean[0]), float(mean[1]))
    return Ellipse(centre, 2 * radius[1], 2 * radius[0], angle=angle, fill=False, **kwargs)


def _add_component_ellipses(ax: mpl.axes.Axes, params: MixtureParams, **style: object) -> None:
    """Draw the ``ELLIPSE_MASS`` contour of every component of a 2-D mixture on ``ax``."""
    for mean, cov in zip(params.means, params.covariances, strict=True):
        ax.add_patch(_ellipse(mean, cov, mass=ELLIPSE_MASS, **style))


def _draw_ellipses_2d(
    ax: mpl.axes.Axes,
    X: np.ndarray,
    fits: Sequence[tuple[str, MixtureParams]],
    *,
    point_size: float,
) -> None:
    ax.scatter(X[:, 0], X[:, 1], s=point_size, color=ROLE_COLORS["data"], alpha=0.5, lw=0)
    for role, params in fits:
        color, ls = ROLE_COLORS[role], ROLE_LINESTYLES[role]
        _add_component_ellipses(ax, params, edgecolor=color, linestyle=ls, linewidth=1.6)
        ax.scatter(params.means[:, 0], params.means[:, 1], color=color, marker="x", s=30, lw=1.5)


def plot_data_fit(
    X: np.ndarray,
    *,
    truth: MixtureParams | None = None,
    em: MixtureParams | None = None,
    bayes: MixtureParams | None = None,
    advi: MixtureParams | None = None,
    feature_names: Sequence[str] | None = None,
    max_features: int = 4,
) -> Figure:
    """The data with the true, EM and posterior-mean mixtures drawn over them.

    - d = 1: a density histogram, each mixture's density (thick) and its weighted
      components (thin).
    - d = 2: a scatter plot with one ellipse per component holding ``ELLIPSE_MASS`` (90%)
      of its probability, and a cross at its mean.
    - d > 2: pairwise projections (ellipses of the marginal covariances below the
      diagonal, marginal densities on it) for the first ``max_features`` features.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    truth, em, bayes, advi : MixtureParams or None
        Fits with ``n_features`` features; ``None`` ones are left out. ``bayes`` and
        ``advi`` are posterior means.
    feature_names : sequence of str, optional
        Axis labels; default ``x1, x2, ...``.
    max_features : int, default 4
        The pairwise grid shows at most this many features.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``X`` is not 2-D or a fit has a different number of features.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n_samples, n_features), got {X.shape}")
    n, d = X.shape
    fits = [
        (role, params)
        for role, params in (("truth", truth), ("em", em), ("bayes", bayes), ("advi", advi))
        if params is not None
    ]
    for role, params in fits:
        if params.n_features != d:
            raise ValueError(
                f"{role} has {params.n_features} features but X has {d}; they must match"
            )
    names = [f"x{j + 1}" for j in range(d)] if feature_names is None else list(feature_names)
    point_size = float(np.clip(2000 / n, 1.5, 12))
    handles: list[Artist] = [
        Line2D(
            [], [], color=ROLE_COLORS[r], linestyle=ROLE_LINESTYLES[r], lw=1.8, label=_fit_label(r)
        )
        for r, _ in fits
    ]
    if d == 1:
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        _fixed_margins(fig, left=0.75, bottom=0.55)
        _draw_density_1d(ax, X[:, 0], fits)
        ax.set_xlabel(names[0])
        ax.set_ylabel("density")
        handles.append(Patch(color=ROLE_COLORS["data"], alpha=0.45, label=f"data (n={n})"))
        ax.legend(handles=handles, frameon=False, fontsize=8)
        return fig
    if d == 2:
        fig, ax = plt.subplots(figsize=(5.4, 5.0))
        _fixed_margins(fig, left=0.65, bottom=0.55)
        _draw_ellipses_2d(ax, X, fits, point_size=point_size)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_aspect("equal", adjustable="datalim")
        handles.append(
            Line2D([], [], color=ROLE_COLORS["data"], marker="o", ls="", label=f"data (n={n})")
        )
        ax.legend(
            handles=handles,
            title=f"ellipses hold {ELLIPSE_MASS:.0%} of a component",
            frameon=False,
            fontsize=8,
            title_fontsize=8,
        )
        return fig
    shown = min(d, max_features)
    fig, axes = plt.subplots(shown, shown, figsize=(2.3 * shown, 2.3 * shown + 0.6), squeeze=False)
    _fixed_margins(fig, left=0.6, bottom=1.05, gap_w=0.35, gap_h=0.35)
    for i in range(shown):
        for j in range(shown):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                _draw_density_1d(ax, X[:, i], [(r, _marginal(p, [i])) for r, p in fits])
                ax.set_yticks([])
            else:
                _draw_ellipses_2d(
                    ax,
                    X[:, [j, i]],
                    [(r, _marginal(p, [j, i])) for r, p in fits],
                    point_size=point_size,
                )
            if i == shown - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
    title = f"ellipses hold {ELLIPSE_MASS:.0%} of a component"
    if shown < d:
        title += f"; first {shown} of {d} features"
    _figure_legend(fig, handles, n_cols=len(handles), title=title)
    return fig


def plot_em_trace(
    lower_bounds: np.ndarray,
    *,
    snapshots: Sequence[tuple[int, MixtureParams]] = (),
    X: np.ndarray | None = None,
    truth: MixtureParams | None = None,
    n_shown: int = 5,
) -> Figure:
    """EM's lower bound per iteration, and its components moving toward the final fit.

    Parameters
    ----------
    lower_bounds : ndarray of shape (n_iter,)
        Per-sample mean lower bound after each iteration (``lower_bounds_``).
    snapshots : sequence of (iteration, MixtureParams)
        Parameters after the given iterations (from ``history_``), in iteration order.
        Empty draws only the lower bound panel.
    X : ndarray of shape (n_samples, n_features), optional
        The data, drawn under the components.
    truth : MixtureParams, optional
    n_shown : int, default 5
        At most this many snapshots are drawn, spread evenly and always including the
        first and the last; earlier ones are fainter.

    Returns
    -------
    matplotlib.figure.Figure
    """
    lower_bounds = np.asarray(lower_bounds, dtype=float)
    if lower_bounds.ndim != 1 or lower_bounds.size == 0:
        raise ValueError(
            f"lower_bounds must have shape (n_iter,) with n_iter >= 1, got {lower_bounds.shape}"
        )
    snapshots = list(snapshots)
    n_panels = 2 if snapshots else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(4.6 * n_panels, 3.6), squeeze=False)
    _fixed_margins(fig, left=1.1, top=0.3, bottom=0.55, gap_w=0.85)
    ax = axes[0, 0]
    iterations = np.arange(1, lower_bounds.size + 1)
    ax.plot(iterations, lower_bounds, color=ROLE_COLORS["em"], marker="o", markersize=3, lw=1.4)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("lower bound (mean log-likelihood)")
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    ax.grid(color="#eeeeee", linewidth=0.6)
    if not snapshots:
        return fig
    pick = np.unique(np.linspace(0, len(snapshots) - 1, min(n_shown, len(snapshots))).round())
    chosen = [snapshots[int(i)] for i in pick]
    alphas = np.linspace(0.25, 1.0, len(chosen))
    ax = axes[0, 1]
    d = chosen[0][1].n_features
    em_color = ROLE_COLORS["em"]
    if d == 1:
        lo = min(p.means.min() - 3 * np.sqrt(p.covariances.max()) for _, p in chosen)
        hi = max(p.means.max() + 3 * np.sqrt(p.covariances.max()) for _, p in chosen)
        if X is not None:
            lo, hi = min(lo, X.min()), max(hi, X.max())
            ax.hist(X[:, 0], bins="auto", density=True, color=ROLE_COLORS["data"], alpha=0.4)
        grid = np.linspace(lo, hi, 400)[:, None]
        for (_, params), alpha in zip(chosen, alphas, strict=True):
            ax.plot(grid[:, 0], np.exp(log_prob(grid, params)), color=em_color, alpha=alpha)
        if truth is not None:
            ax.plot(grid[:, 0], np.exp(log_prob(grid, truth)), color=ROLE_COLORS["truth"], lw=1)
        ax.set_xlabel("x1")
        ax.set_ylabel("density")
    else:
        if X is not None:
            ax.scatter(X[:, 0], X[:, 1], s=3, color=ROLE_COLORS["data"], alpha=0.4, lw=0)
        for (_, params), alpha in zip(chosen, alphas, strict=True):
            params = _marginal(params, [0, 1])
            _add_component_ellipses(ax, params, edgecolor=em_color, alpha=alpha, linewidth=1.4)
            ax.scatter(*params.means.T, color=em_color, alpha=alpha, marker="x", s=20)
        if truth is not None:
            _add_component_ellipses(
                ax, _marginal(truth, [0, 1]), edgecolor=ROLE_COLORS["truth"], linewidth=1.0
            )
        ax.autoscale_view()
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    handles = [
        Line2D([], [], color=em_color, alpha=float(a), label=f"EM after iteration {it}")
        for (it, _), a in zip(chosen, alphas, strict=True)
    ]
    if truth is not None:
        handles.append(Line2D([], [], color=ROLE_COLORS["truth"], label="truth"))
    ax.legend(handles=handles, frameon=False, fontsize=7)
    ax.set_title("components moving", fontsize=10, y=1.0)
    return fig


def _method_handle(method: str, style: Mapping[str, object]) -> Line2D:
    return Line2D([], [], color=str(style["color"]), marker=str(style["marker"]), label=method)


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the table lacks the columns {missing}; it has {list(frame.columns)} and needs "
            f"{list(columns)}"
        )


# ------------------------------------------------------------------ choosing K
#: One colour and marker per K-selection criterion (Okabe-Ito, as the roles above).
CRITERION_STYLES: dict[str, dict[str, str]] = {
    "bic": {"color": "#D55E00", "marker": "o"},
    "icl": {"color": "#CC79A7", "marker": "s"},
    "aic": {"color": "#E69F00", "marker": "^"},
    "loo": {"color": "#0072B2", "marker": "D"},
    "loo_stacking": {"color": "#56B4E9", "marker": "v"},
    "sparse": {"color": "#009E73", "marker": "P"},
}


def plot_selection_accuracy(
    accuracy: pd.DataFrame, *, factor: str, group: str | None = None, z: float = 1.96
) -> Figure:
    """Share of replications choosing the true K against a design factor, per criterion.

    One panel per criterion; x is ``factor`` (log scale when every level is positive and
    they span more than a factor of 10); one line per level of ``group``.

    Parameters
    ----------
    accuracy : DataFrame
        One row per condition and criterion with columns ``criterion``, ``correct``,
        ``correct_mcse``, ``factor`` and (if given) ``group``, e.g.
        :func:`workbench.report.tables.selection_accuracy` joined with the scenarios.
    factor : str
        The column on the x axis (e.g. ``"overlap"``).
    group : str, optional
        A second design factor; one line per level.
    z : float, default 1.96
        Error bars span ``correct +- z * correct_mcse``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    needed = ["criterion", "correct", "correct_mcse", factor] + ([group] if group else [])
    _require_columns(accuracy, needed)
    criteria = [c for c in CRITERION_STYLES if c in set(accuracy["criterion"])]
    criteria += sorted(set(accuracy["criterion"]) - set(criteria))
    fig, axes = plt.subplots(
        1, len(criteria), figsize=(3.2 * len(criteria), 3.2 + 0.6 * bool(group)), sharey=True
    )
    axes = np.atleast_1d(axes)
    _fixed_margins(fig, left=0.7, top=0.3, bottom=0.55 + 0.6 * bool(group), gap_w=0.2)
    levels = sorted(accuracy[group].unique()) if group else [None]
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, max(len(levels), 1)))
    x_all = accuracy[factor].astype(float)
    log_x = bool((x_all > 0).all() and x_all.max() / x_all.min() > 10)
    for ax, criterion in zip(axes, criteria, strict=True):
        sub = accuracy[accuracy["criterion"] == criterion]
        marker = CRITERION_STYLES.get(criterion, {"marker": "o"})["marker"]
        for level, shade in zip(levels, shades, strict=True):
            rows = sub if level is None else sub[sub[group] == level]
            rows = rows.sort_values(factor)
            ax.errorbar(
                rows[factor].astype(float),
                rows["correct"],
                yerr=z * rows["correct_mcse"],
                color=shade,
                marker=marker,
                capsize=3,
                label=None if level is None else f"{group} = {level:g}",
            )
        if log_x:
            ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(criterion.upper() if len(criterion) <= 3 else criterion, fontsize=10, y=1.0)
        ax.set_xlabel(factor)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share choosing the true K")
    if group:
        handles, _ = axes[0].get_legend_handles_labels()
        _figure_legend(fig, handles, n_cols=len(levels), title=f"error bars: ±{z:g} MCSE")
    return fig


def plot_selection_curves(scores: pd.DataFrame, *, true_k: int) -> Figure:
    """The criteria of one replication against K: BIC and ICL (EM), and LOO elpd with SE.

    Parameters
    ----------
    scores : DataFrame
        The ``selection_scores`` rows of one task (``method, n_components,
        covariance_type, criterion, value``).
    true_k : int
        Marked by a vertical line.

    Returns
    -------
    matplotlib.figure.Figure
        One panel for the EM criteria (lower is better, per covariance type) and, when the
        task has Bayesian per-K fits, one for PSIS-LOO elpd (higher is better) with ±1 SE
        bars and the count of high Pareto k at each K.
    """
    _require_columns(scores, ["method", "n_components", "covariance_type", "criterion", "value"])
    em = scores[(scores["method"] == "em") & scores["criterion"].isin(("bic", "icl"))]
    bayes = scores[scores["method"] == "bayes"]
    panels = 1 + int(not bayes.empty)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.3))
    axes = np.atleast_1d(axes)
    _fixed_margins(fig, left=0.9, right=0.35, top=0.3, bottom=0.55, gap_w=0.95)
    ax = axes[0]
    styles = ("-", "--", ":", "-.")
    for i, (cov, rows) in enumerate(em.groupby("covariance_type", sort=False)):
        for criterion in ("bic", "icl"):
            line = rows[rows["criterion"] == criterion].sort_values("n_components")
            ax.plot(
                line["n_components"],
                line["value"],
                linestyle=styles[i % len(styles)],
                label=f"{criterion.upper()} ({cov})",
                **CRITERION_STYLES[criterion],
            )
    ax.axvline(true_k, color=ROLE_COLORS["truth"], linewidth=0.8)
    ax.set_xlabel("K")
    ax.set_ylabel("criterion (lower is better)")
    ax.set_title("EM: BIC and ICL", fontsize=10, y=1.0)
    ax.legend(fontsize=8, frameon=False)
    if not bayes.empty:
        ax = axes[1]
        wide = bayes.pivot_table(
            index="n_components", columns="criterion", values="value", aggfunc="first"
        ).sort_index()
        ax.errorbar(
            wide.index,
            wide["elpd_loo"],
            yerr=wide["se"],
            capsize=3,
            **CRITERION_STYLES["loo"],
        )
        for k, high in wide["n_high_pareto_k"].items():
            if high > 0:
                ax.annotate(
                    f"k̂ high: {int(high)}",
                    (k, wide.at[k, "elpd_loo"]),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize=7,
                )
        ax.axvline(true_k, color=ROLE_COLORS["truth"], linewidth=0.8)
        ax.set_xlabel("K")
        ax.set_ylabel("PSIS-LOO elpd (higher is better)")
        ax.set_title("Bayes: elpd ± 1 SE", fontsize=10, y=1.0)
    return fig
