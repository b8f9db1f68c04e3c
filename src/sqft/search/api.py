"""Search: choose a sub-adapter of a trained NLS adapter with a strategy and a score function.

`choose_configuration(space, strategy, score, ...)` takes the score as a callable (config → higher is better),
so search never imports evaluation: the search stage (`sqft.stages.search.run_search`) builds it with
`sqft.evaluate.proxy.make_score_fn`, which only switches the active ranks of one loaded model
(`sqft.adapt.set_active_ranks`) and scores the same proxy set D_M; scores are cached by configuration
(`hill_climbing.CachedScorer`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqft.adapt.export import elastic_space
from sqft.errors import SqftError
from sqft.files import read_json_file
from sqft.search.heuristics import HEURISTICS, resolve_config
from sqft.search.hill_climbing import Evaluation, HillClimbingConfig, SearchResult, hill_climb
from sqft.search.plots import plot_rank_distribution, plot_search_trace
from sqft.search.space import Config, SearchSpace, save_config
from sqft.search.validation import FORMATS, METRICS, check_disjoint, load_validation, sample_proxy
from sqft.typecheck import check_field_types

__all__ = [
    "STRATEGIES",
    "SearchConfig",
    "read_nls_stats",
    "resolve_adapter_config",
    "choose_configuration",
    "validation_proxy",
    "write_search_outputs",
]

log = logging.getLogger(__name__)

STRATEGIES = (*HEURISTICS, "hill-climbing")
NLS_STATS = "nls_stats.json"


@dataclass
class SearchConfig:
    """How to choose the sub-adapter; `strategy` is a heuristic, `hill-climbing`, or a configuration JSON."""

    strategy: str = "hill-climbing"
    validation: str | None = None
    validation_format: str = "auto"
    validation_split: str = "validation"
    metric: str = "auto"  # accuracy (multiple choice only) or loss (negative mean token loss)
    proxy_samples: int = 100  # M
    test_data: str | None = None
    turns: int = 10  # T
    neighbours: int = 8  # N
    step: int = 1  # S
    budget: int = 50
    seed: int = 0
    batch_size: int = 8
    cutoff: int = 256

    def __post_init__(self) -> None:
        check_field_types(self)
        name = self.strategy.partition(":")[0]
        if name not in STRATEGIES and not self.strategy.endswith(".json"):
            raise SqftError(
                f"strategy '{self.strategy}' is unknown: use one of {', '.join(STRATEGIES)} or a configuration JSON"
            )
        if self.strategy == "hill-climbing" and not self.validation:
            raise SqftError("hill-climbing scores candidates on validation data: pass --validation FILE")
        if self.validation_format not in FORMATS:
            raise SqftError(
                f"validation format '{self.validation_format}' is unknown: use {', '.join(FORMATS)}"
            )
        if self.metric not in METRICS:
            raise SqftError(f"metric '{self.metric}' is unknown: use one of {', '.join(METRICS)}")
        for field_name in ("proxy_samples", "batch_size", "cutoff"):
            if getattr(self, field_name) < 1:
                raise SqftError(f"{field_name}={getattr(self, field_name)} must be a positive integer")
        _ = self.hill_climbing  # validates turns/neighbours/step/budget

    @property
    def hill_climbing(self) -> HillClimbingConfig:
        return HillClimbingConfig(self.turns, self.neighbours, self.step, self.budget, self.seed)


def resolve_adapter_config(adapter_dir: str | os.PathLike, spec: str) -> dict[str, int]:
    """A configuration (group → rank) of an adapter from a heuristic name or a JSON file."""
    spaces = elastic_space(adapter_dir)
    if not spaces:
        raise SqftError(
            f"adapter '{adapter_dir}' has no elastic (NLS) groups: there is no configuration to choose"
        )
    return dict(resolve_config(spec, SearchSpace(spaces), read_nls_stats(adapter_dir)))


def read_nls_stats(adapter_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The adapter's NLS training statistics, or None when it has none."""
    p = Path(adapter_dir) / NLS_STATS
    if not p.is_file():
        return None
    return read_json_file(p, "NLS statistics")


def choose_configuration(
    space: SearchSpace,
    strategy: str,
    score: Callable[[Config], float] | None,
    hc: HillClimbingConfig,
    stats: dict[str, Any] | None = None,
    quiet: bool = False,
) -> SearchResult:
    """Run the strategy; a heuristic's single configuration is scored too when `score` is given."""
    if strategy == "hill-climbing":
        assert score is not None, "hill-climbing needs a score function"
        return hill_climb(space, score, hc, start=space.median(), quiet=quiet)
    config = resolve_config(strategy, space, stats)
    value = float(score(config)) if score is not None else float("nan")
    evaluations = [Evaluation(0, 0, config, value)] if score is not None else []
    return SearchResult(config, value, config, value, evaluations)


def _score_or_none(x: float) -> float | None:
    return None if x != x else x  # NaN (not scored) → null in JSON


def write_search_outputs(
    directory: str | os.PathLike,
    result: SearchResult,
    space: SearchSpace,
    info: dict[str, Any],
    plots: bool = True,
) -> dict[str, Any]:
    """configuration.json (flat {group: rank}), search.json (scores and every evaluation), PNG figures."""
    d = Path(directory)
    save_config(result.best, d / "configuration.json")
    summary = {
        **info,
        "config": result.best,
        "score": _score_or_none(result.best_score),
        "start_config": result.start,
        "start_score": _score_or_none(result.start_score),
        "n_evaluations": len(result.evaluations),
        "turns_run": result.turns_run,
        "space": space.to_dict(),
        "evaluations": [asdict(e) for e in result.evaluations],
    }
    (d / "search.json").write_text(json.dumps(summary, indent=2) + "\n")
    if plots:
        plot_rank_distribution(
            result.best, space, d / "rank_distribution.png", title=f"{info.get('strategy')}"
        )
        if len(result.evaluations) > 1:
            metric = info.get("metric")
            label = "negative mean loss" if metric == "loss" else str(metric or "score")
            plot_search_trace([e.score for e in result.evaluations], d / "search_trace.png", label)
    return summary


def validation_proxy(cfg: SearchConfig) -> tuple[str, str, list, list[int]]:
    """(format, metric, proxy items, their indices); refuses overlap with the test data."""
    assert cfg.validation is not None
    fmt, items = load_validation(cfg.validation, cfg.validation_format, cfg.validation_split)
    metric = cfg.metric if cfg.metric != "auto" else ("accuracy" if fmt == "mc" else "loss")
    if metric == "accuracy" and fmt != "mc":
        raise SqftError(
            f"metric 'accuracy' needs multiple-choice validation data; '{cfg.validation}' is {fmt}"
        )
    indices = sample_proxy(len(items), cfg.proxy_samples, cfg.seed)
    proxy = [items[i] for i in indices]
    if cfg.test_data:
        _, test_items = load_validation(cfg.test_data, "auto", "test")  # the test set has its own format
        check_disjoint(cfg.validation, cfg.test_data, proxy, test_items)
    return fmt, metric, proxy, indices
