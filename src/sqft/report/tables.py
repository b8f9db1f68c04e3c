"""The comparison table (paper Tables 6/7 plus accuracy per task) as cells, Markdown, and the units used.

Accuracies are shown in percent with one decimal like the paper, with their 95% interval and n
(`52.5 [37.5, 67.1] n=40`); perplexity with two decimals; sizes and memory in binary units (KiB, MiB, GiB);
anything unknown as "–". The comparison table shows each row's difference to a baseline in percentage points
with its paired 95% interval (`+3.2 [+0.8, +5.6]`), or "not paired" and why.
"""

from __future__ import annotations

from sqft.report.collect import ReportRow
from sqft.report.compare import Comparison, Difference

__all__ = [
    "MISSING",
    "format_metric",
    "format_interval",
    "format_difference",
    "format_percent",
    "format_bytes",
    "format_count",
    "format_seconds",
    "format_number",
    "task_columns",
    "table_cells",
    "markdown_table",
    "comparison_cells",
    "markdown_comparison",
]

MISSING = "–"  # en dash: an unknown figure


def format_percent(x: float | None) -> str:
    """0.5 → '50.0%'."""
    return MISSING if x is None else f"{100 * x:.1f}%"


def format_metric(name: str, value: float | None) -> str:
    """Accuracy-like metrics (fractions) in percent without the sign; perplexity as is."""
    if value is None:
        return MISSING
    return f"{value:.2f}" if name == "perplexity" else f"{100 * value:.1f}"


def format_interval(ci: tuple[float, float] | None) -> str:
    """(0.375, 0.671) → '[37.5, 67.1]' (percent); '' when there is none."""
    return "" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def format_difference(d: Difference | None) -> str:
    """Δ in percentage points with its paired interval, '+3.2 [+0.8, +5.6]', or '+3.2 (not paired: why)'."""
    if d is None:
        return MISSING
    if d.lo is None or d.hi is None:
        return f"{100 * d.diff:+.1f} (not paired: {d.why})"
    return f"{100 * d.diff:+.1f} [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]"


def format_bytes(n: int | float | None) -> str:
    """1536 → '1.5 KiB'; bytes below 1 KiB as an integer."""
    if n is None:
        return MISSING
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def format_count(n: int | None) -> str:
    """1234567 → '1.23M', 4096 → '4.10K', 512 → '512'."""
    if n is None:
        return MISSING
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(int(n))


def format_seconds(s: float | None) -> str:
    """Seconds below 2 min, minutes below 2 h, hours beyond: '42.0 s', '5.2 min', '3.10 h'."""
    if s is None:
        return MISSING
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def format_number(x: float | None, digits: int = 2) -> str:
    return MISSING if x is None else f"{x:.{digits}f}"


def task_columns(rows: list[ReportRow]) -> list[tuple[str, tuple[str, ...]]]:
    """(task, its metric names) in order of first appearance over the rows."""
    columns: dict[str, tuple[str, ...]] = {}
    for row in rows:
        for task, metrics in row.tasks.items():
            known = columns.get(task, ())
            columns[task] = known + tuple(m for m in metrics if m not in known)
    return list(columns.items())


def _task_cell(row: ReportRow, task: str, metrics: tuple[str, ...]) -> str:
    values = row.tasks.get(task, {})
    if not values:
        return MISSING
    cis = row.intervals.get(task, {})
    shown = [
        " ".join(filter(None, (format_metric(m, values.get(m)), format_interval(cis.get(m)))))
        for m in metrics
    ]
    n = f" n={row.n[task]}" if cis and task in row.n else ""
    return " / ".join(shown) + n


def _stage_cell(row: ReportRow) -> str:
    parts = [p for p in (row.stage, row.pipeline) if p]
    return " / ".join(parts) if parts else MISSING


def table_cells(rows: list[ReportRow]) -> tuple[list[str], list[list[str]]]:
    """Header and one list of cells per row, shared by the Markdown and the HTML table."""
    tasks = task_columns(rows)
    header = ["artifact", "stage / pipeline"]
    header += [f"{task} ({' / '.join(metrics)})" for task, metrics in tasks]
    header += [
        "sparsity",
        "bits",
        "size on disk",
        "trainable params",
        "fine-tuning time",
        "fine-tuning peak memory",
        "latency (ms/token)",
        "throughput (tokens/s)",
    ]
    cells = []
    for row in rows:
        line = [row.label, _stage_cell(row)]
        line += [_task_cell(row, task, metrics) for task, metrics in tasks]
        line += [
            format_percent(row.sparsity),
            MISSING if row.bits is None else str(row.bits),
            format_bytes(row.size_bytes),
            format_count(row.trainable_parameters),
            format_seconds(row.train_seconds),
            format_bytes(row.train_peak_memory_bytes),
            format_number(row.latency_ms_per_token),
            format_number(row.tokens_per_second, 1),
        ]
        cells.append(line)
    return header, cells


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(rows: list[ReportRow]) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned."""
    header, cells = table_cells(rows)
    align = [":--", ":--"] + ["--:"] * (len(header) - 2)
    lines = [
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in line) + " |" for line in cells]
    return "\n".join(lines)


def comparison_cells(comparisons: list[Comparison]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the comparison table: one row per compared artifact, one column per task metric."""
    columns: list[tuple[str, str]] = []
    for c in comparisons:
        columns += [(d.task, d.metric) for d in c.differences if (d.task, d.metric) not in columns]
    header = ["artifact", "baseline"] + [f"{task} {metric} Δ (pp, paired 95% CI)" for task, metric in columns]
    cells = []
    for c in comparisons:
        by_key = {(d.task, d.metric): d for d in c.differences}
        cells.append([c.label, c.baseline] + [format_difference(by_key.get(k)) for k in columns])
    return header, cells


def markdown_comparison(comparisons: list[Comparison]) -> str:
    """The comparison table in Markdown; '' when there is nothing to compare."""
    header, cells = comparison_cells(comparisons)
    if len(header) == 2:
        return ""
    align = [":--", ":--"] + ["--:"] * (len(header) - 2)
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_escape(c) for c in line) + " |" for line in cells]
    return "\n".join(lines)
