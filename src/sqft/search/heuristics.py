"""Cheap ways to pick a sub-adapter without any evaluation (SPEC §4).

- `maximal` / `minimal`: every group at its largest / smallest rank.
- `median`: the paper's reference configuration (§3.1), see `SearchSpace.median`.
- `most-frequent`: per group, the rank that was active most often during NLS training (`stats["counts"]`).
- `min-loss[:K]`: from the K configurations with the lowest mean training loss (`stats["loss_by_config"]`),
  per group the rank they use most often; ties go to the rank of the lower-loss configuration. K defaults to
  10; `min-loss:1` is the single best configuration. Why a vote: with uniform sampling each configuration is
  seen a handful of times, so one mean loss is noisy; a per-group majority over the best few is steadier.
- a path to a JSON file holding a configuration (see `load_config`).

`stats` is the adapter's `nls_stats.json`:
`{"counts": {group: {rank (str): n}}, "loss_by_config": [{"config": {group: rank}, "mean_loss": x, "n": k}]}`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqft.errors import SqftError
from sqft.search.space import Config, SearchSpace, load_config

__all__ = ["HEURISTICS", "DEFAULT_TOP_K", "resolve_config", "most_frequent", "min_loss"]

HEURISTICS = ("median", "maximal", "minimal", "most-frequent", "min-loss")
DEFAULT_TOP_K = 10


def resolve_config(spec: str, space: SearchSpace, stats: Mapping[str, Any] | None = None) -> Config:
    """Turn a heuristic name (`median`, `maximal`, `minimal`, `most-frequent`, `min-loss[:K]`) or a path to a
    configuration JSON into a validated configuration of `space`."""
    name, _, arg = spec.partition(":")
    if name == "median":
        return space.median()
    if name == "maximal":
        return space.maximal()
    if name == "minimal":
        return space.minimal()
    if name == "most-frequent":
        return most_frequent(space, _need(stats, "counts", spec))
    if name == "min-loss":
        top_k = _parse_top_k(arg) if arg else DEFAULT_TOP_K
        return min_loss(space, _need(stats, "loss_by_config", spec), top_k)
    if Path(spec).suffix == ".json" or Path(spec).exists():
        return load_config(spec, space)
    raise SqftError(
        f"unknown configuration '{spec}': use one of {', '.join(HEURISTICS)} (min-loss:K for top-K) "
        "or a path to a configuration JSON file"
    )


def _need(stats: Mapping[str, Any] | None, field: str, spec: str) -> Any:
    if not stats or field not in stats or not stats[field]:
        raise SqftError(
            f"'{spec}' needs the NLS training statistics field '{field}' (nls_stats.json in the adapter "
            "directory), which is missing or empty: train with NLS to record them, or use 'median'"
        )
    return stats[field]


def _parse_top_k(arg: str) -> int:
    if not arg.isdigit() or int(arg) < 1:
        raise SqftError(f"min-loss:{arg}: K must be a positive integer, e.g. min-loss:10")
    return int(arg)


def most_frequent(space: SearchSpace, counts: Mapping[str, Mapping[str, int]]) -> Config:
    """Per group, the rank active most often in training; ties go to the larger rank."""
    config: Config = {}
    for g, ranks in space.spaces.items():
        if g not in counts:
            raise SqftError(
                f"nls_stats counts have no entry for group '{g}': the stats belong to another adapter"
            )
        c = {int(r): int(n) for r, n in counts[g].items()}
        stray = sorted(set(c) - set(ranks))
        if stray:
            raise SqftError(
                f"nls_stats counts for group '{g}' hold rank(s) {stray} outside its space {list(ranks)}"
            )
        config[g] = max(ranks, key=lambda r: (c.get(r, 0), r))
    return config


def min_loss(
    space: SearchSpace, loss_by_config: list[Mapping[str, Any]], top_k: int = DEFAULT_TOP_K
) -> Config:
    """Per-group majority rank over the `top_k` configurations with the lowest mean training loss."""
    entries = []
    for i, e in enumerate(loss_by_config):
        try:
            config, loss = e["config"], float(e["mean_loss"])
        except (KeyError, TypeError, ValueError) as err:
            raise SqftError(
                f"nls_stats loss_by_config[{i}] must have 'config' and a numeric 'mean_loss'"
            ) from err
        entries.append((loss, i, space.validate({str(k): int(v) for k, v in config.items()})))
    best = sorted(entries, key=lambda t: (t[0], t[1]))[:top_k]  # (loss, original order) ascending
    config: Config = {}
    for g in space.spaces:
        votes = Counter(c[g] for _, _, c in best)
        first_seen = {}
        for rank_order, (_, _, c) in enumerate(best):
            first_seen.setdefault(c[g], rank_order)
        config[g] = max(votes, key=lambda r: (votes[r], -first_seen[r]))
    return config
