"""The [selection] study table: config, the task step, the store, the report table, export, CLI."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.cli import main
from workbench.report import tables
from workbench.selection import CRITERIA
from workbench.simulate import Scenario, simulate
from workbench.study.choose_k import run_selection
from workbench.study.config import (
    SELECTION_CRITERIA,
    BayesOptions,
    ConfigError,
    EMOptions,
    SelectionOptions,
    load_study,
    parse_study,
)
from workbench.study.export import tidy_results
from workbench.study.runner import run_study
from workbench.study.store import StudyStore

BASE = """
name = "sel"
seed = 5
replications = {replications}
[scenario]
n_components = 2
n_features = 1
n_train = 60
n_test = 50
[design]
overlap = [0.001, 0.2]
[methods.em]
n_init = 1
"""


def _study(selection: str, replications: int = 1) -> str:
    return BASE.format(replications=replications) + "[selection]\n" + selection


# ------------------------------------------------------------------ config
def test_components_as_a_range_or_a_list() -> None:
    config = parse_study(_study('components = "1-4"\n'))
    assert config.selection == SelectionOptions(components=(1, 2, 3, 4))
    listed = parse_study(_study("components = [3, 1, 2]\n"))
    assert listed.selection is not None and listed.selection.components == (1, 2, 3)
    assert parse_study(BASE.format(replications=1)).selection is None


def test_the_criteria_vocabulary_is_selections() -> None:
    assert tuple(CRITERIA) == SELECTION_CRITERIA


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("components = [0, 1]", "selection.components = [0, 1] is not allowed; use a list"),
        ('components = "3-1"', 'selection.components = "3-1" is not allowed'),
        ("components = [1, 1]", "selection.components = [1, 1] is not allowed"),
        (
            "components = [1, 61]",
            "selection.components = [1, 61] is not allowed; K = 61 is more than n_train = 60",
        ),
        ('criteria = ["bic", "waic"]', 'selection.criteria = ["bic", "waic"] is not allowed'),
        ('covariance_types = ["full", "full"]', "selection.covariance_types"),
        ("bayes = 1", "selection.bayes = 1 is not allowed; use true or false"),
        ("bayes_replications = 0", "selection.bayes_replications = 0 is not allowed"),
        ("sparse_concentration = 0", "selection.sparse_concentration = 0 is not allowed"),
        ("k_max = 3", "unknown key selection.k_max"),
    ],
)
def test_bad_selection_values_are_one_line_errors(line: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_study(_study(line + "\n"), source="s.toml")
    message = str(info.value)
    assert message.startswith("s.toml: ") and expected in message
    assert "\n" not in message


def test_the_config_hash_changes_with_the_selection_options() -> None:
    plain = parse_study(BASE.format(replications=1)).config_hash()
    hashes = {
        plain,
        parse_study(_study('components = "1-3"\n')).config_hash(),
        parse_study(_study('components = "1-4"\n')).config_hash(),
        parse_study(_study('components = "1-4"\nbayes = true\n')).config_hash(),
        parse_study(_study('components = "1-4"\ncriteria = ["bic"]\n')).config_hash(),
    }
    assert len(hashes) == 5
    # more replications never change stored tasks
    assert (
        parse_study(_study('components = "1-3"\n', 1)).config_hash()
        == parse_study(_study('components = "1-3"\n', 7)).config_hash()
    )


def test_bayes_replications_limit_the_bayesian_parts() -> None:
    options = SelectionOptions(bayes=True, bayes_replications=2, sparse=True)
    assert [options.runs_bayes(r) for r in range(3)] == [True, True, False]
    assert all(options.runs_sparse(r) for r in range(3))
    assert not SelectionOptions().runs_bayes(0)


# ------------------------------------------------------------------ the task step
def test_a_k_whose_fits_all_fail_is_recorded_and_the_others_go_on() -> None:
    # Three triangles of repeated points: 3 components fit them exactly; a fourth must sit
    # on at most two distinct points, a singular covariance without reg_covar (as in
    # tests/test_selection.py).
    scenario = Scenario(n_components=3, n_features=2, n_train=90, n_test=10, overlap=0.001)
    dataset = simulate(scenario, np.random.default_rng(0))
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    X = np.repeat(np.concatenate([triangle, triangle + [10, 0], triangle + [0, 10]]), 10, axis=0)
    record = run_selection(
        replace(dataset, X_train=X),
        SelectionOptions(components=(1, 2, 3, 4, 5), n_init=2),
        em=EMOptions(reg_covar=0.0),
        bayes=BayesOptions(),
        seed=3,
        replication=0,
    )
    assert [(f.method, f.n_components) for f in record.failures] == [("em", 4), ("em", 5)]
    assert "collapsed" in record.failures[0].error
    assert {s.n_components for s in record.scores} == {1, 2, 3}
    assert {c.criterion: (c.chosen_k, c.outcome) for c in record.choices} == {
        "bic": (3, "correct"),
        "icl": (3, "correct"),
        "aic": (3, "correct"),
    }


# ------------------------------------------------------------------ a tiny study end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EM-only selection study: 2 conditions x 6 replications, K in 1..3, two types."""
    out = tmp_path_factory.mktemp("tiny") / "out"
    config = parse_study(
        _study('components = "1-3"\ncovariance_types = ["full", "spherical"]\n', 6),
        source="tiny.toml",
    )
    summary = run_study(config, output=out, progress=False)
    assert (summary.n_run, summary.n_failed) == (12, 0)
    return out


def test_each_stored_choice_is_the_minimum_of_its_stored_scores(tiny: Path) -> None:
    with sqlite3.connect(tiny / "study.db") as conn:
        best = pd.read_sql_query(
            """
            SELECT s.condition_id, s.replication, s.criterion, s.n_components, s.covariance_type
            FROM selection_scores AS s
            WHERE s.method = 'em' AND s.criterion IN ('bic', 'icl', 'aic')
              AND s.value = (SELECT MIN(t.value) FROM selection_scores AS t
                             WHERE t.condition_id = s.condition_id
                               AND t.replication = s.replication
                               AND t.method = 'em' AND t.criterion = s.criterion)
            ORDER BY 1, 2, 3
            """,
            conn,
        )
        choices = pd.read_sql_query(
            "SELECT * FROM selection_choices ORDER BY condition_id, replication, criterion", conn
        )
    assert len(choices) == 2 * 6 * 3
    assert (choices["true_k"] == 2).all()
    # In 1-D every covariance type gives the same fit, so minima tie: the choice goes to the
    # smaller K, then the earlier type in covariance_types ("full" before "spherical").
    key = ["condition_id", "replication", "criterion"]
    best = best.sort_values([*key, "n_components", "covariance_type"]).drop_duplicates(key)
    merged = choices.merge(best, on=key)
    assert len(merged) == len(choices)
    assert (merged["chosen_k"] == merged["n_components"]).all()
    assert (merged["covariance_type_x"] == merged["covariance_type_y"]).all()
    expected = np.where(
        merged["chosen_k"] < 2, "under", np.where(merged["chosen_k"] == 2, "correct", "over")
    )
    assert (merged["outcome"] == expected).all()


def test_the_report_table_recomputes_from_sql(tiny: Path) -> None:
    with StudyStore(tiny) as store:
        accuracy = tables.selection_accuracy(store.table("selection_choices"), store.conditions())
    with sqlite3.connect(tiny / "study.db") as conn:
        by_sql = pd.read_sql_query(
            """
            SELECT condition_id, criterion, COUNT(*) AS n_sim,
                   AVG(outcome = 'correct') AS correct, AVG(outcome = 'under') AS under,
                   AVG(outcome = 'over') AS over
            FROM selection_choices GROUP BY condition_id, criterion
            """,
            conn,
        )
    merged = accuracy.merge(by_sql, on=["condition_id", "criterion"], suffixes=("", "_sql"))
    assert len(merged) == len(accuracy) == 2 * 3
    for column in ("n_sim", "correct", "under", "over"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_sql"], rtol=0, atol=1e-12)
    p, n = merged["correct"], merged["n_sim"]
    np.testing.assert_allclose(merged["correct_mcse"], np.sqrt(p * (1 - p) / n))
    assert list(accuracy["criterion"][:3]) == ["bic", "icl", "aic"]


def test_results_export_the_selection_rows(tiny: Path) -> None:
    with StudyStore(tiny) as store:
        long = tidy_results(store)
        n_scores = len(store.table("selection_scores"))
    scores = long[long["quantity"] == "selection_score"]
    choices = long[long["quantity"] == "selection_choice"]
    assert len(scores) == n_scores and len(choices) == 36
    assert set(scores["fitted_k"]) == {1, 2, 3} and (scores["n_components"] == 2).all()
    assert scores["fit_status"].isna().all()
    assert set(choices["outcome"]) <= {"under", "correct", "over"}


# ------------------------------------------------------------------ CLI range form
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0-3", "'0-3' is not allowed"),
        ("5-2", "'5-2' is not allowed"),
        ("1-x", "'1-x' is not K or a range LOW-HIGH"),
    ],
)
def test_fit_rejects_bad_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n2\n3\n4\n")
    with pytest.raises(SystemExit) as info:
        main(["fit", str(data), "--components", value])
    assert info.value.code == 2
    assert expected in capsys.readouterr().err


def test_fit_range_above_n_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n2\n3\n")
    assert main(["fit", str(data), "--components", "1-4"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--components 4" in err and "3 observations" in err


def test_the_range_table_prints_bic_by_type_and_k_and_each_choice() -> None:
    from workbench.realdata.choose import MCLUST_NAMES, choose_components, format_choice

    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(-5, 1, (60, 2)), rng.normal(5, 1, (60, 2))])
    choice = choose_components(X, (1, 2, 3), loo=False, seed=0)
    text = format_choice(choice)
    assert "full (VVV)  tied (EEE)  diag (VVI)  spherical (VII)" in text
    top = choice.em.table.sort_values("bic_mclust", ascending=False).iloc[0]
    assert f"top three BIC: {MCLUST_NAMES[top.covariance_type]},2 = {top.bic_mclust:.2f}" in text
    assert choice.choices == {"bic": 2, "icl": 2, "aic": choice.em.choices["aic"].n_components}
    assert "choices: bic K=2" in text


def test_readme_table_of_bayesian_criteria_is_the_committed_report():
    """The README's choose_k_bayes table is read off reports/choose_k_bayes, cell by cell."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    accuracy = pd.read_csv(
        root / "reports" / "choose_k_bayes" / "tables" / "selection_accuracy.csv"
    )
    assert set(accuracy["n_sim"]) == {
        load_study(root / "experiments" / "choose_k_bayes.toml").replications
    }
    order = ["bic", "icl", "aic", "loo", "loo_stacking", "sparse"]

    def cell(row) -> str:
        return f"{row.correct:.2f} ({row.correct_mcse:.2f})" if row.correct < 1 else "1 (0)"

    for condition, rows in accuracy.groupby("condition"):
        overlap = condition.split("overlap")[1].split()[0]
        by_criterion = rows.set_index("criterion")
        cells = " | ".join(cell(by_criterion.loc[c]) for c in order)
        line = f"| {overlap} | {cells} |"
        assert line in readme, line
