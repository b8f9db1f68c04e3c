"""Report figures as PNG: accuracy per pipeline, accuracy vs sparsity (paper Fig. 5), ranks per layer (Fig. 4).

Accuracies are drawn with error bars from their 95% intervals (`ReportRow.intervals`) wherever one is known.

matplotlib is optional (`pip install 'sqft[report]'`). Figures are built with the object API
(`matplotlib.figure.Figure`), which renders with Agg and touches no global pyplot state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqft.errors import require
from sqft.report.collect import ReportRow
from sqft.search.plots import plot_rank_distribution as draw
from sqft.search.space import SearchSpace

__all__ = [
    "accuracy_of",
    "interval_of",
    "error_bars",
    "common_tasks",
    "plot_accuracy_per_pipeline",
    "plot_accuracy_vs_sparsity",
    "plot_rank_distribution",
]

_DPI = 120


def _figure(width: float, height: float):
    require("matplotlib", "report")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _save(fig, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=_DPI, format="png")
    return out


def accuracy_of(row: ReportRow, task: str) -> float | None:
    """The task's first accuracy-like metric (perplexity is not an accuracy), as a fraction."""
    metrics = row.tasks.get(task, {})
    return next((v for name, v in metrics.items() if name != "perplexity"), None)


def interval_of(row: ReportRow, task: str) -> tuple[float, float] | None:
    """The 95% interval of the metric `accuracy_of` shows, as fractions; None when unknown."""
    metrics = row.tasks.get(task, {})
    name = next((n for n in metrics if n != "perplexity"), None)
    return None if name is None else row.intervals.get(task, {}).get(name)


def error_bars(
    values: Sequence[float | None], intervals: Sequence[tuple[float, float] | None]
) -> list[list[float]]:
    """matplotlib's asymmetric `yerr` (2, N) in percent: value − lo below, hi − value above (0 where unknown)."""
    below, above = [], []
    for v, ci in zip(values, intervals, strict=True):
        known = v is not None and ci is not None
        below.append(100 * max(v - ci[0], 0.0) if known else 0.0)
        above.append(100 * max(ci[1] - v, 0.0) if known else 0.0)
    return [below, above]


def _accuracy_tasks(rows: Sequence[ReportRow]) -> list[str]:
    tasks: list[str] = []
    for row in rows:
        tasks += [t for t in row.tasks if t not in tasks and accuracy_of(row, t) is not None]
    return tasks


def common_tasks(rows: Sequence[ReportRow]) -> list[str]:
    """Accuracy tasks every row has (so averages compare like with like)."""
    return [t for t in _accuracy_tasks(rows) if all(accuracy_of(r, t) is not None for r in rows)]


def plot_accuracy_per_pipeline(rows: Sequence[ReportRow], path: str | os.PathLike) -> Path | None:
    """Grouped bars: one group per artifact, one bar per task (accuracy in %, error bars: the 95% interval);
    None when nothing to plot."""
    tasks = _accuracy_tasks(rows)
    rows = [r for r in rows if any(accuracy_of(r, t) is not None for t in tasks)]
    if not rows:
        return None
    width = 0.8 / len(tasks)
    fig, ax = _figure(max(6.0, 0.5 * len(rows) * len(tasks) + 2), 4.0)
    for j, task in enumerate(tasks):
        xs = [i + (j - (len(tasks) - 1) / 2) * width for i in range(len(rows))]
        values = [accuracy_of(r, task) for r in rows]
        ys = [float("nan") if v is None else 100 * v for v in values]  # no bar for a task not evaluated
        yerr = error_bars(values, [interval_of(r, task) for r in rows])
        bars = ax.bar(xs, ys, width, label=task, yerr=yerr, capsize=2, error_kw={"elinewidth": 0.8})
        if len(tasks) * len(rows) <= 24:
            labels = ["" if v is None else f"{100 * v:.1f}" for v in values]
            ax.bar_label(bars, labels=labels, fontsize="x-small", padding=1)
    names = [r.label if r.pipeline in (None, r.label) else f"{r.label}\n({r.pipeline})" for r in rows]
    ax.set_xticks(range(len(rows)), names, rotation=20 if len(rows) > 4 else 0, fontsize="small")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("accuracy per pipeline")
    if len(tasks) > 1:
        ax.legend(fontsize="small", ncols=min(len(tasks), 4))
    return _save(fig, path)


def plot_accuracy_vs_sparsity(rows: Sequence[ReportRow], path: str | os.PathLike) -> Path | None:
    """One line per pipeline: mean accuracy over the tasks all plotted artifacts share vs sparsity (Fig. 5).

    With one shared task each point has an error bar, its 95% interval (a mean over several tasks has none:
    the tasks' intervals do not combine into one). None when no artifact has both a sparsity and an accuracy.
    """
    rows = [r for r in rows if r.sparsity is not None and _accuracy_tasks([r])]
    tasks = common_tasks(rows)
    if not rows or not tasks:
        return None
    groups: dict[str, list[tuple[float, float, float, float]]] = {}
    for r in rows:
        mean = sum(accuracy_of(r, t) or 0.0 for t in tasks) / len(tasks)
        ci = interval_of(r, tasks[0]) if len(tasks) == 1 else None
        (below,), (above,) = error_bars([mean], [ci])
        groups.setdefault(r.group, []).append((100 * (r.sparsity or 0.0), 100 * mean, below, above))
    fig, ax = _figure(6.0, 4.0)
    for name, points in groups.items():
        xs, ys, below, above = zip(*sorted(points), strict=True)
        ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=name)
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(
        f"{tasks[0]} accuracy (%)" if len(tasks) == 1 else f"mean accuracy over {len(tasks)} tasks (%)"
    )
    ax.set_xlim(-2, 100)
    ax.set_title("accuracy vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_rank_distribution(
    config: Mapping[str, int], space: Mapping[str, Sequence[int]], path: str | os.PathLike, title: str = ""
) -> Path:
    """Active adapter rank per layer of a configuration (group → rank) in its space (group → ranks), Fig. 4.

    The drawing is the search stage's (`sqft.search.plots`), so both stages show the same figure.
    """
    s = SearchSpace(space)
    return draw(s.validate(config), s, path, title=title)
