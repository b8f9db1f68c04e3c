"""The search stage: load the base and the super-adapter once, choose a configuration
(`sqft.search.choose_configuration`, scored by `sqft.evaluate.proxy.make_score_fn`), write it with the
extracted sub-adapter and, for SparsePEFT / QA-SparsePEFT, the merged model (via the merge stage)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqft.adapt.export import (
    elastic_space,
    load_adapter,
    read_elastic_config,
)
from sqft.adapt.inject import set_active_ranks
from sqft.artifacts import Stopwatch, atomic_output, check_output, check_writable, write_manifest
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.evaluate.proxy import make_score_fn
from sqft.merge import check_adapter_inputs, load_qa_fp16_base
from sqft.modeling.io import resolve_source
from sqft.search.api import (
    SearchConfig,
    choose_configuration,
    read_nls_stats,
    validation_proxy,
    write_search_outputs,
)
from sqft.search.heuristics import resolve_config
from sqft.search.hill_climbing import SearchResult
from sqft.search.space import Config, SearchSpace
from sqft.stages.common import load_input
from sqft.stages.extract import write_subadapter
from sqft.stages.merge import run_merge

__all__ = ["run_search"]

log = logging.getLogger(__name__)


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
    qa_int4: str | os.PathLike | None = None,
) -> SearchResult:
    """Load base + adapter once (a QA adapter on the fp16 base with the INT4 model it trained with, `qa_int4`)
    and run the strategy; without a proxy set, no model is needed at all."""
    if not proxy:
        return choose_configuration(space, cfg.strategy, None, cfg.hill_climbing, stats, quiet)
    model, tokenizer, _ = load_input(base, dtype)
    load_qa_fp16_base(model, adapter, qa_int4, dtype)
    model = load_adapter(model, adapter, force).to(device).eval()
    score = make_score_fn(model, tokenizer, proxy, metric, set_active_ranks, cfg.batch_size, cfg.cutoff)
    return choose_configuration(space, cfg.strategy, score, cfg.hill_climbing, stats, quiet)


def _space_and_stats(
    adapter: str | os.PathLike, cfg: SearchConfig
) -> tuple[SearchSpace, dict[str, Any] | None]:
    space = SearchSpace(elastic_space(adapter))
    stats = read_nls_stats(adapter)
    if cfg.strategy == "hill-climbing":
        space.check_step(cfg.step)
    else:
        resolve_config(cfg.strategy, space, stats)  # fail fast on missing stats or a bad JSON
    return space, stats


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
    qa_int4: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Choose a configuration and write it to `output` with the extracted sub-adapter; for a SparsePEFT /
    QA-SparsePEFT adapter also the merged model (`merged/`, via the merge stage). The adapter must have been
    trained on `base` (`sqft.adapt.provenance`), unless `force`; a QA adapter trained on the fp16 base runs (and
    merges) with `qa_int4`, the INT4 model it trained with. Returns the search summary."""
    inputs = [adapter, base, cfg.validation, qa_int4]
    check_output(output, overwrite, inputs)
    check_device(device)
    check_writable(output)
    fmt, metric, proxy, indices = validation_proxy(cfg) if cfg.validation else (None, None, [], [])
    _, provenance = check_adapter_inputs(adapter, base, qa_int4, force)
    if Path(str(base)).exists():
        resolve_source(base)  # a damaged base fails here, before any model is loaded
    space, stats = _space_and_stats(adapter, cfg)
    with Stopwatch(device) as watch:
        result = _scored_search(
            adapter, base, space, cfg, proxy, metric, stats, dtype, device, quiet, force, qa_int4
        )
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
            summary["merged"] = _merge_if_sparse(adapter, base, tmp, dtype, force, qa_int4)
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
    """Write the sub-adapter (A[:r], B[:, :r] per module, PEFT rank_pattern), as `sqft extract` writes it."""
    write_subadapter(adapter, config, dest, "search", {"configuration_checked": True, "forced": False})
    return dest.name


def _merge_if_sparse(
    adapter: str | os.PathLike,
    base: str,
    out: Path,
    dtype: str,
    force: bool = False,
    qa_int4: str | os.PathLike | None = None,
) -> str | None:
    """SparsePEFT / QA-SparsePEFT: merge the chosen configuration into the base (`merged/`), as `sqft merge`
    would. A merge the merge stage refuses is logged, not fatal: the search result is kept."""
    if not read_elastic_config(adapter)["adapt_config"].get("sparse_adapter"):
        return None
    try:
        spec = str(out / "configuration.json")
        run_merge(base, adapter, out / "merged", config_spec=spec, dtype=dtype, force=force, qa_int4=qa_int4)
    except SqftError as e:
        log.warning("the chosen sub-adapter was not merged (%s); run `sqft merge` with configuration.json", e)
        return None
    return "merged"
