"""Run one benchmark measurement in a fresh Python process and read the JSON it prints last.

Each benchmark measures in a child process so that nothing (compiled models, imports, caches
in memory) is shared that a user's new process would not share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cache_env(folder: str | Path) -> dict[str, str]:
    """Environment variables that point PyTensor's and numba's disk caches into ``folder``.

    An empty folder makes a child compile from nothing, as on a fresh machine; a second
    child with the same folder starts from the caches the first one filled.
    """
    return {
        "PYTENSOR_FLAGS": f"base_compiledir={Path(folder) / 'pytensor'}",
        "NUMBA_CACHE_DIR": str(Path(folder) / "numba"),
    }


def run_child(
    code: str, args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
) -> dict:
    """Run ``python -c code *args`` and return the JSON object on its last stdout line.

    ``env`` is added to (and overrides) this process's environment. A failing child raises
    ``RuntimeError`` with the end of its stderr.
    """
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({args}, in {cwd}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
