"""The README's Python examples run, and print what their comments say.

Every ```python block runs, in order, in one namespace (later blocks use earlier names) and
in a temporary folder. A line ``print(...)  # text`` must print exactly ``text``. A block
preceded by ``<!-- readme-test: skip (reason) -->`` is not run; the reason is required.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(
    r"(<!-- readme-test: skip \((?P<reason>[^)]+)\) -->\s*)?```python\n(?P<code>.*?)```", re.S
)
_PRINT = re.compile(r"^(?P<indent>\s*)print\((?P<args>.*)\)\s+#\s(?P<expected>.+)$")


def _blocks() -> list[tuple[str, str | None]]:
    return [(m["code"], m["reason"]) for m in _BLOCK.finditer(README.read_text(encoding="utf-8"))]


def _checked(code: str) -> str:
    """Each ``print(...)  # expected`` becomes an assertion on what it prints."""
    lines = []
    for line in code.splitlines():
        match = _PRINT.match(line)
        if match is None:
            lines.append(line)
            continue
        indent, args, expected = match["indent"], match["args"], match["expected"].strip()
        lines.append(
            f"{indent}_shown = io.StringIO(); print({args}, file=_shown)\n"
            f"{indent}assert _shown.getvalue().strip() == {expected!r}, "
            f"(_shown.getvalue().strip(), {expected!r})"
        )
    return "\n".join(lines)


def test_readme_has_python_examples_with_checked_output():
    blocks = _blocks()
    assert len(blocks) >= 2
    assert sum(bool(_PRINT.match(line)) for code, _ in blocks for line in code.splitlines()) >= 3


@pytest.mark.slow
# PyTensor's C backend warns once that it found no BLAS; it is informational here.
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")
def test_readme_python_examples_run_and_print_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"io": io}
    ran = 0
    for code, skip_reason in _blocks():
        if skip_reason is not None:
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(_checked(code), str(README), "exec"), namespace)  # noqa: S102
        ran += 1
    assert ran >= 2
