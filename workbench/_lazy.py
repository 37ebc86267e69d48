"""Lazy package exports: a name is imported from its home module on first access.

Heavy libraries (PyMC, PyTensor, ArviZ, matplotlib, numba) load only when a fit or a plot
needs them, so reading a config or a stored study starts in well under a second.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``homes[name]`` on demand.

    Parameters
    ----------
    package : str
        The package's ``__name__`` (for the error message).
    homes : mapping of str to str
        Exported name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(importlib.import_module(homes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
