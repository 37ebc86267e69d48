"""Study throughput (issue 12): every figure of the goal table, measured in one run.

Rows, each printed beside its goal:

``first run, empty caches``
    The README's main command minus the pip install: ``workbench run
    experiments/quickstart.toml`` then ``workbench report``, with fresh PyTensor and numba
    cache folders (``PYTENSOR_FLAGS=base_compiledir=...``, ``NUMBA_CACHE_DIR``), so every
    model compiles from nothing, as on a fresh machine.
``second run, warm caches``
    The same into a new output folder, on the caches the first run filled.
``compile, new structure, cold`` / ``warm``
    ``workbench.bayes.sampling.precompile(2, 3)`` (d=2, K=3, full) in a fresh process: first
    on empty cache folders, then again in another fresh process on the folders it filled.
``separation task, median``
    Tasks of ``experiments/separation.toml`` (overlap 0.01; replications 1.., which keep no
    draws) run by ``run_task`` in one process after a warm-up task that compiles, with
    ``chain_cores=2`` (one task on the whole machine) and ``chain_cores=1`` (as in a
    2-worker pool); also the min bulk ESS of the component parameters per sampling second.
``CLI start-up``
    Median wall time of 5 calls of ``workbench --help``, ``workbench status`` and
    ``workbench results`` (on the first run's store).
``report``
    ``workbench report`` of the quickstart (second run's store) and of a separation-shaped
    store (6 conditions x 3 replications, K=3, d=2 full, 24 parameters, 4 levels; short
    chains, since a report's cost depends on conditions, parameters and levels, not on
    replications or draws).
``2 workers vs 1``
    The warm quickstart run with ``--workers 1`` and ``--workers 2`` (fresh output folders,
    warm caches): the ratio of wall times.

Run: ``.venv/bin/python experiments/benchmarks/study_throughput.py [--tasks 5]``. Every
measurement runs the installed ``workbench`` in its own process, so nothing is shared that
a user's run would not share. Timings on this 2-core machine are noisy: the load average is
printed with the table.

Measured 2026-12-03 09:00-09:05 UTC on a quiet machine (load average 0.6 before, 1.6 at the
end), ``--tasks 5``, with nutpie sampling the numba model of ``workbench/bayes/fast_model.py``:

=============================================  ====================  ========
figure                                         measured              goal
=============================================  ====================  ========
README main command, empty caches              48 s (run 40)         <= 120 s
same, second time (warm caches)                28 s (run 20)         <= 45 s
report of the quickstart                       7.7 s                 <= 10 s
compile d=2 K=3 full, cold                     15 s                  <= 20 s
compile d=2 K=3 full, warm disk cache          0 s
separation task, median, chain_cores=2         1.60 s (4528 ESS/s)   <= 3 s
separation task, median, chain_cores=1         2.66 s (2418 ESS/s)   <= 3 s
workbench --help start-up (median of 5)        0.49 s                <= 1 s
workbench status start-up (median of 5)        0.50 s                <= 1 s
workbench results start-up (median of 5)       0.64 s                <= 1 s
report, separation-shaped (6 x 24 x 4)         13.7 s                <= 30 s
2 workers vs 1, warm quickstart run            1.09x (21/20 s)       >= 1.8x
=============================================  ====================  ========

The run before the fast model (2026-12-02 17:12-17:25 UTC, load average 1.1-1.9) gave 229 s
(run 219), 70 s (run 60), 10.0 s, 100 s cold compile, 17 s warm, 2.33 s (2786 ESS/s) and
3.85 s (1665 ESS/s) per task, 0.69/0.68/0.93 s start-up, 17.7 s and 1.07x (55/52 s).
An earlier run of the same script at load average 6-7 (two other studies running) gave
624 s, 309 s, 99 s (the report before it was made fast), 422 s cold compile, 55 s warm,
7.2 s and 7.0 s per task: on this machine the load changes every figure by 2-4x.
Before the fast model the sampler settings had not changed, so ESS per sampling second was
the sampler's own; the task got faster by scoring (the posterior predictive density of 2000
test points under 1000 draws: 0.75 s -> 0.15 s per task, measured with cProfile).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from child_json import cache_env, run_child

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKBENCH = str(BIN / "workbench")


def _cache_env(cache: Path) -> dict[str, str]:
    return {**os.environ, **cache_env(cache)}


def _timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one command; its output is discarded, a failure stops the benchmark."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds


def _run_and_report(study: Path, output: Path, env: dict[str, str], workers: int = 2):
    run = _timed(
        [
            WORKBENCH,
            "run",
            str(study),
            "--output",
            str(output),
            "--workers",
            str(workers),
            "--no-progress",
        ],
        env,
    )
    report = _timed([WORKBENCH, "report", str(output)], env)
    return run, report


COMPILE_CHILD = r"""
import json, time, warnings
warnings.simplefilter("ignore")
from workbench.bayes.sampling import precompile
t0 = time.perf_counter()
precompile(2, 3)
print(json.dumps({"compile": time.perf_counter() - t0}))
"""

TASK_CHILD = r"""
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
from workbench.study import load_study
from workbench.study.runner import task_specs
from workbench.study.task import run_task

n_tasks, chain_cores = int(sys.argv[1]), int(sys.argv[2])
config = load_study("experiments/separation.toml")
specs = [s for s in task_specs(config, chain_cores=chain_cores) if s.condition_id == 1]
run_task(specs[1])  # warm-up: compiles
seconds, rates = [], []
for spec in specs[2 : 2 + n_tasks]:
    start = time.perf_counter()
    record = run_task(spec)
    seconds.append(time.perf_counter() - start)
    assert record.status == "ok", record.error
    diagnostics = next(f for f in record.fits if f.method == "bayes").diagnostics
    rates.append(diagnostics["min_ess_bulk"] / diagnostics["sampling_seconds"])
print(json.dumps({"median": statistics.median(seconds), "ess_per_s": statistics.median(rates)}))
"""


def _separation_shaped(folder: Path) -> Path:
    """A copy of separation.toml with 3 replications and short chains."""
    text = (ROOT / "experiments" / "separation.toml").read_text()
    config = tomllib.loads(text)
    text = text.replace(f"replications = {config['replications']}", "replications = 3")
    text = text.replace("chains = 4", "chains = 2").replace("draws = 1000", "draws = 200")
    text = text.replace("tune = 1000", "tune = 200")
    path = folder / "separation_shaped.toml"
    path.write_text(text)
    return path


def _median_seconds(command: list[str], env: dict[str, str], repeats: int = 5) -> float:
    return statistics.median(_timed(command, env) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5, help="separation tasks to time")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []

    def row(name: str, value: str, goal: str) -> None:
        rows.append((name, value, goal))
        print(f"{name:42s} {value:>22s}   goal {goal}", flush=True)

    quickstart = ROOT / "experiments" / "quickstart.toml"
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        tmp_path = Path(tmp)
        env = _cache_env(tmp_path / "cache")

        run, report = _run_and_report(quickstart, tmp_path / "first", env)
        row(
            "README main command, empty caches", f"{run + report:.0f} s (run {run:.0f})", "<= 120 s"
        )
        run, report = _run_and_report(quickstart, tmp_path / "second", env)
        row("same, second time (warm caches)", f"{run + report:.0f} s (run {run:.0f})", "<= 45 s")
        row("report of the quickstart", f"{report:.1f} s", "<= 10 s")

        cold_env = _cache_env(tmp_path / "compile-cache")
        cold = run_child(COMPILE_CHILD, [], cold_env)["compile"]
        warm = run_child(COMPILE_CHILD, [], cold_env)["compile"]
        row("compile d=2 K=3 full, cold", f"{cold:.0f} s", "<= 20 s")
        row("compile d=2 K=3 full, warm disk cache", f"{warm:.0f} s", "(no goal)")

        for cores in (2, 1):
            task = run_child(TASK_CHILD, [str(args.tasks), str(cores)], env)
            row(
                f"separation task, median, chain_cores={cores}",
                f"{task['median']:.2f} s ({task['ess_per_s']:.0f} ESS/s)",
                "<= 3 s",
            )

        store = str(tmp_path / "first")
        for name, command in (
            ("--help", [WORKBENCH, "--help"]),
            ("status", [WORKBENCH, "status", store]),
            ("results", [WORKBENCH, "results", store, "--output", str(tmp_path / "r.csv")]),
        ):
            row(
                f"workbench {name} start-up (median of 5)",
                f"{_median_seconds(command, env):.2f} s",
                "<= 1 s",
            )

        shaped = _separation_shaped(tmp_path)
        _timed(
            [WORKBENCH, "run", str(shaped), "--output", str(tmp_path / "sep"), "--no-progress"], env
        )
        report = _timed([WORKBENCH, "report", str(tmp_path / "sep")], env)
        row("report, separation-shaped (6 x 24 x 4)", f"{report:.1f} s", "<= 30 s")

        one = _timed(
            [
                WORKBENCH,
                "run",
                str(quickstart),
                "--output",
                str(tmp_path / "w1"),
                "--workers",
                "1",
                "--no-progress",
            ],
            env,
        )
        two = _timed(
            [
                WORKBENCH,
                "run",
                str(quickstart),
                "--output",
                str(tmp_path / "w2"),
                "--workers",
                "2",
                "--no-progress",
            ],
            env,
        )
        row(
            "2 workers vs 1, warm quickstart run",
            f"{one / two:.2f}x ({one:.0f}/{two:.0f} s)",
            ">= 1.8x",
        )
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    print("\n| figure | measured | goal |\n| --- | --- | --- |")
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")


if __name__ == "__main__":
    main()
