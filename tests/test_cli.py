"""The workbench command line: one-line errors with exit code 2, STUDY as file or folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main

GOOD = """
name = "clitest"
seed = 1
replications = 1
[scenario]
n_components = 2
n_features = 1
n_train = 60
n_test = 60
[methods.em]
n_init = 1
"""

# one study file per kind of mistake, with a fragment its message must contain
BAD = {
    "unknown_key": ('name = "x"\nrepetitions = 2\n[methods.em]\n', "unknown key repetitions"),
    "bad_value": ('name = "x"\n[methods.em]\ntol = -1\n', "methods.em.tol = -1"),
    "bad_scenario": (
        'name = "x"\n[design]\nn_components = [1]\n[methods.em]\n',
        "n_components=1",
    ),
    "bad_factor": ('name = "x"\n[design]\nk = [2, 3]\n[methods.em]\n', "design.k"),
    "no_methods": ('name = "x"\n', "no methods"),
    "bad_toml": ("name = \n", "not valid TOML"),
}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_config_one_line_exit_2(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, fragment = BAD[kind]
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    for command in (["run", str(path)], ["status", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"workbench: error: {path}: ")
        assert fragment in lines[0]
    assert not (tmp_path / "reports").exists()


def test_bad_config_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(BAD["bad_value"][0])
    result = _cli("run", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "workbench: error: bad.toml: methods.em.tol = -1 is not allowed; use a number > 0"
    )
    assert "Traceback" not in result.stderr


def test_missing_study_file_and_folder_without_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "no such study file" in capsys.readouterr().err
    assert main(["status", str(tmp_path)]) == 2
    assert "holds no study results" in capsys.readouterr().err
    assert main(["results", str(tmp_path / "nope")]) == 2
    assert "neither a study TOML file nor an output folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["run", "s.toml", "--workers", "0"],
        ["run", "s.toml", "--workers", "1", "--dask-local", "1"],
        ["results", "s.toml", "--format", "xlsx"],
        ["fit", "data.csv"],
        ["frobnicate"],
        ["report", "study.toml", "--select", "1-2"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "usage: workbench" in capsys.readouterr().err


def test_status_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD + f'[output]\ndir = "{tmp_path / "out"}"\n')
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "not run yet" in out and "1 total, 0 ok, 0 failed, 1 remaining" in out


def test_fit_real_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, 120), rng.normal(3, 0.5, 80)])
    (tmp_path / "data.csv").write_text("x\n" + "\n".join(f"{v:.6f}" for v in X))
    args = ["fit", str(tmp_path / "data.csv"), "--components", "2", "--sampler", "advi"]
    assert main([*args, "--draws", "200", "--tune", "2000", "--n-init", "2"]) == 0
    out = capsys.readouterr().out
    assert "data: 200 observations, 1 features; 2 components" in out
    em_line = next(line for line in out.splitlines() if "at the EM estimate" in line)
    assert float(em_line.split()[-1]) == pytest.approx(
        np.mean(np.log(0.6 * _normal_pdf(X, -3, 1) + 0.4 * _normal_pdf(X, 3, 0.5))), abs=0.05
    )
    table = [line.split() for line in out.splitlines() if "[" in line and "]" in line]
    rows = {row[0]: row for row in table if row[0].startswith(("weight", "mean", "cov"))}
    assert set(rows) == {"weight[0]", "weight[1]", "mean[0,0]", "mean[1,0]"} | {
        "cov[0,0,0]",
        "cov[1,0,0]",
    }
    assert float(rows["mean[0,0]"][1]) == pytest.approx(-3, abs=0.3)  # the EM estimate
    assert "sandwich (Wald interval) SE and 94% interval" in out
    for name, em, se, em_lower, em_upper, post_mean, _, lower, upper, inside in rows.values():
        assert float(lower) <= float(post_mean) <= float(upper), name
        assert (float(lower) <= float(em) <= float(upper)) == (inside == "yes"), name
        # the Wald interval printed is the estimate +- z(0.97) se (4 significant digits)
        half = 1.8808 * float(se)
        assert float(em_lower) == pytest.approx(float(em) - half, rel=2e-3, abs=2e-3), name
        assert float(em_upper) == pytest.approx(float(em) + half, rel=2e-3, abs=2e-3), name
    # about 120 and 80 points: the SE of weight[0] is near sqrt(0.6 * 0.4 / 200) = 0.035
    assert float(rows["weight[0]"][2]) == pytest.approx(0.035, rel=0.2)


def test_fit_chooses_the_se_method_and_says_why_ses_are_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.realdata import fit as realdata_fit
    from workbench.realdata.display import format_fit

    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(-3, 1, (60, 1)), rng.normal(3, 0.5, (40, 1))])
    calls: list[str] = []

    def failing(model: object, data: np.ndarray, *, method: str) -> object:
        calls.append(method)
        raise ValueError("component 1 holds an effective 1.2 points")

    monkeypatch.setattr(realdata_fit, "standard_errors", failing)
    result = realdata_fit.fit_data(
        X, 2, sampler="advi", draws=100, tune=500, n_init=1, se_method="hessian"
    )
    assert calls == ["hessian"]
    assert result.se_error == "component 1 holds an effective 1.2 points"
    assert result.comparison["em_se"].isna().all()
    text = format_fit(result, X)
    assert "EM standard errors are not available: component 1 holds" in text


def _normal_pdf(x: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("x,y\n1,2\n3,abc\n", "column 'y' holds the non-numeric value 'abc'"),
        ("x,y\n1,2\n3,\n", "row 2, column 'y' is missing"),
        ("", "the file is empty"),
    ],
)
def test_fit_bad_data_one_line_exit_2(
    content: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["fit", str(path), "--components", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and fragment in err


def test_traceback_flag_shows_the_user_error_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD["bad_value"][0])
    assert main(["--traceback", "status", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("workbench: error:")


def test_our_own_bugs_keep_their_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a ValueError that is not a WorkbenchError is a bug: it must not become a one-liner
    import workbench.study.export as export

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal invariant broke")

    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    assert main(["run", str(path), "--no-progress", "--output", str(tmp_path / "out")]) == 0
    monkeypatch.setattr("workbench.cli.write_results", broken)
    assert export.write_results is not broken
    with pytest.raises(ValueError, match="internal invariant"):
        main(["results", str(tmp_path / "out")])


def test_fit_with_more_components_than_rows_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "tiny.csv"
    data.write_text("1.0\n2.0\n3.0\n")
    assert main(["fit", str(data), "--components", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--components 4" in err and "3 observations" in err
