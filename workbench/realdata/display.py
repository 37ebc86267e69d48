"""Plain-text display of a real-data fit for the terminal."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from workbench.realdata.fit import RealDataFit

__all__ = ["format_fit"]


def format_fit(result: RealDataFit, X: np.ndarray) -> str:
    """A plain-text report of :func:`fit_data` for the terminal.

    Parameters
    ----------
    result : RealDataFit
    X : ndarray of shape (n_samples, n_features)
        The data that was fitted.

    Returns
    -------
    str
    """
    n, d = X.shape
    k = result.em.n_components
    diag = result.bayes.diagnostics
    model = result.em_model
    lines = [
        f"data: {n} observations, {d} features; {k} components",
        f"EM: {'converged' if model.converged_ else 'NOT converged'} after {model.n_iter_} "
        f"iterations ({result.em_seconds:.2f} s); BIC = {model.bic(X):.2f} (lower is better)",
        f"Bayes ({diag.get('sampler', '?')}): {result.bayes_seconds:.1f} s; "
        f"max r_hat = {_num(diag.get('max_r_hat'))}, min ESS bulk = "
        f"{_num(diag.get('min_ess_bulk'), '.0f')}, divergences = {diag.get('n_divergences', '?')}"
        f", label switching = {'yes' if diag.get('label_switching') else 'no'}",
        "",
        "mean log-likelihood per observation:",
        f"  at the EM estimate        {result.log_likelihood['em']:.4f}",
        f"  at the posterior mean     {result.log_likelihood['posterior_mean']:.4f}",
        "",
        f"EM estimate with its {_se_label(result.se_method)} SE and {100 * result.level:g}% "
        "interval against the posterior mean, SD and central interval:",
    ]
    if result.se_error is not None:
        lines.append(f"  EM standard errors are not available: {result.se_error}")
    table = result.comparison.copy()
    table["em_inside"] = table["em_inside"].map({True: "yes", False: "NO"})
    table = table.rename(
        columns={
            "em_se": "EM se",
            "em_lower": "EM lower",
            "em_upper": "EM upper",
            "posterior_mean": "post. mean",
            "posterior_sd": "post. sd",
            "lower": "post. lower",
            "upper": "post. upper",
            "em_inside": "EM inside",
        }
    )
    lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines)


def _se_label(se_method: str) -> str:
    if se_method == "bootstrap":
        return "bootstrap (SD of 999 refits; percentile interval)"
    return f"{se_method} (Wald interval)"


def _num(value: object, fmt: str = ".3f") -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return format(value, fmt)
    return "?"
