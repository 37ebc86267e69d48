"""Run simulation-based calibration of the Bayesian mixture fit and print the verdict.

Draws ``--simulations`` truths from the model's prior (fixed hyperparameters), simulates
``--n`` points from each, fits with ``fit_bayes`` (nutpie) and tests every quantity's ranks
for uniformity (chi-square, Bonferroni over quantities; see
:mod:`workbench.bayes.calibration`). ``--negative-control`` fits with ``scale_prior`` halved,
which the check should flag. With ``--figures DIR`` it also writes the ECDF-difference plot
and the rank histograms.

Example (the setting of ``tests/test_bayes_calibration.py``; a few minutes on 2 cores)::

    .venv/bin/python experiments/sbc_check.py -K 2 -d 1 --n 100 --simulations 200
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from workbench.bayes.calibration import RANK_BINS, rank_table, run_sbc, sbc_check
from workbench.bayes.options import DEFAULT_TARGET_ACCEPT
from workbench.bayes.priors import BayesPriors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-K", "--components", type=int, default=2)
    parser.add_argument("-d", "--features", type=int, default=1)
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--n", type=int, default=100, help="data points per simulation")
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--tune", type=int, default=200)
    parser.add_argument("--target-accept", type=float, default=DEFAULT_TARGET_ACCEPT)
    parser.add_argument("--mean-loc", type=float, default=0.0)
    parser.add_argument("--mean-scale", type=float, default=2.0)
    parser.add_argument("--scale-prior", type=float, default=1.0)
    parser.add_argument("--negative-control", action="store_true")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--figures", type=Path, default=None)
    args = parser.parse_args()

    priors = BayesPriors(
        mean_loc=args.mean_loc, mean_scale=args.mean_scale, scale_prior=args.scale_prior
    )
    fit_priors = (
        dataclasses.replace(priors, scale_prior=args.scale_prior / 2)
        if args.negative_control
        else priors
    )
    start = time.perf_counter()
    simulations = run_sbc(
        priors,
        args.components,
        args.features,
        n_samples=args.n,
        n_simulations=args.simulations,
        covariance_type=args.covariance_type,
        fit_priors=fit_priors,
        rng=args.seed,
        chains=args.chains,
        draws=args.draws,
        tune=args.tune,
        target_accept=args.target_accept,
    )
    seconds = time.perf_counter() - start
    table = rank_table([s.ranks for s in simulations])
    check = sbc_check(table)
    kept = np.sort(table.n_draws)
    print(
        f"{len(simulations)} simulations in {seconds:.0f} s; failed fits {check.n_failed}; "
        f"empty components in {sum(s.n_empty_components > 0 for s in simulations)}; "
        f"median L {kept[len(kept) // 2]}"
    )
    print(f"{'quantity':<14}{'chi2':>8}{'p':>11}{'p_adj':>11}")
    for t in check.tests:
        print(f"{t.quantity:<14}{t.statistic:>8.1f}{t.p_value:>11.2e}{t.p_adjusted:>11.2e}")
    print(f"passed: {check.passed} (alpha {check.alpha} after Bonferroni); flagged {check.flagged}")
    if args.figures is not None:
        from workbench.report.calibration_plots import plot_rank_histograms, plot_sbc_ecdf

        args.figures.mkdir(parents=True, exist_ok=True)
        plot_sbc_ecdf(table).savefig(args.figures / "sbc_ecdf.png", dpi=120)
        plot_rank_histograms(table, n_bins=RANK_BINS).savefig(
            args.figures / "sbc_ranks.png", dpi=120
        )


if __name__ == "__main__":
    main()
