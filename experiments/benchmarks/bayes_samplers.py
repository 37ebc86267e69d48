"""Benchmark the Bayesian mixture samplers against PyMC's default NUTS on the naive model.

Two cases (issue 3):

* 1-D, K=3, n=1000: means (-4, 0, 4), sds (1, 0.7, 1.2), weights (0.3, 0.4, 0.3).
* 2-D, K=3, n=1000, full covariances: means (-3, 0), (0, 2), (3, -1), weights
  (0.3, 0.4, 0.3), moderately correlated covariances (see ``CASES``).

Rows, all with 4 chains on 2 cores, 1000 draws after 1000 tuning steps unless marked:

* ``anchor: pymc naive`` -- the pymc-examples model (``pm.NormalMixture`` in 1-D,
  ``pm.Mixture`` over ``pm.MvNormal`` with an LKJ prior per component in 2-D; ordered
  means with sorted initvals) sampled by ``pm.sample()`` with PyMC's NUTS and its default
  init. ESS/s ratios are against this row.
* ``pymc naive, unordered`` (1-D only) -- the same without the ordering: labels switch.
* ``fit_bayes(sampler=...)`` for nutpie, pymc, numpyro (started at the EM estimate of
  ``workbench.em.GaussianMixture`` and relabelled to it, as the study runner does) and
  ADVI; nutpie also without the EM start (Stephens relabelling), with 300 tuning steps,
  and with 500 + 500 draws.

Columns: ``wall1`` the first fit in this process (includes compilation; PyTensor's disk
cache in ~/.pytensor may already be warm), ``sample`` sampling seconds (tuning included),
``wall2`` a second fit of a new dataset of the same shape (compilation amortised), ``ESS/s``
min ess_bulk over all component parameters (raw draws) per sampling second, ``r_hat``
max over them, ``div`` divergences, ``switch`` draws whose Hungarian match to the truth
differs from the modal one (label switches).

Run: ``.venv/bin/python experiments/benchmarks/bayes_samplers.py [--skip-2d-anchor]``.
The 2-D anchor takes a few minutes. Timings on a shared 2-core machine are noisy (the
1-D anchor took 7.9 s in one run and 13.7 s in the next); compare the ratios of one run.

Measured 2026-11-30 (other jobs sharing the 2 cores), nutpie with low-rank adaptation:

=====================================  ========  ======  ==========  ========  =====  ======
row                                    sample s  wall2   ESS/s       x anchor  r_hat  switch
=====================================  ========  ======  ==========  ========  =====  ======
1-D anchor: pymc naive                 13.67     --      174         1.00      1.002  0
1-D pymc naive, unordered              5.75      --      1           0.01      1.734  2000
1-D fit_bayes nutpie, EM start         2.06      3.6     1901        10.95     1.002  0
1-D fit_bayes nutpie, 500+500          1.71      2.1     1217        7.01      1.005  0
1-D fit_bayes pymc / numpyro           16.2/13.4 --      150/210     0.87/1.21 1.003  0
2-D anchor: pymc naive                 95.63     --      22          1.00      1.003  0
2-D fit_bayes nutpie, EM start         6.32      6.6     931         43.2      1.004  0
2-D fit_bayes nutpie, 500+500          2.37      2.6     1062        49.3      1.007  0
2-D fit_bayes nutpie, no EM start      6.57      8.9     929         43.1      1.004  0
2-D fit_bayes pymc / numpyro           26.2/23.7 --      73/72       3.4/3.3   1.003  0
=====================================  ========  ======  ==========  ========  =====  ======

A later run on a quiet machine (no other jobs; whole script 3 m 45 s): 1-D anchor 4.22 s,
562 ESS/s; nutpie from EM 1.06 s, 3682 ESS/s = 6.55x, r_hat 1.002. 2-D anchor 47.1 s,
44 ESS/s; nutpie from EM 2.37 s of sampling (min ESS 5900, r_hat 1.004) = 56.7x, a second
fit 2.5 s wall. No label switches in any fit_bayes row.

Against the previous run's faster 1-D anchor (302 ESS/s) the 1-D nutpie row is 6.3x.
With nutpie's default diagonal adaptation an earlier run gave 2.2x (1-D) and 11.4x (2-D).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from workbench.bayes import fit_bayes
from workbench.bayes.diagnostics import component_parameters, convergence
from workbench.bayes.relabel import label_switching_report, reference_orders
from workbench.em import GaussianMixture
from workbench.mixture import MixtureParams, sample

CHAINS, CORES, DRAWS, TUNE = 4, 2, 1000, 1000

CASES = {
    "1-D": MixtureParams(
        np.array([0.3, 0.4, 0.3]),
        np.array([[-4.0], [0.0], [4.0]]),
        np.array([1.0, 0.7, 1.2])[:, None, None] ** 2,
    ),
    "2-D": MixtureParams(
        np.array([0.3, 0.4, 0.3]),
        np.array([[-3.0, 0.0], [0.0, 2.0], [3.0, -1.0]]),
        np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.6, 0.0], [0.0, 0.6]], [[1.0, -0.4], [-0.4, 0.8]]]),
    ),
}


@dataclass
class Row:
    name: str
    wall1: float
    sample: float
    wall2: float
    ess_per_s: float
    r_hat: float
    divergences: int
    switches: int


def _raw_summary(
    w: np.ndarray, mu: np.ndarray, cov: np.ndarray, truth: MixtureParams
) -> tuple[float, float, int]:
    """min ess_bulk, max r_hat (raw draws) and label switches relative to the truth."""
    stats = convergence(component_parameters(w, mu, cov, "full"))
    c, s, K, d = mu.shape
    orders = reference_orders(
        w.reshape(c * s, K), mu.reshape(c * s, K, d), cov.reshape(c * s, K, d, d), truth
    )
    switches = label_switching_report(orders, c)["n_relabelled_draws"]
    return stats["min_ess_bulk"], stats["max_r_hat"], switches


def naive_model(X: np.ndarray, K: int, ordered_means: bool) -> pm.Model:
    """The pymc-examples mixture with the same data-scaled priors as workbench.bayes."""
    n, d = X.shape
    loc, sd = X.mean(axis=0), X.std(axis=0)
    ordering = {"transform": pm.distributions.transforms.ordered} if ordered_means else {}
    with pm.Model(coords={"component": range(K)}) as model:
        w = pm.Dirichlet("w", np.ones(K), dims="component")
        if d == 1:
            mu = pm.Normal("mu", loc[0], 2 * sd[0], **ordering, dims="component")
            sigma = pm.HalfNormal("sigma", sd[0], dims="component")
            pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=X[:, 0])
        else:
            mu0 = pm.Normal("mu", loc[0], 2 * sd[0], **ordering, dims="component")
            rest = pm.Normal("mu_rest", loc[1:], 2 * sd[1:], shape=(K, d - 1))
            means = pt.concatenate([mu0[:, None], rest], axis=1)
            chols = [
                pm.LKJCholeskyCov(
                    f"chol_{k}", n=d, eta=2.0, sd_dist=pm.HalfNormal.dist(sd), compute_corr=True
                )[0]
                for k in range(K)
            ]
            comp = pm.MvNormal.dist(mu=means, chol=pt.stack(chols))
            pm.Mixture("x", w=w, comp_dists=comp, observed=X)
    return model


def naive_draws(idata, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    post = idata["posterior"]
    w = post["w"].values
    if d == 1:
        mu = post["mu"].values[..., None]
        cov = (post["sigma"].values ** 2)[..., None, None]
    else:
        mu = np.concatenate([post["mu"].values[..., None], post["mu_rest"].values], axis=-1)
        K = w.shape[-1]
        rows, cols = np.tril_indices(d)
        chol = np.zeros((*w.shape, d, d))
        for k in range(K):
            packed = post[f"chol_{k}"].values  # (chain, draw, d(d+1)/2)
            chol[..., k, rows, cols] = packed
        cov = chol @ np.swapaxes(chol, -1, -2)
    return w, mu, cov


def run_naive(X: np.ndarray, truth: MixtureParams, ordered_means: bool, seed: int) -> Row:
    K, d = truth.n_components, truth.n_features
    model = naive_model(X, K, ordered_means)
    initvals = {"mu": np.quantile(X[:, 0], (np.arange(K) + 0.5) / K)} if ordered_means else None
    start = time.perf_counter()
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(
            draws=DRAWS,
            tune=TUNE,
            chains=CHAINS,
            cores=CORES,
            nuts_sampler="pymc",
            initvals=initvals,
            random_seed=seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
    wall = time.perf_counter() - start
    sampling = float(idata["posterior"].attrs["sampling_time"])
    ess, r_hat, switches = _raw_summary(*naive_draws(idata, d), truth)
    name = "anchor: pymc naive" if ordered_means else "pymc naive, unordered"
    div = int(idata["sample_stats"]["diverging"].values.sum())
    return Row(name, wall, sampling, np.nan, ess / sampling, r_hat, div, switches)


def run_fit(
    name: str,
    data: Callable[[int], tuple[np.ndarray, MixtureParams]],
    truth: MixtureParams,
    *,
    sampler: str,
    draws: int = DRAWS,
    tune: int = TUNE,
    em_start: bool = True,
) -> Row:
    rows = []
    for rep in range(2):
        X, em = data(rep)
        start = time.perf_counter()
        fit = fit_bayes(
            X,
            truth.n_components,
            sampler=sampler,
            chains=CHAINS,
            cores=CORES,
            draws=draws,
            tune=tune,
            init=em if em_start else None,
            reference=em if em_start else None,
            random_seed=rep,
        )
        wall = time.perf_counter() - start
        post = fit.idata["posterior"]
        raw = (post["w"].values, post["mu"].values, post["cov"].values)
        rows.append((wall, fit.diagnostics, raw))
    (wall1, diag, raw), (wall2, _, _) = rows
    ess, r_hat, switches = _raw_summary(*raw, truth)
    sampling = float(diag["sampling_seconds"])
    if sampler == "advi":
        ess, r_hat = np.nan, np.nan
    return Row(
        name, wall1, sampling, wall2, ess / sampling, r_hat, int(diag["n_divergences"]), switches
    )


def print_rows(case: str, rows: list[Row]) -> None:
    anchor = next(r for r in rows if r.name.startswith("anchor"))
    print(f"\n## {case}  (4 chains, 2 cores)")
    header = (
        f"{'row':42s} {'wall1 s':>8s} {'sample s':>8s} {'wall2 s':>8s} {'ESS/s':>8s} "
        f"{'x anchor':>8s} {'r_hat':>7s} {'div':>5s} {'switch':>6s}"
    )
    print(header)
    for r in rows:
        print(
            f"{r.name:42s} {r.wall1:8.1f} {r.sample:8.2f} {r.wall2:8.1f} {r.ess_per_s:8.0f} "
            f"{r.ess_per_s / anchor.ess_per_s:8.2f} {r.r_hat:7.3f} {r.divergences:5d} "
            f"{r.switches:6d}",
            flush=True,
        )


def run_case(case: str, skip_2d_anchor: bool) -> None:
    truth = CASES[case]

    def data(rep: int) -> tuple[np.ndarray, MixtureParams]:
        X, _ = sample(truth, 1000, 100 + rep)
        em = GaussianMixture(truth.n_components, n_init=3, random_state=rep).fit(X)
        return X, em.to_params()

    X0, _ = data(0)
    rows: list[Row] = []
    if case == "1-D" or not skip_2d_anchor:
        rows.append(run_naive(X0, truth, ordered_means=True, seed=1))
    else:
        rows.append(Row("anchor: pymc naive (skipped)", *[np.nan] * 5, -1, -1))
    if case == "1-D":
        rows.append(run_naive(X0, truth, ordered_means=False, seed=1))
    # numpyro last among the MCMC rows: PyMC forks its chain processes, which is unsafe
    # once JAX has started its threads.
    for sampler in ("nutpie", "pymc", "numpyro"):
        rows.append(run_fit(f"fit_bayes {sampler}, EM start", data, truth, sampler=sampler))
    rows.append(
        run_fit("fit_bayes nutpie, no EM start", data, truth, sampler="nutpie", em_start=False)
    )
    # nutpie's step-size and mass-matrix adaptation settles in a few hundred steps.
    rows.append(
        run_fit("fit_bayes nutpie, EM start, tune 300", data, truth, sampler="nutpie", tune=300)
    )
    rows.append(
        run_fit(
            "fit_bayes nutpie, EM start, 500+500",
            data,
            truth,
            sampler="nutpie",
            draws=500,
            tune=500,
        )
    )
    rows.append(
        run_fit("fit_bayes advi (10000 steps), EM start", data, truth, sampler="advi", tune=10000)
    )
    print_rows(case, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-2d-anchor", action="store_true")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    if len(args.cases) == 1:
        run_case(args.cases[0], args.skip_2d_anchor)
        return
    # One process per case, so that each case's first fit compiles in-process and the
    # 2-D PyMC rows do not fork after the 1-D numpyro rows started JAX.
    for case in args.cases:
        command = [sys.executable, __file__, "--cases", case]
        subprocess.run(command + (["--skip-2d-anchor"] if args.skip_2d_anchor else []), check=True)


if __name__ == "__main__":
    main()
