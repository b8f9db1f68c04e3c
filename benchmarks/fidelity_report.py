"""Tables and plots of the fidelity study (fidelity.py): paired differences of the claims, and one figure per
part with 95% error bars."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fidelity_data import TESTS

from sqft.report.collect import ReportRow
from sqft.report.compare import compare_pair
from sqft.report.plots import error_bars, interval_of
from sqft.report.tables import format_difference


def _ppl(row: ReportRow, task: str) -> float | None:
    return row.tasks.get(f"{task}-ppl", {}).get("perplexity")


def claims_table(rows: list[ReportRow], claims: list[tuple[str, str, str]]) -> tuple[str, list[dict]]:
    """One line per claim: Δ accuracy of each test set with its paired 95% interval, and the perplexity
    ratio row / baseline of each (no interval: one number per text)."""
    by_label = {r.label: r for r in rows}
    header = ["claim", "row", "baseline"] + [f"{t} Δacc" for t in TESTS] + [f"{t} ppl ×" for t in TESTS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out = []
    for claim, base, label in claims:
        b, r = by_label[base], by_label[label]
        diffs = {d.task: d for d in compare_pair(b, r).differences if d.metric == "acc"}
        ratios = {t: (_ppl(r, t) / _ppl(b, t)) if _ppl(r, t) and _ppl(b, t) else None for t in TESTS}
        cells = [format_difference(diffs.get(t)) for t in TESTS]
        cells += ["–" if ratios[t] is None else f"{ratios[t]:.3f}" for t in TESTS]
        lines.append("| " + " | ".join([claim, label, base] + cells) + " |")
        out.append(
            {
                "claim": claim,
                "row": label,
                "baseline": base,
                "acc_differences": {t: dataclasses.asdict(d) for t, d in diffs.items()},
                "perplexity_ratios": ratios,
            }
        )
    return "\n".join(lines), out


def rows_json(rows: list[ReportRow]) -> list[dict]:
    """The rows as data, without the per-item outcome strings (they stay in each evaluation artifact)."""
    return [
        {**{k: v for k, v in dataclasses.asdict(r).items() if k != "outcomes"}, "path": str(r.path)}
        for r in rows
    ]


def _acc(row: ReportRow, task: str) -> tuple[float, tuple[float, float] | None]:
    return 100 * row.tasks[task]["acc"], interval_of(row, task)


def plot_part(part: str, rows: list[ReportRow], path: Path) -> Path | None:
    """sweep: accuracy vs sparsity per test set (no fine-tuning, SparsePEFT, the dense level); other parts:
    accuracy per row and test set. Error bars: Wilson 95% intervals."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(12, 3.4) if part == "sweep" else (12, 4.5), layout="constrained")
    if part == "sweep":
        axes = fig.subplots(1, len(TESTS), sharey=True)
        for ax, task in zip(axes, TESTS, strict=True):
            _sweep_axis(ax, rows, task)
        axes[0].set_ylabel("accuracy (%)")
        axes[0].legend(fontsize="small")
    else:
        ax = fig.subplots()
        width = 0.8 / len(TESTS)
        for j, task in enumerate(TESTS):
            values = [_acc(r, task) for r in rows]
            below, above = error_bars([v / 100 for v, _ in values], [ci for _, ci in values])  # fractions in
            xs = [i + (j - (len(TESTS) - 1) / 2) * width for i in range(len(rows))]
            ax.bar(xs, [v for v, _ in values], width, yerr=[below, above], capsize=2, label=task)
        ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=25, ha="right", fontsize="small")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize="small", ncols=len(TESTS))
    fig.suptitle(f"fidelity: {part} (95% intervals)")
    fig.savefig(path, dpi=110)
    return path


def _sweep_axis(ax, rows: list[ReportRow], task: str) -> None:
    dense = next(r for r in rows if r.label == "dense")
    level, ci = _acc(dense, task)
    ax.axhline(level, color="grey", linestyle="--", label="dense")
    if ci is not None:
        ax.axhspan(100 * ci[0], 100 * ci[1], color="grey", alpha=0.15)
    for suffix, name in (("% sparse", "no fine-tuning"), ("% sparse + SparsePEFT", "SparsePEFT, merged")):
        points = sorted(
            (float(r.label.split("%")[0]), *_acc(r, task)) for r in rows if r.label.endswith(suffix)
        )
        if points:
            xs, ys, cis = zip(*points, strict=True)
            below, above = error_bars([y / 100 for y in ys], list(cis))  # fractions in, percent out
            ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, label=name)
    ax.set_title(task)
    ax.set_xlabel("sparsity (%)")
    ax.grid(alpha=0.3)


def rows_table(rows: list[ReportRow]) -> str:
    """One line per model: accuracy with its Wilson 95% interval per test set (n items), held-out perplexity
    per test set, sparsity and bits."""
    n = next((r.n.get(t) for r in rows for t in TESTS if r.n.get(t)), None)
    header = (
        ["model", "sparsity", "bits"] + [f"{t} acc % (n={n})" for t in TESTS] + [f"{t} ppl" for t in TESTS]
    )
    lines = ["| " + " | ".join(header) + " |", "| :-- |" + " --: |" * (len(header) - 1)]
    for r in rows:
        cells = [r.label, "–" if r.sparsity is None else f"{100 * r.sparsity:.0f}%", str(r.bits or "–")]
        for t in TESTS:
            value, ci = _acc(r, t)
            cells.append(f"{value:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{value:.1f}")
        cells += [f"{p:.2f}" if (p := _ppl(r, t)) else "–" for t in TESTS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loss_curves(paths: dict[str, Path]) -> dict[str, list[list[float]]]:
    """Per fine-tuned row: the training loss logged every few steps ([step, loss] pairs), read from the
    finetune artifact in its lineage."""
    from sqft.report.collect import lineage

    curves = {}
    for label, path in paths.items():
        tuned = next((a for a in lineage(path) if a.stage == "finetune"), None)
        if tuned is not None and tuned.figures.get("loss_curve"):
            curves[label] = tuned.figures["loss_curve"]
    return curves


def curves_table(curves: dict[str, list[list[float]]]) -> str:
    """Training loss by step, one column per fine-tuned model (rows sharing one fine-tuning show once)."""
    unique: dict[str, list[list[float]]] = {}
    for label, curve in curves.items():
        if curve not in unique.values():
            unique[label] = curve
    steps = sorted({int(s) for c in unique.values() for s, _ in c})
    lines = ["| step | " + " | ".join(unique) + " |", "| --: |" + " --: |" * len(unique)]
    for step in steps:
        cells = [next((f"{v:.3f}" for s, v in c if int(s) == step), "–") for c in unique.values()]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(curves: dict[str, list[list[float]]], path: Path) -> Path | None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.subplots()
    for label, curve in curves.items():
        ax.plot([s for s, _ in curve], [v for _, v in curve], marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return path
