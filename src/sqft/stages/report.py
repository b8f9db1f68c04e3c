"""The report stage: collect artifacts into one report (`sqft.report.build_report`), write it as an artifact
of its own (report.md, report.html, report.json, PNGs, manifest), atomically."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from sqft.artifacts import atomic_output, check_output, write_manifest
from sqft.report.api import ReportConfig, build_report, write_report_files
from sqft.report.collect import ReportRow

__all__ = ["run_report"]

log = logging.getLogger(__name__)


def run_report(
    paths: list[str | os.PathLike], output: str | os.PathLike, cfg: ReportConfig, overwrite: bool = False
) -> list[ReportRow]:
    """Collect the artifacts, optionally time them, and write the report directory; returns the rows."""
    check_output(output, overwrite, paths)
    rows, comparisons = build_report(paths, cfg)
    with atomic_output(output, overwrite, paths) as tmp:
        figures = write_report_files(tmp, rows, comparisons, cfg)
        write_manifest(
            tmp,
            "report",
            {**dataclasses.asdict(cfg), "artifacts": [str(Path(p).resolve()) for p in paths]},
            None,
            {"n_artifacts": len(rows), "pngs": [png.name for _, png in figures]},
        )
    log.info("report of %d artifacts -> %s", len(rows), output)
    return rows
