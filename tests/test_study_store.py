"""The SQLite store: atomic task writes, reading back, tidy export and status."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from workbench.em import EMHistory
from workbench.metrics import Interval, ParameterEstimate
from workbench.mixture import MixtureParams
from workbench.simulate import Dataset, Scenario
from workbench.study.export import status_table, tidy_results, write_results
from workbench.study.store import DB_NAME, FitRecord, StoreError, StudyStore, TaskRecord, run_lock

TRUTH = MixtureParams([0.4, 0.6], [[-1.0], [2.0]], [[[1.0]], [[0.5]]])


def _store(tmp_path: Path) -> StudyStore:
    return StudyStore.create(
        tmp_path,
        name="unit",
        config_toml='name = "unit"',
        config={"name": "unit", "replications": 3},
        config_hash="abc",
        conditions=[("cond A", {"n_train": 10}), ("cond B", {"n_train": 20})],
    )


def _dataset() -> Dataset:
    return Dataset(
        X_train=np.array([[0.1], [0.2]]),
        y_train=np.array([0, 1]),
        X_test=np.array([[0.3]]),
        y_test=np.array([1]),
        truth=TRUTH,
        scenario=Scenario(n_components=2, n_features=1),
    )


def _record(condition: int, replication: int, *, draws: bool = False) -> TaskRecord:
    em = FitRecord(
        method="em",
        status="ok",
        fit_seconds=0.01,
        metrics={"loglik_train_estimate": -1.5, "ari": float("nan")},
        estimates=[
            ParameterEstimate("weight[0]", "weight", 0.4, 0.45, np.nan, ()),
            ParameterEstimate("mean[0,0]", "mean", -1.0, -0.9, np.nan, ()),
        ],
        diagnostics={"converged": True, "n_iter": np.int64(7), "lower_bound": np.float64(-1.5)},
        em_trace=np.array([-2.0, -1.6, -1.5]),
        em_history=EMHistory(
            lower_bound=np.array([-2.0, -1.5]),
            weights=np.full((2, 2), 0.5),
            means=np.zeros((2, 2, 1)),
            covariances=np.ones((2, 2, 1, 1)),
        ),
        params=TRUTH,
    )
    posterior = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"mu": (("chain", "draw"), np.arange(6.0).reshape(2, 3))})}
    )
    bayes = FitRecord(
        method="bayes",
        status="ok",
        fit_seconds=1.0,
        metrics={"loglik_train_estimate": -1.4},
        estimates=[
            ParameterEstimate(
                "weight[0]",
                "weight",
                0.4,
                0.41,
                0.05,
                (
                    Interval("central", 0.9, 0.3, 0.5, True),
                    Interval("hdi", 0.9, 0.31, 0.52, True),
                    Interval("central", 0.5, 0.38, 0.44, False),
                ),
            )
        ],
        diagnostics={"max_r_hat": 1.002, "sampler": "nutpie", "label_switching": False},
        params=TRUTH,
        draws=posterior if draws else None,
    )
    return TaskRecord(
        condition_id=condition,
        replication=replication,
        seed=2**62 + condition,
        status="ok",
        started_at="2026-11-30T10:00:00+00:00",
        finished_at="2026-11-30T10:00:01+00:00",
        seconds=1.0,
        worker="host:1",
        truth=TRUTH,
        dataset=_dataset() if draws else None,
        kept=draws,
        fits=[em, bayes],
    )


def test_task_round_trips(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.write_task(_record(0, 0, draws=True))
        assert store.finished_tasks() == {(0, 0): "ok"}
        assert store.table("tasks")["seed"].item() == 2**62
        params = store.load_params(0, 0)
        assert set(params) == {"truth", "em", "bayes"}
        np.testing.assert_array_equal(params["truth"].covariances, TRUTH.covariances)
        np.testing.assert_array_equal(store.load_dataset(0, 0)["X_train"], [[0.1], [0.2]])
        history = store.load_em_history(0, 0)
        assert history["means"].shape == (2, 2, 1)
        draws = store.load_draws(0, 0, "bayes")
        np.testing.assert_array_equal(draws["posterior"]["mu"].values, np.arange(6.0).reshape(2, 3))
        assert (tmp_path / "draws" / "c000-r0000-bayes.nc").is_file()
        diagnostics = store.table("diagnostics").set_index(["method", "key"])["value"]
        assert diagnostics["em", "converged"] == 1 and diagnostics["em", "n_iter"] == 7
        assert diagnostics["bayes", "sampler"] == "nutpie"
        traces = store.table("em_traces")
        assert traces["iteration"].tolist() == [1, 2, 3]
        metrics = store.table("metrics").set_index(["method", "metric"])["value"]
        assert np.isnan(metrics["em", "ari"])  # NaN is stored as NULL and read back as NaN


def test_failed_write_leaves_no_rows(tmp_path: Path) -> None:
    record = _record(1, 0)
    # a duplicate parameter row violates a primary key half-way through the task's rows
    record.fits[1].estimates.append(record.fits[1].estimates[0])
    with _store(tmp_path) as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.write_task(record)
        for table in ("tasks", "fits", "metrics", "estimates", "params", "em_traces"):
            assert store.table(table).empty, table
        store.write_task(_record(1, 0))
        assert store.finished_tasks() == {(1, 0): "ok"}


def test_a_task_cannot_be_stored_twice(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.write_task(_record(0, 1))
        with pytest.raises(sqlite3.IntegrityError):
            store.write_task(_record(0, 1))
        assert len(store.table("metrics")) == 3


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    _store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_status_counts_ok_failed_remaining(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.write_task(_record(0, 0))
        store.write_task(_record(0, 1))
        failed = TaskRecord(
            condition_id=1,
            replication=0,
            seed=5,
            status="failed",
            started_at="t",
            finished_at="t",
            seconds=0.1,
            worker="w",
            error="simulation failed: ValueError: boom",
            traceback="Traceback ...",
        )
        assert failed.n_errors == 1
        store.write_task(failed)
        table = status_table(store).set_index("condition_id")
        assert table.loc[0, ["ok", "failed", "remaining"]].tolist() == [2, 0, 1]
        assert table.loc[1, ["ok", "failed", "remaining"]].tolist() == [0, 1, 2]
        assert status_table(store, replications=1).loc[0, "remaining"] == 0


def test_tidy_results_one_row_per_task_method_quantity(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.write_task(_record(0, 0))
        store.write_task(_record(1, 2))
        table = tidy_results(store)
        write_results(store, tmp_path / "r.parquet", "parquet")
        write_results(store, tmp_path / "r.csv", "csv")
    keys = ["condition_id", "replication", "method", "quantity", "name"]
    assert not table.duplicated(keys).any()
    # per task: em has 2 metrics + 2 parameters + 3 diagnostics, bayes 1 + 1 + 3
    assert len(table) == 2 * (7 + 5)
    row = table.query("method == 'bayes' and quantity == 'parameter' and replication == 2")
    assert row["central90_lower"].item() == 0.3 and row["hdi90_upper"].item() == 0.52
    assert row["central50_covered"].item() == 0 and row["central90_covered"].item() == 1
    assert row["condition"].item() == "cond B" and row["n_train"].item() == 20
    text = table.query("quantity == 'diagnostic' and name == 'sampler'")["text"]
    assert set(text) == {"nutpie"}
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "r.parquet"), table, check_dtype=False)
    assert len(pd.read_csv(tmp_path / "r.csv")) == len(table)


def test_run_lock_refuses_a_second_run(tmp_path: Path) -> None:
    with run_lock(tmp_path):
        with pytest.raises(ValueError, match="another workbench run"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released
        pass


def test_opening_a_folder_without_a_store_fails(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no study results"):
        StudyStore(tmp_path)
