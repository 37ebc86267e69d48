"""Compile and sampling speed of the numba fast model against nutpie's PyMC compile (issue 12).

For each case, both ways of building the nutpie model that ``fit_bayes`` samples:

``fast``
    :mod:`workbench.bayes.fast_model`: hand-written numba log density and gradient, two C
    entry points cached by numba (what ``sampler="auto"`` uses).
``pymc``
    ``nutpie.compile_pymc_model`` on the PyMC model (the fallback; what ``fit_bayes`` used
    before), forced by making ``fast_model.supported`` return False.

Each runs in child processes on its own fresh cache folders (``NUMBA_CACHE_DIR`` and
``PYTENSOR_FLAGS=base_compiledir``): a cold child (empty caches, as on a new machine), then a
warm one (a new process on the folders the cold one filled). Each child times
``precompile(d, K)`` (the model plus its start-value map, as ``fit_bayes`` compiles them),
then runs ``fit_bayes`` with the defaults (4 chains x (1000 tuning + 1000 draws), 2 cores,
low-rank adaptation) from the EM estimate (10 starts), and reports its sampling seconds and
min bulk ESS of the relabelled component parameters. ESS per sampling second is the median
over the two children of a model. The script prints each model's row and the ratios.

Run: ``.venv/bin/python experiments/benchmarks/fast_model.py [--cases n500-d2-k3 n500-d1-k2]``.
Timings on this shared 2-core machine are noisy: compare the ratios of one run.

Measured 2026-12-03 07:55-08:10 UTC while a long study ran on both cores (load average
about 3-4; absolute seconds are inflated, ratios are what count):

(numbers below)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "n500-d2-k3": (500, 2, 3),
    "n500-d1-k2": (500, 1, 2),
}
MODELS = ("fast", "pymc")

CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from workbench.bayes import fast_model, sampling
from workbench.em import GaussianMixture
from workbench.simulate import Scenario, simulate

n, d, k, which = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if which == "pymc":
    fast_model.supported = lambda nutpie_version=None: False
scenario = Scenario(n_components=k, n_features=d, n_train=n, n_test=10, covariance="full",
                    condition_number=3.0, overlap=0.01)
X = simulate(scenario, 1).X_train
em = GaussianMixture(k, n_init=10, random_state=0).fit(X).to_params()
compile_s = sampling.precompile(d, k)
fit = sampling.fit_bayes(X, k, init=em, random_seed=1, cores=2)
diag = fit.diagnostics
assert diag["model_reused"] and diag["compile_seconds"] == 0.0
print(json.dumps({"compile": compile_s, "sample": diag["sampling_seconds"],
                  "min_ess": diag["min_ess_bulk"], "max_r_hat": diag["max_r_hat"]}))
"""


def _child(args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({args}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(cases: list[str]) -> None:
    print(f"load average at start: {os.getloadavg()}")
    print(
        f"{'case':12s} {'model':5s} {'cold s':>7s} {'warm s':>7s} {'sample s':>9s} "
        f"{'min ESS':>8s} {'ESS/s':>7s} {'max r_hat':>9s}"
    )
    for case in cases:
        n, d, k = CASES[case]
        rows = {}
        for model in MODELS:
            with tempfile.TemporaryDirectory() as cache:
                env = {
                    "PYTENSOR_FLAGS": f"base_compiledir={cache}/pytensor",
                    "NUMBA_CACHE_DIR": f"{cache}/numba",
                }
                args = [str(n), str(d), str(k), model]
                runs = [_child(args, env), _child(args, env)]
            rate = statistics.median(r["min_ess"] / r["sample"] for r in runs)
            rows[model] = (runs, rate)
            cold, warm = runs
            print(
                f"{case:12s} {model:5s} {cold['compile']:7.2f} {warm['compile']:7.2f} "
                f"{statistics.median(r['sample'] for r in runs):9.2f} "
                f"{statistics.median(r['min_ess'] for r in runs):8.0f} {rate:7.0f} "
                f"{max(r['max_r_hat'] for r in runs):9.4f}",
                flush=True,
            )
        (fast_cold, fast_warm), fast_rate = rows["fast"]
        (pymc_cold, pymc_warm), pymc_rate = rows["pymc"]
        print(
            f"{case}: cold compile pymc/fast {pymc_cold['compile'] / fast_cold['compile']:.1f}x, "
            f"warm compile pymc/fast {pymc_warm['compile'] / fast_warm['compile']:.0f}x, "
            f"ESS/s fast/pymc {fast_rate / pymc_rate:.2f}x",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    run(parser.parse_args().cases)


if __name__ == "__main__":
    main()
