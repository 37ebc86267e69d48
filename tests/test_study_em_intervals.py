"""EM confidence intervals in studies: config keys, storage, coverage, failures, export.

One small EM-only study (no sampler: fast) is run once per module with every interval
method; the tests read its store back through SQL, the report's tables and the export.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from workbench.report.tables import flagged_fits, interval_table
from workbench.study import task as task_module
from workbench.study.config import ConfigError, EMOptions, parse_study
from workbench.study.export import tidy_results
from workbench.study.runner import run_study, task_specs
from workbench.study.store import StudyStore
from workbench.study.task import run_task

STUDY = """
name = "emint"
seed = 5
replications = 4
[scenario]
n_components = 2
n_features = 2
n_train = 150
n_test = 50
overlap = 0.01
[methods.em]
tol = 1e-8
intervals = ["bootstrap", "hessian", "opg", "sandwich"]
n_boot = 49
[output]
levels = [0.5, 0.95]
"""
INTERVALS = {
    "hessian-wald",
    "opg-wald",
    "sandwich-wald",
    "nonparametric-bootstrap-percentile",
}
N_PARAMS = 2 + 2 * 2 + 2 * 3  # weights, means, upper triangles of 2x2 covariances


def _sql(directory: Path, query: str) -> pd.DataFrame:
    with sqlite3.connect(directory / "study.db") as conn:
        return pd.read_sql_query(query, conn)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emint") / "out"
    summary = run_study(parse_study(STUDY, source="emint.toml"), output=out, progress=False)
    assert summary.n_run == 4 and summary.n_failed == 0
    return out


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ('intervals = ["hessian", "wald"]', 'methods.em.intervals = ["hessian", "wald"]'),
        ('intervals = ["opg", "opg"]', "a list of distinct names from 'hessian', 'opg'"),
        ('intervals = "sandwich"', "methods.em.intervals"),
        ('intervals = ["bootstrap"]\nn_boot = 1', "methods.em.n_boot = 1 is not allowed"),
        ('intervals = ["bootstrap"]\nn_boot = 99.5', "use an integer >= 2"),
        ('intervals = ["bootstrap"]\nbootstrap = "jackknife"', "'nonparametric', 'parametric'"),
        ('intervals = ["hessian"]\nwald_scale = "log"', "'natural', 'transformed'"),
        ('intervals = ["hessian"]\nn_boot = 199', 'without "bootstrap" in methods.em.intervals'),
        ('bootstrap = "weighted"', 'without "bootstrap" in methods.em.intervals'),
        ('intervals = ["bootstrap"]\nwald_scale = "natural"', "without an SE method"),
    ],
)
def test_bad_interval_options_are_one_line_errors(table: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_study(f'name = "x"\n[methods.em]\n{table}\n', source="x.toml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("x.toml: ")
    assert fragment in message


def test_interval_options_parse_in_canonical_order() -> None:
    config = parse_study(STUDY, source="emint.toml")
    options = config.methods["em"]
    assert isinstance(options, EMOptions)
    assert options.intervals == ("hessian", "opg", "sandwich", "bootstrap")
    assert options.se_methods == ("hessian", "opg", "sandwich")
    assert (options.n_boot, options.bootstrap, options.wald_scale) == (
        49,
        "nonparametric",
        "natural",
    )


def test_config_hash_changes_with_every_interval_option_that_is_used() -> None:
    def digest(em: str) -> str:
        return parse_study(f'name = "x"\n[methods.em]\n{em}\n').config_hash()

    base = digest('intervals = ["hessian", "bootstrap"]')
    changed = [
        digest('intervals = ["sandwich", "bootstrap"]'),
        digest('intervals = ["hessian", "bootstrap"]\nn_boot = 199'),
        digest('intervals = ["hessian", "bootstrap"]\nbootstrap = "parametric"'),
        digest('intervals = ["hessian", "bootstrap"]\nwald_scale = "transformed"'),
    ]
    assert len({base, *changed}) == 5
    # the order of the list and defaults written out change nothing
    assert digest('intervals = ["bootstrap", "hessian"]\nn_boot = 999') == base
    # a study without intervals keeps the hash it had before these options existed
    assert digest("intervals = []") == digest("") == digest("n_init = 3")
    assert "intervals" not in parse_study('name = "x"\n[methods.em]\n').to_dict()["methods"]["em"]


# ------------------------------------------------------------------------------ storage


def test_every_interval_method_is_stored_at_every_level(study: Path) -> None:
    counts = _sql(
        study,
        "SELECT interval, level, COUNT(*) AS n FROM intervals WHERE method = 'em' "
        "GROUP BY interval, level",
    )
    assert set(counts["interval"]) == INTERVALS
    assert set(counts["level"]) == {0.5, 0.95}
    assert (counts["n"] == 4 * N_PARAMS).all()
    ses = _sql(study, "SELECT se_method, COUNT(*) AS n FROM standard_errors GROUP BY se_method")
    assert dict(zip(ses["se_method"], ses["n"], strict=True)) == {
        m: 4 * N_PARAMS for m in ("hessian", "opg", "sandwich", "bootstrap")
    }
    diagnostics = _sql(study, "SELECT key, value FROM diagnostics WHERE replication = 0")
    keys = set(diagnostics["key"])
    assert {"inference_seconds", "bootstrap_failed_refits", "bootstrap_label_mismatches"} <= keys
    assert not any(k.startswith("se_error_") for k in keys)


def test_stored_intervals_agree_with_the_stored_estimates_and_ses(study: Path) -> None:
    rows = _sql(
        study,
        "SELECT i.replication, i.parameter, i.interval, i.level, i.lower, i.upper, i.covered, "
        "e.estimate, e.truth, s.se FROM intervals i JOIN estimates e USING "
        "(condition_id, replication, method, parameter) LEFT JOIN standard_errors s ON "
        "s.condition_id = i.condition_id AND s.replication = i.replication AND "
        "s.method = i.method AND s.parameter = i.parameter AND "
        "s.se_method = substr(i.interval, 1, instr(i.interval, '-') - 1)",
    )
    wald = rows[rows["interval"].str.endswith("-wald")]
    z = norm.ppf(0.5 + wald["level"] / 2)
    # aligned to the truth together: the Wald interval is centred on the stored estimate
    np.testing.assert_allclose(wald["lower"], wald["estimate"] - z * wald["se"], atol=1e-12)
    np.testing.assert_allclose(wald["upper"], wald["estimate"] + z * wald["se"], atol=1e-12)
    covered = (rows["lower"] <= rows["truth"]) & (rows["truth"] <= rows["upper"])
    np.testing.assert_array_equal(rows["covered"], covered.astype(int))
    # the 50% percentile interval sits inside the 95% one
    boot = rows[rows["interval"] == "nonparametric-bootstrap-percentile"]
    wide = boot.pivot_table(index=["replication", "parameter"], columns="level", values="lower")
    assert (wide[0.95] <= wide[0.5]).all()
    # the SEs are those of the model's estimates: the means' SEs are near sd / sqrt(n_k)
    means = rows[(rows["interval"] == "hessian-wald") & rows["parameter"].str.startswith("mean")]
    assert means["se"].between(0.01, 1.0).all()


def test_report_coverage_is_recomputed_from_sql(study: Path) -> None:
    with StudyStore(study) as store:
        table = interval_table(
            store.table("estimates"),
            store.table("intervals"),
            store.table("standard_errors"),
            store.conditions(),
        )
    sql = _sql(
        study,
        "SELECT method, parameter, interval, level, AVG(covered) AS coverage, COUNT(*) AS n "
        "FROM intervals GROUP BY method, parameter, interval, level",
    )
    merged = sql.merge(
        table, on=["method", "parameter", "interval", "level"], suffixes=("_sql", "")
    )
    assert len(merged) == len(sql) == len(table) == len(INTERVALS) * 2 * N_PARAMS
    np.testing.assert_allclose(merged["coverage"], merged["coverage_sql"], rtol=1e-12)
    c, n = merged["coverage"], merged["n"]
    np.testing.assert_allclose(merged["coverage_mcse"], np.sqrt(c * (1 - c) / n), rtol=1e-12)
    assert merged["se_ratio"].notna().all() and merged["width"].gt(0).all()


def test_export_has_interval_and_se_columns(study: Path) -> None:
    with StudyStore(study) as store:
        tidy = tidy_results(store)
    parameters = tidy[tidy["quantity"] == "parameter"]
    assert len(parameters) == 4 * N_PARAMS
    for name in ("hessian", "opg", "sandwich", "bootstrap"):
        assert parameters[f"se_{name}"].notna().all()
    for interval in INTERVALS:
        for level in ("50", "95"):
            for bound in ("lower", "upper", "covered"):
                assert parameters[f"{interval}{level}_{bound}"].notna().all()
    errors = _sql(
        study,
        "SELECT replication, parameter, se FROM standard_errors WHERE se_method = 'opg'",
    )
    merged = parameters.merge(
        errors, left_on=["replication", "name"], right_on=["replication", "parameter"]
    )
    np.testing.assert_allclose(merged["se_opg"], merged["se"], rtol=1e-12)


# ------------------------------------------------------------------------------ failures


def test_a_failing_se_method_is_stored_with_its_reason_and_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = task_module.standard_errors
    reason = "component 1 holds an effective 2.1 points (weight 0.014); the matrix is singular"

    def hessian_fails(model, X, *, method):  # noqa: ANN001, ANN202 - a stand-in
        if method == "hessian":
            raise ValueError(reason)
        return real(model, X, method=method)

    monkeypatch.setattr(task_module, "standard_errors", hessian_fails)
    config = parse_study(
        STUDY.replace('"bootstrap", "hessian", "opg", "sandwich"', '"hessian", "sandwich"')
        .replace("n_boot = 49\n", "")
        .replace("replications = 4", "replications = 1"),
        source="fail.toml",
    )
    record = run_task(task_specs(config)[0])
    assert record.status == "ok"
    out = tmp_path / "fail"
    StudyStore.create(
        out,
        name="fail",
        config_toml="",
        config=config.to_dict(),
        config_hash=config.config_hash(),
        conditions=[(s.label(), s.to_dict()) for s in config.conditions],
    ).close()
    with StudyStore(out) as store:
        store.write_task(record)
        tables = {name: store.table(name) for name in ("tasks", "fits", "diagnostics")}
        conditions = store.conditions()
        tidy = tidy_results(store)
    # the estimate stands; the sandwich is there; the Hessian has a reason, no rows
    assert len(_sql(out, "SELECT * FROM estimates WHERE method = 'em'")) == N_PARAMS
    assert set(_sql(out, "SELECT DISTINCT se_method FROM standard_errors")["se_method"]) == {
        "sandwich"
    }
    assert set(_sql(out, "SELECT DISTINCT interval FROM intervals")["interval"]) == {
        "sandwich-wald"
    }
    stored = _sql(out, "SELECT value FROM diagnostics WHERE key = 'se_error_hessian'")
    assert stored["value"].tolist() == [reason]
    flagged = flagged_fits(tables["tasks"], tables["fits"], tables["diagnostics"], conditions)
    assert flagged[["method", "problem", "detail"]].values.tolist() == [
        ["em", "hessian SEs not available", reason]
    ]
    diagnostic = tidy[(tidy["quantity"] == "diagnostic") & (tidy["name"] == "se_error_hessian")]
    assert diagnostic["text"].tolist() == [reason]
    parameters = tidy[tidy["quantity"] == "parameter"]
    assert "se_hessian" not in parameters and parameters["se_sandwich"].notna().all()


def test_a_store_of_another_schema_is_refused_in_one_line(study: Path, tmp_path: Path) -> None:
    import shutil

    from workbench.study.store import StoreError

    copy = tmp_path / "old"
    shutil.copytree(study, copy)
    with sqlite3.connect(copy / "study.db") as conn:
        conn.execute("UPDATE study SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="store schema 1, this one reads 2"):
        StudyStore(copy)
