"""The package keeps its one-way data flow, and the code base stays lint- and type-clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"

# design -> simulate -> fit (EM, Bayes) -> evaluate -> store -> summarise -> report -> CLI.
# A module may import from its own layer or a layer to its left, never to its right.
LAYERS = {
    "_lazy": 0,
    "_platform": 0,
    "_validation": 0,
    "errors": 0,
    "mixture": 0,
    "draws": 0,
    "em": 1,
    "simulate": 1,
    "align": 1,
    "bayes": 2,
    "metrics": 2,
    "study": 3,
    "realdata": 3,
    "selection": 3,
    "report": 4,
    "cli": 5,
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "workbench" or len(parts) < 2 or parts[1] == "__init__":
        return None
    return LAYERS[parts[1]]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_every_top_level_module_has_a_layer():
    names = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert names - {"__init__"} <= set(LAYERS), names - set(LAYERS)


def test_imports_only_flow_left():
    violations = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(ROOT).with_suffix("")
        module = ".".join(relative.parts)
        own = _layer(module)
        if own is None:  # workbench/__init__.py re-exports the public API
            continue
        for imported in _imports(path):
            layer = _layer(imported)
            if layer is not None and layer > own:
                violations.append(f"{module} imports {imported}")
    assert violations == []


def test_mixture_depends_on_no_other_workbench_module():
    assert not any(m.startswith("workbench") for m in _imports(PACKAGE / "mixture.py"))


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    result = subprocess.run(
        [ruff, *command, "workbench", "tests", "experiments"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    # Settings and the files to check come from [tool.mypy] in pyproject.toml.
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_reading_configs_and_stores_imports_no_fitting_or_plotting_stack():
    # scipy too: it alone took 0.4 s of a 1.1 s `workbench --help` before it was made lazy
    heavy = ("pymc", "pytensor", "arviz", "matplotlib", "numba", "nutpie", "scipy")
    code = (
        "import sys\n"
        "import workbench, workbench.cli, workbench.study.config, workbench.study.store\n"
        "import workbench.study.export, workbench.study.locate, workbench.realdata\n"
        "from workbench.study import load_study, StudyStore, status_table\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_platform_specific_calls_live_in_one_module():
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_platform.py":
            continue
        text = path.read_text(encoding="utf-8")
        found += [
            f"{path.name}: {name}"
            for name in ("fcntl", "sched_getaffinity", "/proc")
            if name in text
        ]
    assert found == []
