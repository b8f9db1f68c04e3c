"""Figures of a search: the chosen ranks per layer (paper Fig. 4) and the score along the search.

matplotlib is optional (`pip install 'sqft[report]'`) and drawn with the Agg backend (no display needed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqft.errors import require
from sqft.search.space import SearchSpace

__all__ = ["split_group", "plot_rank_distribution", "plot_search_trace"]

_INT = re.compile(r"\d+")


def split_group(group: str) -> tuple[int | None, str]:
    """'model.layers.3.self_attn' → (3, 'model.layers.*.self_attn'); the first integer is the layer index."""
    m = _INT.search(group)
    if m is None:
        return None, group
    return int(m.group()), group[: m.start()] + "*" + group[m.end() :]


def _pyplot():
    matplotlib = require("matplotlib", "report")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_rank_distribution(
    config: Mapping[str, int], space: SearchSpace, path: str | os.PathLike, title: str = ""
) -> Path:
    """Bars of the active rank per layer (one bar per group kind within a layer), with each group's largest
    rank as a faint outline, like the paper's Fig. 4."""
    plt = _pyplot()
    layers: dict[int, dict[str, str]] = {}
    kinds: list[str] = []
    for i, g in enumerate(space.groups):
        layer, kind = split_group(g)
        layer = i if layer is None else layer
        layers.setdefault(layer, {})[kind] = g
        if kind not in kinds:
            kinds.append(kind)
    order = sorted(layers)
    width = 0.8 / len(kinds)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(order) * len(kinds) + 2), 3.5))
    for j, kind in enumerate(kinds):
        xs = [x + (j - (len(kinds) - 1) / 2) * width for x in range(len(order))]
        groups = [layers[layer].get(kind) for layer in order]
        full = [space.spaces[g][0] if g else 0 for g in groups]
        chosen = [config[g] if g else 0 for g in groups]
        ax.bar(xs, full, width, fill=False, edgecolor="0.8", linewidth=0.8)
        ax.bar(xs, chosen, width, color=f"C{j % 10}", label=kind.partition("*.")[2] or kind)
    ax.set_xticks(range(len(order)), [str(layer) for layer in order])
    ax.set_yticks(sorted({r for ranks in space.spaces.values() for r in ranks}))
    ax.set_xlabel("layer")
    ax.set_ylabel("adapter rank")
    ax.set_title(title or "rank per layer of the chosen configuration")
    if len(kinds) > 1:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_search_trace(scores: Sequence[float], path: str | os.PathLike, metric: str = "score") -> Path:
    """Each evaluation's proxy score in search order, and the best so far."""
    plt = _pyplot()
    best, running = [], float("-inf")
    for s in scores:
        running = max(running, s)
        best.append(running)
    xs = range(1, len(scores) + 1)
    fig, ax = plt.subplots(figsize=(6.0, 3.5))
    ax.plot(xs, scores, "o", markersize=3, alpha=0.6, label="evaluated")
    ax.step(xs, best, where="post", label="best so far")
    if scores:
        ax.axhline(scores[0], color="0.6", linestyle="--", linewidth=0.8, label="start (median)")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
