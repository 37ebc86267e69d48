"""Where a Bayesian fit's time goes: compiling (numba vs JAX) and one separation-study task.

Two parts (issue 12), each printing ratios measured side by side in one run.

``compile``
    For each case (4 chains x 1000 tuning + 1000 draws of nutpie with low-rank adaptation,
    chains started at the EM estimate, 2 cores): nutpie's compile seconds with a cold disk
    cache (fresh ``PYTENSOR_FLAGS=base_compiledir`` and ``NUMBA_CACHE_DIR``) and a warm one
    (a second fresh process on the same folders), then sampling seconds, min bulk ESS of the
    component parameters and ESS per sampling second, for the numba backend (what
    ``fit_bayes`` uses) and the JAX backend (``backend="jax", gradient_backend="jax"``,
    ``freeze_model=False`` so that new data can be swapped in). Every measurement runs in
    its own process.

``task``
    One task of ``experiments/separation.toml`` (n=500, d=2, K=3, full, EM with 10 starts,
    then 4 chains x (1000 + 1000) of nutpie from the EM estimate), run by
    ``workbench.study.task.run_task`` with ``chain_cores=1`` as in a 2-worker pool, for the
    code at ``--baseline`` (default ``main``, exported with ``git archive``) and for this
    checkout, each in its own process after one warm-up task that compiles. Phases are timed
    by wrapping the functions by name: simulate, EM, compile, the sampler's tuning and draws
    (nutpie's time split by the leapfrog steps of each phase), start point, pointwise
    log-likelihood, relabelling, diagnostics, the rest of assembling the result, scoring, and
    writing the kept draws to NetCDF (only replication 0 of a condition keeps draws).

Run: ``.venv/bin/python experiments/benchmarks/bayes_compile.py [compile|task|all]
[--tasks 6] [--baseline REF] [--cases ...]``. Timings on this shared 2-core machine are
noisy: compare the ratios of one run.

Measured 2026-12-02 with 10-15 other processes sharing the 2 cores (load average 9-14):
absolute seconds are 3-10x those of a quiet machine (a loop of 1500 ``exp`` took 133 us,
a NumPy mixture ``log_prob`` at n=500 took 19 ms). Only same-run ratios mean anything.

``task`` (3 tasks after a warm-up, before = 46f1e3e, after = this branch at 55ec451, whose
draw log-likelihood was still the slower NumPy loop replaced since; medians, seconds):

========================  ======  =====  =====
phase                     before  after  ratio
========================  ======  =====  =====
simulate                  0.23    0.34   1.47
EM (10 starts)            1.73    1.68   0.97
tuning                    14.11   17.92  1.27
draws                     12.91   16.39  1.27
log-likelihood            1.26    4.70   3.72
relabelling               0.16    0.21   1.26
diagnostics               0.35    0.44   1.25
assemble (all)            1.88    5.47   2.91
scoring                   3.33    2.94   0.88
NetCDF (kept tasks)       2.32    2.04   0.88
task                      37.9    51.8   1.37
first task (compiles)     336.6   266.9  0.79
========================  ======  =====  =====

Tuning and draws run the same compiled model from the same seeds and start in both columns
(the same max r_hat, 1.0041, in both): their 1.27x is the machine's load drifting
between the two processes, and so is the ESS/s ratio the run printed (0.79). The sampler
is about 72% of a task (tuning 37%, draws 34%), then scoring (9%), NetCDF for kept tasks
(6%), EM (5%) and the log-likelihood (3%). The first task of a worker lost 70 s: PyTensor
no longer compiles the draw functions in each process.

The log-likelihood over draws now runs in one numba loop (4000 draws, n=500, K=3, d=2,
interleaved in one process): 0.63 s against 4.10 s for the NumPy loop over components the
run above measured (6.5x); in another process, interleaved with 46f1e3e's PyTensor draw
functions, 0.51 s against 0.98 s (1.9x), with equal values (rtol 1e-9), and its first call
(loading numba's disk cache) took 0.8 s where the PyTensor functions took 4.0 s to compile
from a warm PyTensor cache.

``compile`` (n=500, d=2, K=3 full; earlier, separate processes on the same machine, same
load): numba compile 104-386 s (warm PyTensor cache, 4 measurements between 02:00 and
02:15), JAX 12-27 s (3 measurements); JAX sampling of 4 x (1000 + 1000) on 2 cores took
36-115 s with min bulk ESS 1175-2040, against 24-39 s for numba (one chain core each, the
separation tasks above, min ESS 3250-5500). A full ``compile`` part did not finish within
the session (the cold numba child alone took 21 minutes of wall time under this load).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from child_json import cache_env, run_child

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "n200-d1-k2": (200, 1, 2),
    "n200-d2-k2": (200, 2, 2),
    "n500-d2-k3": (500, 2, 3),
}

# --------------------------------------------------------------------------- compile part

COMPILE_CHILD = r"""
import json, sys, time, dataclasses, warnings
warnings.simplefilter("ignore")
import numpy as np
import arviz as az
import nutpie
from workbench.bayes.model import DATA, BayesPriors, build_model, initial_values
from workbench.bayes.sampling import JITTER, NUTPIE_ADAPTATION, _unconstrained_map
from workbench.em import GaussianMixture
from workbench.simulate import Scenario, simulate

n, d, k, backend = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
scenario = Scenario(n_components=k, n_features=d, n_train=n, n_test=10, covariance="full",
                    condition_number=3.0, overlap=0.01)
X = simulate(scenario, 1).X_train
em = GaussianMixture(k, n_init=10, random_state=0).fit(X).to_params()
model = build_model(X, k)
extra = {}
if backend == "jax":
    extra = {"backend": "jax", "gradient_backend": "jax", "freeze_model": False}
t0 = time.perf_counter()
compiled = nutpie.compile_pymc_model(model, **extra)
compile_s = time.perf_counter() - t0
centre = _unconstrained_map(model)(initial_values(model, em, "full"))

def start(seed):
    return centre + np.random.default_rng(seed).uniform(-JITTER, JITTER, size=centre.shape)

field = "_make_initial_points" if backend == "jax" else "initial_point_func"
data = compiled.with_data(**{DATA: X, **BayesPriors().resolve(X)})
compiled = dataclasses.replace(data, **{field: start})
t0 = time.perf_counter()
idata = nutpie.sample(compiled, draws=1000, tune=1000, chains=4, cores=2, seed=1,
                      progress_bar=False, save_warmup=False, adaptation=NUTPIE_ADAPTATION)
sample_s = time.perf_counter() - t0
post = idata["posterior"].to_dataset()[["w", "mu", "cov"]]
ess = az.ess(post, method="bulk")
min_ess = min(float(np.nanmin(ess[v].values)) for v in ("w", "mu", "cov")
              if np.isfinite(ess[v].values).any())
print(json.dumps({"compile": compile_s, "sample": sample_s, "min_ess": min_ess}))
"""


def run_compile(cases: list[str]) -> None:
    print("\n## compile: nutpie numba vs JAX (4 chains x 1000+1000, 2 cores, EM start)")
    print(
        f"{'case':12s} {'backend':7s} {'cold s':>7s} {'warm s':>7s} {'sample s':>8s} "
        f"{'min ESS':>8s} {'ESS/s':>7s} {'ESS/s vs numba':>14s}"
    )
    for case in cases:
        n, d, k = CASES[case]
        rows = {}
        for backend in ("numba", "jax"):
            with tempfile.TemporaryDirectory() as cache:
                env = cache_env(cache)
                args = [str(n), str(d), str(k), backend]
                cold = run_child(COMPILE_CHILD, args, env)
                warm = run_child(COMPILE_CHILD, args, env)
            rows[backend] = (cold, warm)
        base = rows["numba"][1]["min_ess"] / rows["numba"][1]["sample"]
        for backend, (cold, warm) in rows.items():
            rate = warm["min_ess"] / warm["sample"]
            print(
                f"{case:12s} {backend:7s} {cold['compile']:7.1f} {warm['compile']:7.1f} "
                f"{warm['sample']:8.2f} {warm['min_ess']:8.0f} {rate:7.0f} {rate / base:14.2f}",
                flush=True,
            )


# ------------------------------------------------------------------------------ task part

TASK_CHILD = r"""
import json, sys, time, statistics, warnings, functools, tempfile, os
from collections import defaultdict
warnings.simplefilter("ignore")
import numpy as np
import nutpie
import workbench.bayes.sampling as sampling
import workbench.study.task as task
from workbench.study import load_study
from workbench.study.runner import task_specs

phases = defaultdict(float)

def timed(owner, name, phase):
    original = getattr(owner, name, None)
    if original is None:
        return
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[phase] += time.perf_counter() - t0
    setattr(owner, name, wrapper)

original_sample = nutpie.sample

def split_sample(*args, **kwargs):
    kwargs["save_warmup"] = True
    t0 = time.perf_counter()
    idata = original_sample(*args, **kwargs)
    seconds = time.perf_counter() - t0
    tune = float(idata["warmup_sample_stats"]["n_steps"].sum())
    draws = float(idata["sample_stats"]["n_steps"].sum())
    phases["tuning"] += seconds * tune / (tune + draws)
    phases["draws"] += seconds * draws / (tune + draws)
    return idata

nutpie.sample = split_sample
timed(sampling, "_compile_nutpie", "compile")
timed(task, "simulate", "simulate")
timed(task, "_fit_em", "EM")
timed(task, "score_posterior", "scoring")
for name in ("_over_draws", "draw_log_density"):
    timed(sampling, name, "log-likelihood")
timed(sampling, "reference_orders", "relabelling")
timed(sampling, "convergence", "diagnostics")
timed(sampling, "sampler_counts", "diagnostics")
timed(sampling, "initial_values", "start point")
timed(sampling, "_assemble", "assemble (all)")
timed(sampling, "_sample_nutpie", "nutpie call (all)")
netcdf = []
original_fit_bayes = task.fit_bayes

def fit_and_write(*args, **kwargs):
    fit = original_fit_bayes(*args, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit.idata.drop_nodes("log_likelihood", errors="ignore").to_netcdf(
            os.path.join(tmp, "draws.nc"), engine="h5netcdf")
        netcdf.append(time.perf_counter() - t0)
    return fit

task.fit_bayes = fit_and_write
n_tasks = int(sys.argv[1])
specs = task_specs(load_study("experiments/separation.toml"), chain_cores=1)
t0 = time.perf_counter()
task.run_task(specs[0])
first = time.perf_counter() - t0
compile_first = phases["compile"]
rows = []
for spec in specs[1:1 + n_tasks]:
    phases.clear()
    netcdf.clear()
    t0 = time.perf_counter()
    record = task.run_task(spec)
    seconds = time.perf_counter() - t0
    fit = next(f for f in record.fits if f.method == "bayes")
    row = dict(phases)
    row["task"] = seconds
    row["NetCDF (kept tasks)"] = netcdf[0]
    row["sampling_seconds"] = fit.diagnostics["sampling_seconds"]
    row["min_ess_bulk"] = fit.diagnostics["min_ess_bulk"]
    row["max_r_hat"] = fit.diagnostics["max_r_hat"]
    row["status"] = record.status
    rows.append(row)
print(json.dumps({"first_task": first, "first_compile": compile_first, "rows": rows}))
"""

PHASES = (
    "simulate",
    "EM",
    "compile",
    "start point",
    "tuning",
    "draws",
    "log-likelihood",
    "relabelling",
    "diagnostics",
    "assemble (all)",
    "scoring",
    "NetCDF (kept tasks)",
)


def _export(ref: str, into: Path) -> Path:
    archive = into / "baseline.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "workbench", "experiments"],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def run_task_part(n_tasks: int, baseline: str) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = _export(baseline, Path(tmp))
        for label, path in ((f"before ({baseline})", base_dir), ("after (this checkout)", ROOT)):
            results[label] = run_child(
                TASK_CHILD, [str(n_tasks)], {"PYTHONPATH": str(path)}, cwd=path
            )
    print(f"\n## separation task, chain_cores=1, median over {n_tasks} tasks after a warm-up")
    labels = list(results)
    print(f"{'phase (s)':24s} " + " ".join(f"{label:>24s}" for label in labels) + "    ratio")

    def median(label: str, key: str) -> float:
        return statistics.median(row.get(key, 0.0) for row in results[label]["rows"])

    for key in (*PHASES, "task"):
        before, after = median(labels[0], key), median(labels[1], key)
        ratio = after / before if before > 0 else float("nan")
        print(f"{key:24s} {before:24.3f} {after:24.3f} {ratio:8.2f}")
    for label in labels:
        res = results[label]
        rates = [r["min_ess_bulk"] / r["sampling_seconds"] for r in res["rows"]]
        print(
            f"{label}: first task {res['first_task']:.1f} s "
            f"(compile {res['first_compile']:.1f} s); "
            f"min bulk ESS / sampling s median {statistics.median(rates):.0f}; "
            f"max r_hat {max(r['max_r_hat'] for r in res['rows']):.4f}; "
            f"statuses {sorted({r['status'] for r in res['rows']})}"
        )
    before_rates = [r["min_ess_bulk"] / r["sampling_seconds"] for r in results[labels[0]]["rows"]]
    after_rates = [r["min_ess_bulk"] / r["sampling_seconds"] for r in results[labels[1]]["rows"]]
    print(
        "ESS/s ratio after/before (medians): "
        f"{statistics.median(after_rates) / statistics.median(before_rates):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("compile", "task", "all"), nargs="?", default="all")
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    start = time.perf_counter()
    if args.part in ("task", "all"):
        run_task_part(args.tasks, args.baseline)
    if args.part in ("compile", "all"):
        run_compile(args.cases)
    print(f"\nwhole run {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
