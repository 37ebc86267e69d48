"""Choosing K on real data: what ``workbench fit DATA.csv --components 1-6`` prints first.

:func:`choose_components` runs :func:`workbench.selection.select_components` over every
covariance type (mclust's table of BIC by model and K), optionally the Bayesian fit at every
K for PSIS-LOO (:func:`workbench.selection.compare_loo`) and the sparse overfitted mixture
(:func:`workbench.bayes.sparse.fit_sparse_mixture`); :func:`format_choice` prints them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.mixture import COVARIANCE_TYPES
from workbench.selection import LooComparison, SelectionResult, select_components

if TYPE_CHECKING:
    from workbench.bayes.sparse import SparseMixtureResult

__all__ = ["ComponentChoice", "choose_components", "format_choice"]

#: mclust's names of our covariance types, for readers who know its tables.
MCLUST_NAMES: dict[str, str] = {"full": "VVV", "tied": "EEE", "diag": "VVI", "spherical": "VII"}


@dataclass(frozen=True)
class ComponentChoice:
    """Everything :func:`choose_components` computed.

    Attributes
    ----------
    em : SelectionResult
        EM fits at every (K, covariance type) with BIC, ICL, AIC and each one's choice.
    loo : LooComparison or None
        PSIS-LOO and stacking across the Bayesian fits at every K (``covariance_type``).
    loo_failures : dict of int to str
        K whose Bayesian fit failed, with the error.
    sparse : SparseMixtureResult or None
        The sparse overfitted mixture's posterior over the number of non-empty components.
    covariance_type : str
        The covariance type of the Bayesian fits.
    """

    em: SelectionResult
    loo: LooComparison | None
    loo_failures: dict[int, str]
    sparse: SparseMixtureResult | None
    covariance_type: str

    @property
    def choices(self) -> dict[str, int]:
        """Each criterion's chosen K: ``bic``, ``icl``, ``aic``, and when run ``loo``,
        ``loo_stacking`` and ``sparse``."""
        out = {name: c.n_components for name, c in self.em.choices.items()}
        if self.loo is not None:
            out["loo"] = self.loo.choice
            out["loo_stacking"] = self.loo.stacking_choice
        if self.sparse is not None:
            out["sparse"] = self.sparse.mode
        return out


def choose_components(
    X: np.ndarray,
    components: Sequence[int],
    *,
    covariance_type: str = "full",
    covariance_types: Sequence[str] = COVARIANCE_TYPES,
    n_init: int = 3,
    loo: bool = True,
    sparse: bool = False,
    sampler: str = "auto",
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    seed: int = 0,
) -> ComponentChoice:
    """EM criteria over ``components`` and ``covariance_types``; optionally LOO and sparse.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    components : sequence of int
        The K to try, each in ``[1, n_samples]``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Of the Bayesian fits (per-K and sparse).
    covariance_types : sequence of str, default all four
        EM models in the BIC table.
    n_init : int
        EM starts per (K, type).
    loo : bool, default True
        Fit the Bayesian mixture at every K (needs two K or more) and compare by PSIS-LOO.
    sparse : bool, default False
        Fit the sparse overfitted mixture with ``max(components)`` components (slow).
    sampler, chains, draws, tune
        Of the Bayesian fits.
    seed : int
        Seeds everything (independent streams per part).

    Returns
    -------
    ComponentChoice
    """
    em_seed, loo_seed, sparse_seed = np.random.SeedSequence(seed).spawn(3)
    em = select_components(
        X,
        components=components,
        covariance_types=covariance_types,
        n_init=n_init,
        random_state=em_seed,
    )
    comparison, failures = None, {}
    if loo and len(components) > 1:
        from workbench.bayes import fit_bayes
        from workbench.selection import compare_loo

        fits = {}
        seeds = loo_seed.generate_state(len(components))
        for k, k_seed in zip(sorted(components), seeds, strict=True):
            start = em.estimates.get((k, covariance_type))  # type: ignore[call-overload]
            try:
                with warnings.catch_warnings():
                    # r_hat and divergence warnings: the comparison table counts Pareto k
                    warnings.simplefilter("ignore")
                    fits[k] = fit_bayes(
                        X,
                        k,
                        covariance_type=covariance_type,
                        sampler=sampler,
                        chains=chains,
                        draws=draws,
                        tune=tune,
                        init=start,
                        reference=start,
                        random_seed=int(k_seed),
                    )
            except Exception as exc:
                failures[k] = f"{type(exc).__name__}: {exc}"
        if len(fits) > 1:
            comparison = compare_loo(fits)
    sparse_result = None
    if sparse:
        from workbench.bayes.sparse import fit_sparse_mixture

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sparse_result = fit_sparse_mixture(
                X,
                max(max(components), 2),
                covariance_type=covariance_type,
                sampler=sampler,
                chains=chains,
                draws=draws,
                tune=tune,
                random_seed=int(sparse_seed.generate_state(1)[0]),
            )
    return ComponentChoice(em, comparison, failures, sparse_result, covariance_type)


def format_choice(choice: ComponentChoice) -> str:
    """The terminal report of :func:`choose_components`: mclust-style BIC table (larger is
    better, as mclust prints it), ICL, LOO, the sparse posterior and each criterion's choice.

    Parameters
    ----------
    choice : ComponentChoice

    Returns
    -------
    str
    """
    table = choice.em.table
    lines = ["BIC (mclust's sign: 2 loglik - npar log n, larger is better; sklearn's is minus):"]
    lines.append(_by_type(table, "bic_mclust"))
    ok = table[~table["failed"]].sort_values("bic_mclust", ascending=False).head(3)
    top = ", ".join(
        f"{MCLUST_NAMES[r.covariance_type]},{r.n_components} = {r.bic_mclust:.2f}"
        for r in ok.itertuples(index=False)
    )
    lines += [f"top three BIC: {top}", "", "ICL (mclust's sign, larger is better):"]
    lines.append(_by_type(table, "icl_mclust"))
    failed = table[table["failed"]]
    for row in failed.itertuples(index=False):
        lines.append(f"failed: K={row.n_components} {row.covariance_type}: {row.error}")
    if choice.loo is not None:
        loo = choice.loo.table[
            ["n_components", "elpd", "se", "p_loo", "elpd_diff", "dse", "stacking_weight"]
        ].copy()
        loo["high Pareto k"] = choice.loo.table["n_high_pareto_k"]
        lines += [
            "",
            f"PSIS-LOO of the Bayesian fit at each K ({choice.covariance_type}; larger elpd is "
            f"better; {choice.loo.n_high_pareto_k} observations above the Pareto-k threshold "
            f"{choice.loo.table['pareto_k_threshold'].iloc[0]:.2f} in all):",
            loo.to_string(index=False, float_format=lambda v: f"{v:.2f}"),
        ]
    for k, error in sorted(choice.loo_failures.items()):
        lines.append(f"Bayesian fit at K={k} failed: {error}")
    if choice.sparse is not None:
        posterior = choice.sparse.posterior
        shares = ", ".join(f"{k}: {p:.3f}" for k, p in enumerate(posterior) if k and p > 0)
        lines += [
            "",
            f"sparse mixture (K_max = {len(posterior) - 1}, concentration "
            f"{choice.sparse.concentration:g}): posterior of the number of non-empty "
            f"components {shares}",
        ]
    em_choices = choice.em.choices
    picks = []
    for name, k in choice.choices.items():
        model = f" {em_choices[name].covariance_type}" if name in em_choices else ""
        picks.append(f"{name} K={k}{model}")
    lines += ["", "choices: " + ", ".join(picks)]
    return "\n".join(lines)


def _by_type(table: pd.DataFrame, column: str) -> str:
    wide = table.pivot(index="n_components", columns="covariance_type", values=column)
    wide = wide[[c for c in COVARIANCE_TYPES if c in wide.columns]]
    wide.columns = [f"{c} ({MCLUST_NAMES[c]})" for c in wide.columns]
    wide.index.name = "K"
    return wide.to_string(float_format=lambda v: f"{v:.2f}", na_rep="failed")
