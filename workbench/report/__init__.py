"""The comparison report: plots, tables and the HTML/Markdown page (reads the store only)."""

from workbench.report.build import build_report

__all__ = ["build_report"]
