"""Reports: compare artifacts in one Markdown + HTML report with PNG figures (paper Tables 6/7, Figs. 4/5).

Plumbing only: rows come from `collect`, cells from `tables`, figures from `plots`, latency from `latency`.
`build_report` gathers them, `write_report_files` writes report.md, report.html (figures embedded),
report.json (the rows as data) and the PNGs; the report stage (`sqft.stages.report.run_report`) writes them
into its artifact atomically, with a manifest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqft.errors import SqftError, require
from sqft.report import plots
from sqft.report.collect import ReportRow, collect_rows
from sqft.report.compare import Comparison, baseline_index, compare_rows
from sqft.report.html import render_html
from sqft.report.latency import LatencyConfig, measure_artifact
from sqft.report.tables import comparison_cells, markdown_comparison, markdown_table, table_cells

__all__ = [
    "ReportConfig",
    "add_latency",
    "build_report",
    "write_figures",
    "report_notes",
    "comparison_heading",
    "render_markdown",
    "write_report_files",
]

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    """What the report contains; `latency` is used only with `measure_latency`.

    `compare`: a table of every artifact against `baseline` (a label or path; None: the first artifact), the
    paired bootstrap interval (`bootstrap_resamples`, `seed`) of each accuracy difference where both artifacts
    hold per-item outcomes on the same items.
    """

    title: str = "sqft report"
    measure_latency: bool = False
    plots: bool = True
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    compare: bool = True
    baseline: str | None = None
    bootstrap_resamples: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise SqftError("the report title is empty: pass --title TEXT or leave the default")
        if self.bootstrap_resamples < 1:
            raise SqftError(f"bootstrap_resamples={self.bootstrap_resamples} must be positive (e.g. 10000)")


def add_latency(rows: list[ReportRow], cfg: LatencyConfig) -> None:
    """Measure every row's final model in place (rows without a loadable model keep "–", with a warning)."""
    for row in rows:
        try:
            figures = measure_artifact(row.path, cfg)
        except SqftError as e:  # one unloadable model leaves its cells empty, not the whole report
            log.warning("latency of '%s' not measured: %s", row.label, e)
            continue
        if figures is not None:
            row.latency_ms_per_token = figures["latency_ms_per_token"]
            row.tokens_per_second = figures["tokens_per_second"]


def _file_name(label: str) -> str:
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "artifact"


def write_figures(rows: list[ReportRow], directory: Path) -> list[tuple[str, Path]]:
    """Every figure the rows support, as (caption, PNG path) in `directory`."""
    out: list[tuple[str, Path]] = []
    acc = plots.plot_accuracy_per_pipeline(rows, directory / "accuracy_per_pipeline.png")
    if acc is not None:
        out.append(("Accuracy per pipeline", acc))
    vs = plots.plot_accuracy_vs_sparsity(rows, directory / "accuracy_vs_sparsity.png")
    if vs is not None:
        out.append(("Accuracy vs sparsity (paper Fig. 5)", vs))
    for row in rows:
        if row.rank_config and row.rank_space:
            name = f"rank_distribution_{_file_name(row.label)}.png"
            try:
                png = plots.plot_rank_distribution(
                    row.rank_config, row.rank_space, directory / name, f"adapter rank per layer: {row.label}"
                )
            except SqftError as e:  # a configuration that does not fit its space: report, do not fail
                log.warning("no rank distribution for '%s': %s", row.label, e)
                continue
            out.append((f"Adapter rank per layer, {row.label} (paper Fig. 4)", png))
    return out


def report_notes(cfg: ReportConfig) -> list[str]:
    notes = [
        "Accuracy in %: gsm8k flexible_match (last number), math accuracy, multiple choice acc / acc_norm; "
        "perplexity as is. [lo, hi]: 95% Wilson score interval over the n items evaluated.",
        "Sparsity over the target linears; figures an artifact does not record are taken from its parent "
        "artifacts; '–' = not recorded.",
        "Size on disk: the files needed to run the model (an adapter-only artifact adds its base model).",
        "Fine-tuning time and peak memory as recorded by the finetune stage (GPU allocator peak on CUDA, "
        "process max RSS on CPU).",
    ]
    if cfg.compare:
        notes.append(
            "Comparison: accuracy minus the baseline's, in percentage points; [lo, hi] is the 95% percentile "
            f"interval of a paired bootstrap over items ({cfg.bootstrap_resamples} resamples, seed {cfg.seed}), "
            "given only where both artifacts were evaluated on the same items with per-item outcomes recorded."
        )
    if cfg.measure_latency:
        lat = cfg.latency
        notes.append(
            f"Latency/throughput: batch 1, greedy, {lat.new_tokens} new tokens after the same prompt, "
            f"median of {lat.repeats} runs after {lat.warmup} warm-up, on {lat.device}; prefill included."
        )
    return notes


def comparison_heading(comparisons: list[Comparison]) -> str:
    return f"Comparison with {comparisons[0].baseline}" if comparisons else "Comparison"


def render_markdown(
    title: str,
    rows: list[ReportRow],
    figures: list[tuple[str, Path]],
    notes: list[str],
    comparisons: list[Comparison] | None = None,
) -> str:
    parts = [f"# {title}", "", markdown_table(rows), ""]
    parts += [f"- {n}" for n in notes]
    compared = markdown_comparison(comparisons) if comparisons else ""
    if compared:
        parts += ["", f"## {comparison_heading(comparisons)}", "", compared]
    if figures:
        parts += ["", "## Figures", ""]
        parts += [f"![{caption}]({png.name})\n" for caption, png in figures]
    return "\n".join(parts).rstrip() + "\n"


def _rows_json(rows: list[ReportRow], comparisons: list[Comparison]) -> list[dict]:
    """The rows as data; each compared row carries its differences to the baseline."""
    by_label = {c.label: [dataclasses.asdict(d) for d in c.differences] for c in comparisons}
    return [
        {
            **dataclasses.asdict(r),
            "path": str(r.path),
            **({"vs_baseline": by_label[r.label]} if r.label in by_label else {}),
        }
        for r in rows
    ]


def build_report(
    paths: list[str | os.PathLike], cfg: ReportConfig
) -> tuple[list[ReportRow], list[Comparison]]:
    """Collect the artifacts, optionally time them, compare them; returns the rows and the comparisons that
    hold differences."""
    if cfg.plots:
        require("matplotlib", "report")  # fail before any slow work
    rows = collect_rows(paths)
    if cfg.compare:
        baseline_index(rows, cfg.baseline)  # an unknown baseline fails before any slow work
    if cfg.measure_latency:
        add_latency(rows, cfg.latency)
    comparisons = compare_rows(rows, cfg.baseline, cfg.bootstrap_resamples, cfg.seed) if cfg.compare else []
    return rows, [c for c in comparisons if c.differences]


def write_report_files(
    directory: Path, rows: list[ReportRow], comparisons: list[Comparison], cfg: ReportConfig
) -> list[tuple[str, Path]]:
    """Write report.md, report.html, report.json and the PNGs into `directory`; returns the figures."""
    figures = write_figures(rows, directory) if cfg.plots else []
    notes = report_notes(cfg)
    (directory / "report.md").write_text(render_markdown(cfg.title, rows, figures, notes, comparisons))
    header, cells = table_cells(rows)
    compared = (comparison_heading(comparisons), *comparison_cells(comparisons)) if comparisons else None
    (directory / "report.html").write_text(render_html(cfg.title, header, cells, figures, notes, compared))
    (directory / "report.json").write_text(json.dumps(_rows_json(rows, comparisons), indent=2) + "\n")
    return figures
