"""Report: compare artifacts (accuracy, sparsity, bits, size, fine-tuning cost, latency) with figures."""

from sqft.report.api import ReportConfig, build_report, write_report_files
from sqft.report.collect import ReportRow, collect_row, collect_rows
from sqft.report.latency import LatencyConfig
from sqft.report.plots import plot_rank_distribution
from sqft.report.tables import markdown_table

__all__ = [
    "LatencyConfig",
    "ReportConfig",
    "ReportRow",
    "collect_row",
    "collect_rows",
    "markdown_table",
    "plot_rank_distribution",
    "build_report",
    "write_report_files",
]
