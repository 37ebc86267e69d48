"""The study runner end to end: resume after kill -9, workers, Dask, failures, config changes.

The mechanics tests use EM and ADVI on tiny data (ADVI exercises the whole Bayesian path:
draws, intervals, NetCDF); one test runs a real MCMC sampler end to end.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from workbench.cli import main
from workbench.simulate import Scenario
from workbench.study.config import load_study, parse_study
from workbench.study.executors import DaskExecutor, ExecutorError, LocalExecutor, _next_item
from workbench.study.runner import run_study, task_specs
from workbench.study.seeds import regenerate_dataset
from workbench.study.store import TASK_TABLES, StoreMismatchError, StudyStore

MECHANICS = """
name = "mechanics"
seed = 11
replications = {replications}
[scenario]
n_components = 2
n_features = 1
n_train = 80
n_test = 100
[design]
overlap = [0.01, 0.05]
[methods.em]
n_init = 2
[methods.advi]
draws = 50
tune = 200
[output]
keep_draws = "first"
levels = [0.5, 0.9]
"""

# columns that measure time or place, not results
VOLATILE = {
    "tasks": ["started_at", "finished_at", "seconds", "simulate_seconds", "worker"],
    "fits": ["fit_seconds"],
}
VOLATILE_KEYS = {
    "metrics": {"fit_seconds"},
    # model_reused says whether this process had compiled the model before: a fact about
    # scheduling, like a timing
    "diagnostics": {"sampling_seconds", "compile_seconds", "model_reused"},
}


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _contents(directory: Path) -> dict[str, pd.DataFrame]:
    """Every stored row except timings, sorted, plus the kept draws."""
    out = {}
    with StudyStore(directory) as store:
        for table in TASK_TABLES:
            frame = store.table(table).drop(columns=VOLATILE.get(table, []))
            name_column = {"metrics": "metric", "diagnostics": "key"}.get(table)
            if name_column:
                frame = frame[~frame[name_column].isin(VOLATILE_KEYS[table])]
            out[table] = frame.sort_values(list(frame.columns[:4])).reset_index(drop=True)
        for row in store.table("draws").itertuples():
            posterior = store.load_draws(row.condition_id, row.replication, row.method)
            out[f"draws {row.path}"] = posterior["posterior"].to_dataset().to_dataframe()
    return out


def _assert_same_results(a: Path, b: Path) -> None:
    left, right = _contents(a), _contents(b)
    assert left.keys() == right.keys()
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mechanics study run uninterrupted in this process."""
    tmp = tmp_path_factory.mktemp("reference")
    config = parse_study(MECHANICS.format(replications=2), source="mechanics.toml")
    summary = run_study(config, output=tmp / "out", progress=False)
    assert (summary.n_run, summary.n_failed, summary.aborted) == (4, 0, False)
    return tmp / "out"


def test_reference_run_stores_every_table(reference: Path) -> None:
    with StudyStore(reference) as store:
        tasks = store.table("tasks")
        assert len(tasks) == 4 and set(tasks["status"]) == {"ok"}
        assert sorted(tasks["kept"]) == [0, 0, 1, 1]
        fits = store.table("fits")
        assert len(fits) == 8 and set(fits["method"]) == {"em", "advi"}
        intervals = store.table("intervals")
        assert set(intervals["method"]) == {"advi"} and set(intervals["level"]) == {0.5, 0.9}
        assert set(intervals["interval"]) == {"central", "hdi"}
        assert len(store.table("em_traces")) >= 4
        assert len(store.table("draws")) == 2 and len(store.table("datasets")) == 2
        assert len(store.table("em_history")) == 2
        # kept data are exactly what the stored seed regenerates
        seed = int(tasks.query("condition_id == 1 and replication == 0")["seed"].item())
        scenario = Scenario.from_dict(json.loads(store.table("conditions")["scenario"][1]))
        np.testing.assert_array_equal(
            store.load_dataset(1, 0)["X_train"], regenerate_dataset(scenario, seed).X_train
        )
        history = store.load_em_history(0, 0)
        assert history["means"].shape[1:] == (2, 1)
        params = store.load_params(0, 0)
        assert set(params) == {"truth", "em", "advi"}


def test_rerun_does_nothing_and_results_do_not_change(reference: Path, tmp_path: Path) -> None:
    before = _contents(reference)
    config = parse_study(MECHANICS.format(replications=2), source="mechanics.toml")
    summary = run_study(config, output=reference, progress=False)
    assert (summary.n_run, summary.n_already_done) == (0, 4)
    after = _contents(reference)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])


def _count_tasks(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_results(
    reference: Path, tmp_path: Path
) -> None:
    study = _write(tmp_path, MECHANICS.format(replications=2))
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", str(study), "--output", str(out)]
        + ["--workers", "1", "--no-progress"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while _count_tasks(out / "study.db") < 1:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no task finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    conn = sqlite3.connect(out / "study.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    conn.close()
    assert 1 <= done < 4, "the kill must land mid-run"

    assert main(["run", str(study), "--output", str(out), "--workers", "1", "--no-progress"]) == 0
    _assert_same_results(reference, out)
    assert not list((out / "draws").glob("*.tmp*"))


@pytest.mark.slow
def test_two_workers_store_the_same_results_as_one(reference: Path, tmp_path: Path) -> None:
    config = parse_study(MECHANICS.format(replications=2), source="mechanics.toml")
    summary = run_study(config, output=tmp_path / "two", executor=LocalExecutor(2), progress=False)
    assert summary.n_run == 4
    _assert_same_results(reference, tmp_path / "two")


@pytest.fixture
def dask_scheduler(tmp_path: Path) -> Iterator[str]:
    """A real Dask scheduler and one worker, as subprocesses on 127.0.0.1."""
    scheduler_file = tmp_path / "scheduler.json"
    python = [sys.executable, "-m", "dask"]
    processes = [
        subprocess.Popen(
            [*python, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(
            subprocess.Popen(
                [*python, "worker", address, "--nthreads", "1", "--nworkers", "1"]
                + ["--no-dashboard", "--host", "127.0.0.1"],
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        yield address
    finally:
        for process in reversed(processes):
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.slow
def test_dask_cluster_stores_the_same_results_as_local(
    reference: Path, tmp_path: Path, dask_scheduler: str
) -> None:
    config = parse_study(MECHANICS.format(replications=2), source="mechanics.toml")
    summary = run_study(
        config,
        output=tmp_path / "dask",
        executor=DaskExecutor(scheduler=dask_scheduler),
        progress=False,
    )
    assert summary.n_run == 4
    _assert_same_results(reference, tmp_path / "dask")
    workers = set(StudyStore(tmp_path / "dask").table("tasks")["worker"])
    assert not any(w.endswith(f":{os.getpid()}") for w in workers), "tasks ran on the worker"


def test_a_dying_worker_process_is_one_clear_error() -> None:
    with pytest.raises(ExecutorError, match="a worker process died"):
        list(LocalExecutor(2).run(os._exit, [3]))


@pytest.mark.slow
def test_dask_local_cluster_through_the_cli(tmp_path: Path) -> None:
    study = _write(tmp_path, FAILING.format(max_errors=10).replace("[1, 60]", "[60, 90]"))
    common = ["run", str(study), "--no-progress", "--output"]
    assert main([*common, str(tmp_path / "local"), "--workers", "1"]) == 0
    assert main([*common, str(tmp_path / "dask"), "--dask-local", "2"]) == 0
    _assert_same_results(tmp_path / "local", tmp_path / "dask")


FAILING = """
name = "failing"
seed = 5
replications = 3
[scenario]
n_components = 2
n_features = 1
n_test = 50
[design]
n_train = [1, 60]
[methods.em]
n_init = 1
[output]
max_errors = {max_errors}
"""


def test_a_failing_task_is_recorded_and_the_rest_finishes(tmp_path: Path) -> None:
    config = parse_study(FAILING.format(max_errors=10), source="failing.toml")
    summary = run_study(config, output=tmp_path / "out", progress=False)
    assert (summary.n_run, summary.n_failed, summary.aborted) == (6, 3, False)
    with StudyStore(tmp_path / "out") as store:
        tasks = store.table("tasks").set_index(["condition_id", "replication"])
        failed = tasks[tasks["status"] == "failed"]
        assert set(failed.index.get_level_values(0)) == {0}  # n_train = 1 < n_components
        assert all(failed["error"].str.startswith("em fit failed: ValueError"))
        assert all(failed["traceback"].str.contains("Traceback"))
        assert set(tasks.loc[1, "status"]) == {"ok"}
        assert (failed["seed"] > 0).all()
        fits = store.table("fits")
        assert set(fits.query("condition_id == 0")["status"]) == {"failed"}
        assert store.table("metrics").query("condition_id == 0").empty
    # rerunning leaves failed tasks alone; --retry-failed runs them again (and fails again)
    assert run_study(config, output=tmp_path / "out", progress=False).n_run == 0
    again = run_study(config, output=tmp_path / "out", retry_failed=True, progress=False)
    assert (again.n_run, again.n_failed) == (3, 3)


def test_max_errors_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = _write(tmp_path, FAILING.format(max_errors=1))
    out = tmp_path / "out"
    assert main(["run", str(study), "--output", str(out), "--workers", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "stopped after 2 errors (max_errors = 1)" in err
    with StudyStore(out) as store:
        tasks = store.table("tasks")
    # replication-major order: condition 0 fails at replications 0 and 1, condition 1 runs once
    assert len(tasks) == 3 and (tasks["status"] == "failed").sum() == 2


def test_changed_config_refuses_to_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = _write(tmp_path, FAILING.format(max_errors=10).replace("[1, 60]", "[60]"))
    out = tmp_path / "out"
    args = ["run", str(study), "--output", str(out), "--workers", "1", "--no-progress"]
    assert main(args) == 0
    study.write_text(study.read_text().replace("seed = 5", "seed = 6"))
    with pytest.raises(StoreMismatchError):
        run_study(load_study(study), output=out, progress=False)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--output NEW_FOLDER" in err and "--overwrite" in err
    study.write_text(study.read_text().replace("[output]\n", f'[output]\ndir = "{out}"\n'))
    assert main(["status", str(study)]) == 0
    assert "has changed since these results were stored" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0
    with StudyStore(out) as store:
        assert store.config_hash == load_study(study).config_hash()
        assert len(store.table("tasks")) == 3


def test_more_replications_extend_the_study(tmp_path: Path) -> None:
    text = FAILING.format(max_errors=10).replace("[1, 60]", "[60, 90]")
    small = parse_study(text.replace("replications = 3", "replications = 2"))
    full = parse_study(text)
    run_study(small, output=tmp_path / "grown", progress=False)
    summary = run_study(full, output=tmp_path / "grown", progress=False)
    assert (summary.n_already_done, summary.n_run) == (4, 2)
    run_study(full, output=tmp_path / "fresh", progress=False)
    _assert_same_results(tmp_path / "fresh", tmp_path / "grown")


MCMC = """
name = "mcmc"
seed = 3
replications = 1
[scenario]
n_components = 2
n_features = 1
n_train = 100
n_test = 100
overlap = 0.005
[methods.em]
n_init = 2
[methods.bayes]
chains = 2
draws = 200
tune = 200
[output]
levels = [0.9]
"""


@pytest.mark.slow
def test_mcmc_study_end_to_end_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _write(tmp_path, MCMC)
    out = tmp_path / "out"
    assert main(["run", str(study), "--output", str(out), "--no-progress"]) == 0
    with StudyStore(out) as store:
        fits = store.table("fits").set_index("method")
        assert fits.loc["bayes", "status"] == "ok", fits.loc["bayes", "error"]
        diagnostics = store.table("diagnostics").query("method == 'bayes'")
        values = dict(zip(diagnostics["key"], diagnostics["value"], strict=True))
        assert values["sampler"] in ("nutpie", "pymc", "numpyro")
        assert values["started_at_em"] == 1
        assert values["max_r_hat"] < 1.1
        draws = store.load_draws(0, 0, "bayes")
        assert draws["posterior"].sizes["chain"] == 2 and draws["posterior"].sizes["draw"] == 200
        intervals = store.table("intervals")
        # central and HDI at one level for 2 weights, 2 means and 2 variances
        assert len(intervals) == 2 * 6 and set(intervals["method"]) == {"bayes"}
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "1 total, 1 ok, 0 failed, 0 remaining" in capsys.readouterr().out
    assert main(["results", str(out), "--format", "csv"]) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(table["method"]) == {"em", "bayes"}


def test_an_executor_written_to_the_protocol_is_closed_when_the_run_stops_early(
    tmp_path: Path,
) -> None:
    from workbench.study.config import parse_study
    from workbench.study.executors import Executor
    from workbench.study.runner import run_study

    events: list[str] = []

    class InProcess:
        description = "in a test"
        chain_cores: int | None = None

        def run(self, fn, items):  # a generator, as Executor.run declares
            try:
                for item in items:
                    yield fn(item)
            finally:
                events.append("closed")

    executor: Executor = InProcess()
    config = parse_study(
        'name = "p"\nreplications = 3\n[scenario]\nn_components = 2\nn_features = 1\n'
        "n_train = 40\nn_test = 40\n[design]\noverlap = [0.01, 0.9999]\n"
        "[methods.em]\nn_init = 1\n[output]\nmax_errors = 0\n"
    )
    summary = run_study(config, output=tmp_path, executor=executor, progress=False)
    assert summary.aborted and summary.n_run < config.n_tasks
    assert events == ["closed"]


def test_the_first_task_of_each_model_structure_runs_first() -> None:
    # d in {1, 2} crossed with two overlaps: conditions 0, 1 are d=1 and 2, 3 are d=2, so
    # plain replication-major order would start both pool workers on the d=1 model
    text = MECHANICS.format(replications=3).replace(
        "overlap = [0.01, 0.05]", "n_features = [1, 2]\noverlap = [0.01, 0.05]"
    )
    specs = task_specs(parse_study(text, source="structures.toml"))
    order = [(s.condition_id, s.replication) for s in specs]
    assert order[:2] == [(0, 0), (2, 0)]
    rest = [(c, r) for r in range(3) for c in range(4) if (c, r) not in order[:2]]
    assert order[2:] == rest
    assert [s.affinity[0] for s in specs[:2]] == [1, 2]


class _Item(NamedTuple):
    name: str
    affinity: str
    seconds: float = 0.05


def _worker_pid(item: _Item) -> tuple[str, int]:
    time.sleep(item.seconds)
    return item.name, os.getpid()


def test_a_free_worker_takes_its_own_affinity_then_a_new_one_then_any() -> None:
    items = [_Item("x0", "x"), _Item("y0", "y"), _Item("x1", "x"), _Item("z0", "z")]
    # nothing seen yet: the first item
    assert _next_item(items, [set(), set()], 0) == 0
    # worker 1 while worker 0 holds x: the first affinity no worker has run
    assert _next_item(items, [{"x"}, set()], 1) == 1
    # a worker that ran y takes y0 before the earlier x0
    assert _next_item(items, [{"x"}, {"y"}], 1) == 1
    assert _next_item(items, [{"x"}, {"y"}], 0) == 0
    # its own affinity gone: z, which no worker has run, before x, which the other runs
    assert _next_item(items[2:], [{"y"}, {"x"}], 0) == 1
    # nothing of its own and nothing new: the first item (it takes the others' work)
    assert _next_item(items[:3], [{"z"}, {"x", "y"}], 0) == 0
    # items without an affinity run in order
    assert _next_item([1, 2, 3], [{None}, set()], 0) == 0


def test_a_worker_that_runs_out_of_its_affinity_takes_the_others_items() -> None:
    # 8 x 1 s of y items: far longer than the lag between the two workers' start-ups
    items = [_Item("x0", "x")] + [_Item(f"y{i}", "y", 1.0) for i in range(8)]
    results = dict(LocalExecutor(2).run(_worker_pid, items))
    assert set(results) == {item.name for item in items}
    # both workers ran y items: the one that started on x did not sit idle
    assert len({results[f"y{i}"] for i in range(8)}) == 2
