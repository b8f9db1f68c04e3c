"""`sqft search`: choose a sub-adapter of a trained NLS adapter, score it, write it out.

The base model and the super-adapter are loaded once; each candidate only switches the active ranks
(`sqft.adapt.set_active_ranks`) and is scored on the same proxy set D_M, so one evaluation costs one pass
over M items. Scores are cached by configuration (see `hill_climbing.CachedScorer`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.files import read_json_file
from sqft.search.heuristics import HEURISTICS, resolve_config
from sqft.search.hill_climbing import Evaluation, HillClimbingConfig, SearchResult, hill_climb
from sqft.search.space import Config, SearchSpace, save_config
from sqft.search.validation import FORMATS, METRICS, check_disjoint, load_validation, sample_proxy
from sqft.typecheck import check_field_types

__all__ = [
    "STRATEGIES",
    "SearchConfig",
    "read_nls_stats",
    "mean_token_loss",
    "make_score_fn",
    "choose_configuration",
    "write_search_outputs",
    "run_search",
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


def read_nls_stats(adapter_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The adapter's NLS training statistics, or None when it has none."""
    p = Path(adapter_dir) / NLS_STATS
    if not p.is_file():
        return None
    return read_json_file(p, "NLS statistics")


@torch.no_grad()
def mean_token_loss(
    model: nn.Module, tokenizer: Any, examples: Sequence[Any], cutoff: int = 256, batch_size: int = 8
) -> float:
    """Token-weighted mean next-token NLL of prompt + response over `examples` (`TrainingExample`s)."""
    from sqft.data import build_training_dataset, pad_collate
    from sqft.evaluate.lm import logits_of, model_device
    from sqft.evaluate.perplexity import token_nll

    rows = build_training_dataset(tokenizer, examples, cutoff_len=cutoff)
    collate, device = pad_collate(tokenizer), model_device(model)
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = collate(rows[i : i + batch_size])
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)  # (B, T)
        nll, n = token_nll(logits_of(model, ids, mask), ids, mask)
        total, count = total + nll, count + n
    return total / max(count, 1)


def make_score_fn(
    model: nn.Module,
    tokenizer: Any,
    proxy: Sequence[Any],
    metric: str,
    set_ranks: Callable[[nn.Module, Config], None],
    batch_size: int = 8,
    cutoff: int = 256,
) -> Callable[[Config], float]:
    """score(config): switch the adapter to `config` and score it on the proxy set (higher is better)."""

    def score(config: Config) -> float:
        set_ranks(model, config)
        if metric == "accuracy":
            from sqft.evaluate.multiple_choice import evaluate_multiple_choice

            result = evaluate_multiple_choice(model, tokenizer, proxy, batch_size=batch_size, progress=False)
            return float(result["acc"])
        return -mean_token_loss(model, tokenizer, proxy, cutoff, batch_size)

    return score


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
        from sqft.search.plots import plot_rank_distribution, plot_search_trace

        plot_rank_distribution(
            result.best, space, d / "rank_distribution.png", title=f"{info.get('strategy')}"
        )
        if len(result.evaluations) > 1:
            metric = info.get("metric")
            label = "negative mean loss" if metric == "loss" else str(metric or "score")
            plot_search_trace([e.score for e in result.evaluations], d / "search_trace.png", label)
    return summary


def _validation_proxy(cfg: SearchConfig) -> tuple[str, str, list, list[int]]:
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


def _scored_search(
    adapter: str | os.PathLike,
    base: str,
    space: SearchSpace,
    cfg: SearchConfig,
    proxy: list,
    metric: str | None,
    stats: dict[str, Any] | None,
    dtype: str,
    device: str,
    quiet: bool,
    force: bool = False,
) -> SearchResult:
    """Load base + adapter once and run the strategy; without a proxy set, no model is needed at all."""
    if not proxy:
        return choose_configuration(space, cfg.strategy, None, cfg.hill_climbing, stats, quiet)
    from sqft import adapt
    from sqft.stage import load_input

    model, tokenizer, _ = load_input(base, dtype)
    model = adapt.load_adapter(model, adapter, force).to(device).eval()
    score = make_score_fn(model, tokenizer, proxy, metric, adapt.set_active_ranks, cfg.batch_size, cfg.cutoff)
    return choose_configuration(space, cfg.strategy, score, cfg.hill_climbing, stats, quiet)


def run_search(
    adapter: str | os.PathLike,
    base: str,
    output: str | os.PathLike,
    cfg: SearchConfig,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    overwrite: bool = False,
    quiet: bool = False,
    extract: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Choose a configuration and write it to `output` with the extracted sub-adapter; for a SparsePEFT /
    QA-SparsePEFT adapter also the merged model (`merged/`, via the merge stage). The adapter must have been
    trained on `base` (`sqft.adapt.provenance`), unless `force`."""
    from sqft import adapt
    from sqft.adapt.export import read_elastic_config
    from sqft.adapt.provenance import check_base
    from sqft.artifacts import Stopwatch, atomic_output, check_output, check_writable, write_manifest

    inputs = [adapter, base, cfg.validation]
    check_output(output, overwrite, inputs)
    check_device(device)
    check_writable(output)
    fmt, metric, proxy, indices = _validation_proxy(cfg) if cfg.validation else (None, None, [], [])
    meta = read_elastic_config(adapter)
    provenance = check_base(meta, adapter, base, force)
    if Path(str(base)).exists():
        from sqft.modeling.io import resolve_source

        resolve_source(base)  # a damaged base fails here, before any model is loaded
    space = SearchSpace(adapt.elastic_space(adapter))
    stats = read_nls_stats(adapter)
    if cfg.strategy == "hill-climbing":
        space.check_step(cfg.step)
    else:
        resolve_config(cfg.strategy, space, stats)  # fail fast on missing stats or a bad JSON
    with Stopwatch(device) as watch:
        result = _scored_search(adapter, base, space, cfg, proxy, metric, stats, dtype, device, quiet, force)
    log.info(
        "chosen configuration scores %s (%s) after %d evaluations",
        result.best_score,
        metric,
        len(result.evaluations),
    )
    info = {
        "strategy": cfg.strategy,
        "metric": metric,
        "validation": {"source": cfg.validation, "format": fmt, "proxy_indices": indices},
        "test_data": cfg.test_data,
    }
    with atomic_output(output, overwrite, inputs) as tmp:
        summary = write_search_outputs(tmp, result, space, info)
        if extract:
            summary["extracted"] = _extract(adapter, result.best, tmp / "adapter")
            summary["merged"] = _merge_if_sparse(adapter, base, tmp, dtype, force)
        figures = {
            "score": summary["score"],
            "start_score": summary["start_score"],
            "n_evaluations": len(result.evaluations),
            "seconds": watch.seconds,
            "peak_memory_bytes": watch.peak_memory_bytes,
            "provenance": provenance,
        }
        manifest_config = {**asdict(cfg), "adapter": str(adapter), "base": base, "force": force}
        write_manifest(tmp, "search", manifest_config, str(adapter), figures)
    return summary


def _extract(adapter: str | os.PathLike, config: Config, dest: Path) -> str:
    """Write the sub-adapter (A[:r], B[:, :r] per module, PEFT rank_pattern) with the adapt stage's extractor."""
    from sqft.adapt import extract_subadapter

    extract_subadapter(adapter, config, dest)
    return dest.name


def _merge_if_sparse(
    adapter: str | os.PathLike, base: str, out: Path, dtype: str, force: bool = False
) -> str | None:
    """SparsePEFT / QA-SparsePEFT: merge the chosen configuration into the base (`merged/`), as `sqft merge`
    would. A merge the merge stage refuses is logged, not fatal: the search result is kept."""
    from sqft.adapt.api import merge_to_dir
    from sqft.adapt.export import read_elastic_config

    if not read_elastic_config(adapter)["adapt_config"].get("sparse_adapter"):
        return None
    try:
        spec = str(out / "configuration.json")
        merge_to_dir(base, adapter, out / "merged", config_spec=spec, dtype=dtype, force=force)
    except SqftError as e:
        log.warning("the chosen sub-adapter was not merged (%s); run `sqft merge` with configuration.json", e)
        return None
    return "merged"
