"""Where the choosing-K modules sit in the one-way flow.

``workbench/selection.py`` is one floor above ``em/`` and ``bayes/`` and below ``study/``.
``tests/test_architecture.py`` has no layer for it yet (adding ``"selection"`` to its
``LAYERS``, between ``bayes``/``metrics`` and ``study``, is the integration step); until
then this file checks the new modules' imports with that placement.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"

# Layer of each top-level module with selection inserted (2.5: above bayes, below study).
LAYERS = {
    "mixture": 0,
    "em": 1,
    "simulate": 1,
    "align": 1,
    "bayes": 2,
    "metrics": 2,
    "selection": 2.5,
    "study": 3,
    "report": 4,
    "cli": 5,
}


def _imported_layers(path: Path) -> dict[str, float]:
    """Every workbench module ``path`` imports (also inside functions) and its layer."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "workbench" and len(parts) > 1:
                found[name] = LAYERS[parts[1]]
    return found


@pytest.mark.parametrize(
    ("relative", "own"),
    [
        ("selection.py", 2.5),
        ("em/criteria.py", 1),
        ("bayes/loo.py", 2),
        ("bayes/sparse.py", 2),
    ],
)
def test_new_modules_import_only_to_their_left(relative, own):
    imported = _imported_layers(PACKAGE / relative)
    assert imported, relative
    assert {m: layer for m, layer in imported.items() if layer > own} == {}


def test_selection_is_imported_only_from_above():
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top in ("__init__", "selection"):
            continue
        if any(m.startswith("workbench.selection") for m in _imported_layers(path)):
            assert LAYERS[top] > LAYERS["selection"], path


def test_em_only_selection_does_not_import_pymc():
    # PyMC and ArviZ load only when a Bayesian function is called.
    tree = ast.parse((PACKAGE / "selection.py").read_text(encoding="utf-8"))
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    modules = {n.module for n in top_level if isinstance(n, ast.ImportFrom)}
    assert not any(m and (m.startswith("workbench.bayes") or "arviz" in m) for m in modules)
