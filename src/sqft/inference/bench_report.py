"""`sqft bench` results as a Markdown table, JSON and a PNG bar chart (decode tokens/s per model and batch)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqft.artifacts import atomic_output, write_manifest
from sqft.errors import require
from sqft.inference.bench import BenchConfig

__all__ = ["bench_markdown", "bench_json", "plot_decode", "write_bench"]


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:.1f}"


def _cell(stat: dict[str, float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}–{fmt.format(stat['max'])})"


def bench_markdown(results: Sequence[dict[str, Any]], cfg: BenchConfig) -> str:
    """One row per model and batch size: median (min–max) of each figure."""
    head = (
        "| model | dtype | batch | prefill tok/s | decode tok/s | time to first token (ms) | "
        "weights (MiB) | on disk (MiB) | peak memory (MiB) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        for b, f in r["batches"].items():
            lines.append(
                f"| {r['name']} | {r['dtype']} | {b} | {_cell(f['prefill_tokens_per_s'])} | "
                f"{_cell(f['decode_tokens_per_s'])} | {_cell(f['time_to_first_token_ms'])} | "
                f"{_mib(r['weight_bytes'])} | {_mib(r['disk_bytes'])} | {_mib(r['peak_memory_bytes'])} |"
            )
    note = (
        f"\n{cfg.device}, prompt {cfg.prompt_tokens} tokens, {cfg.new_tokens} new tokens, "
        f"median (min–max) of {cfg.repeats} rounds after {cfg.warmup} warm-up, models interleaved."
    )
    return "\n".join(lines) + "\n" + note + "\n"


def bench_json(results: Sequence[dict[str, Any]], cfg: BenchConfig) -> str:
    return json.dumps({"config": asdict(cfg), "results": list(results)}, indent=2) + "\n"


def plot_decode(results: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Grouped bars: decode tokens/s (median, min–max as error bars) per model, one group per batch size."""
    require("matplotlib", "report")
    from matplotlib.figure import Figure

    batches = list(results[0]["batches"])
    fig = Figure(figsize=(max(6.0, 1.6 * len(results) * len(batches)), 4.0))
    ax = fig.subplots()
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        stats = [r["batches"][b]["decode_tokens_per_s"] for b in batches]
        med = [s["median"] for s in stats]
        err = [
            [m - s["min"] for m, s in zip(med, stats, strict=True)],
            [s["max"] - m for m, s in zip(med, stats, strict=True)],
        ]
        xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(batches))]
        ax.bar(xs, med, width, yerr=err, capsize=3, label=f"{r['name']} ({r['dtype']})")
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("decode tokens/s")
    ax.set_title("decode throughput (median, min–max)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120, format="png")
    return out


def write_bench(
    results: Sequence[dict[str, Any]],
    cfg: BenchConfig,
    output: str | os.PathLike,
    overwrite: bool = False,
    plot: bool = True,
) -> Path:
    """Write bench.md, bench.json, bench.png and sqft.json to `output` (atomically)."""
    inputs = [r["spec"]["source"] for r in results] + [r["spec"]["adapter"] for r in results]
    with atomic_output(output, overwrite, inputs) as tmp:
        (tmp / "bench.md").write_text(bench_markdown(results, cfg))
        (tmp / "bench.json").write_text(bench_json(results, cfg))
        if plot:
            plot_decode(results, tmp / "bench.png")
        write_manifest(tmp, "bench", cfg, None, {"results": list(results)})
    return Path(output)
