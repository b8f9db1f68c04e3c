"""Each report row against a baseline row: the difference of every accuracy, with a paired 95% interval.

Δ = acc(row) − acc(baseline) per task and metric. Where both rows hold per-item outcomes on the same items
(equal `items_sha256`) the interval is the paired bootstrap of `sqft.evaluate.intervals.paired_difference`,
which is far tighter than two separate intervals suggest (most items are answered alike by both models);
otherwise Δ is shown without one, marked "not paired".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqft.errors import SqftError
from sqft.evaluate.intervals import paired_difference
from sqft.report.collect import ReportRow

__all__ = ["Difference", "Comparison", "baseline_index", "compare_pair", "compare_rows"]


@dataclass
class Difference:
    """One task metric of one row against the baseline; `lo`/`hi` None when not paired (`why` says why)."""

    task: str
    metric: str
    diff: float
    lo: float | None = None
    hi: float | None = None
    why: str = ""


@dataclass
class Comparison:
    label: str
    baseline: str
    differences: list[Difference]


def baseline_index(rows: list[ReportRow], baseline: str | None) -> int:
    """The row that `baseline` names (its label or its path as given); None: the first row."""
    if baseline is None:
        return 0
    for i, row in enumerate(rows):
        if baseline in (row.label, str(row.path)):
            return i
    labels = ", ".join(repr(r.label) for r in rows)
    raise SqftError(f"baseline '{baseline}' is none of the report's artifacts: use one of {labels}")


def _difference(base: ReportRow, row: ReportRow, task: str, metric: str, n_resamples: int, seed: int):
    diff = row.tasks[task][metric] - base.tasks[task][metric]
    ref, cur = base.outcomes.get(task) or {}, row.outcomes.get(task) or {}
    if metric not in ref.get("correct", {}) or metric not in cur.get("correct", {}):
        return Difference(task, metric, diff, why="no per-item outcomes")
    try:
        paired, lo, hi = paired_difference(ref, cur, metric, n_resamples, seed)
    except SqftError:
        return Difference(task, metric, diff, why="different items")
    return Difference(task, metric, paired, lo, hi)


def compare_pair(base: ReportRow, row: ReportRow, n_resamples: int = 10_000, seed: int = 0) -> Comparison:
    """One row against a baseline row, on the accuracy metrics both have (perplexity is left out)."""
    diffs = [
        _difference(base, row, task, metric, n_resamples, seed)
        for task, metrics in row.tasks.items()
        for metric in metrics
        if metric != "perplexity" and metric in base.tasks.get(task, {})
    ]
    return Comparison(row.label, base.label, diffs)


def compare_rows(
    rows: list[ReportRow], baseline: str | None = None, n_resamples: int = 10_000, seed: int = 0
) -> list[Comparison]:
    """Every other row against the baseline row (`compare_pair`)."""
    b = baseline_index(rows, baseline)
    return [compare_pair(rows[b], row, n_resamples, seed) for i, row in enumerate(rows) if i != b]
