"""Tests of the report's tables on small hand-made store tables."""

import math

import numpy as np
import pandas as pd
import pytest

from workbench.report import tables

CONDITIONS = pd.DataFrame({"condition_id": [0, 1], "label": ["easy", "hard"]})


def test_format_mcse_rounds_to_the_mcse():
    assert tables.format_mcse(0.012345, 0.00321) == "0.0123 (0.0032)"
    assert tables.format_mcse(-2.3456, 0.012) == "-2.346 (0.012)"
    assert tables.format_mcse(-1234.4, 25.0) == "-1234 (25)"
    assert tables.format_mcse(1.0, 0.0) == "1 (0)"
    assert tables.format_mcse(8.4e-17, 3e-17) == "8.4e-17 (3e-17)"
    assert tables.format_mcse(0.5, math.nan) == "0.5"
    assert tables.format_mcse(math.nan, 0.1) == ""


def test_failed_simulation_and_failed_fit_are_flagged_separately():
    tasks = pd.DataFrame(
        {
            "condition_id": [0, 0, 1],
            "replication": [0, 1, 0],
            "seed": [11, 12, 21],
            "status": ["failed", "failed", "ok"],
            "error": [
                "simulation failed: ValueError: overlap unreachable",
                "bayes fit failed",
                None,
            ],
        }
    )
    fits = pd.DataFrame(
        {
            "condition_id": [0, 0, 1, 1],
            "replication": [1, 1, 0, 0],
            "method": ["em", "bayes", "em", "bayes"],
            "status": ["ok", "failed", "ok", "ok"],
            "error": [None, "SamplingError: boom\nmore", None, None],
        }
    )
    diagnostics = pd.DataFrame(
        {
            "condition_id": [0, 0, 1, 1, 1, 1, 1],
            "replication": [1, 1, 0, 0, 0, 0, 0],
            "method": ["em", "em", "em", "em", "bayes", "bayes", "bayes"],
            "key": [
                "converged",
                "n_iter",
                "converged",
                "n_iter",
                "max_r_hat",
                "min_ess_bulk",
                "sampler",
            ],
            "value": [1, 12, 1, 8, 1.004, 1200.0, "nutpie"],
        }
    )
    flagged = tables.flagged_fits(tasks, fits, diagnostics, CONDITIONS)
    assert list(flagged["problem"]) == ["task failed", "fit failed"]
    assert list(flagged["replication"]) == [0, 1]
    assert list(flagged["seed"]) == [11, 12]
    assert list(flagged["condition"]) == ["easy", "easy"]
    assert flagged["detail"].iloc[0] == "simulation failed: ValueError: overlap unreachable"
    assert flagged["detail"].iloc[1] == "SamplingError: boom"
    wide = tables.fit_diagnostics(diagnostics)
    assert wide["sampler"].dropna().tolist() == ["nutpie"]
    assert wide["max_r_hat"].dtype == float


def test_metric_differences_are_paired_by_replication():
    rows = []
    em = {0: -2.0, 1: -2.5, 2: -1.0}
    bayes = {0: -1.9, 1: -2.3, 3: -1.5}  # replication 2 has no bayes, 3 no em
    for method, values in (("em", em), ("bayes", bayes)):
        for replication, value in values.items():
            rows.append((0, replication, method, "lpd_test", value))
    metrics = pd.DataFrame(
        rows, columns=["condition_id", "replication", "method", "metric", "value"]
    )
    diffs = tables.metric_differences(metrics, CONDITIONS, metric_names=["lpd_test"])
    assert diffs["method"].item() == "bayes - em"
    assert diffs["n_sim"].item() == 2
    paired = np.array([0.1, 0.2])
    assert diffs["mean"].item() == pytest.approx(paired.mean())
    assert diffs["mcse"].item() == pytest.approx(paired.std(ddof=1) / np.sqrt(2))
    assert diffs["condition"].item() == "easy"


def test_markdown_table_escapes_pipes_and_blanks_nan():
    frame = pd.DataFrame({"a": ["x|y", "z"], "b": [1.5, math.nan]})
    assert tables.to_markdown(frame).splitlines() == [
        "| a | b |",
        "| --- | --- |",
        "| x\\|y | 1.5 |",
        "| z |  |",
    ]
