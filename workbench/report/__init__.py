"""The comparison report: plots, tables and the HTML/Markdown page (reads the store only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_getattr

if TYPE_CHECKING:
    from workbench.report.build import build_report

__all__ = ["build_report"]

__getattr__ = lazy_getattr(__name__, {"build_report": "workbench.report.build"})
