"""Inference latency and throughput of a final model (paper Table 7): greedy generation of a fixed prompt.

Protocol (the same for every artifact): batch 1, the same prompt, exactly `new_tokens` greedy tokens (a prefill,
then `new_tokens − 1` steps on the KV cache: the measurement of `sqft bench`), INT4 layers on the packed-INT4
kernels, `warmup` untimed runs, then the median of `repeats` timed runs.
latency = median time / new_tokens (ms/token, prefill included); throughput = new_tokens / median time.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from sqft.errors import SqftError
from sqft.inference import decode_timing, load_for_inference
from sqft.report.collect import Artifact, lineage

__all__ = [
    "DEFAULT_PROMPT",
    "LatencyConfig",
    "latency_figures",
    "time_generation",
    "model_source",
    "measure_artifact",
]

log = logging.getLogger(__name__)

DEFAULT_PROMPT = (
    "Question: Natalia sold clips to 48 of her friends in April. How many clips did she sell?\nAnswer:"
)


@dataclass
class LatencyConfig:
    """How latency is measured; one config for all artifacts of a report so the numbers compare."""

    prompt: str = DEFAULT_PROMPT
    new_tokens: int = 32
    warmup: int = 1
    repeats: int = 5
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("new_tokens", "repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SqftError(f"latency {name}={value!r} must be a positive integer")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise SqftError(f"latency warmup={self.warmup!r} must be 0 or more")
        if not self.prompt:
            raise SqftError("the latency prompt is empty: give a prompt text")


def latency_figures(seconds: list[float], new_tokens: int) -> dict[str, float]:
    """ms per token and tokens per second from the timed runs' median."""
    median = statistics.median(seconds)
    return {
        "latency_ms_per_token": 1000 * median / new_tokens,
        "tokens_per_second": new_tokens / median,
        "median_seconds": median,
    }


def time_generation(model: nn.Module, tokenizer, cfg: LatencyConfig) -> dict[str, float]:
    """Time greedy generation of exactly `cfg.new_tokens` tokens after `cfg.prompt` with `sqft bench`'s own
    measurement (`sqft.inference.decode_timing`: prefill, then greedy steps on the KV cache)."""
    ids = tokenizer(cfg.prompt, return_tensors="pt").input_ids.to(cfg.device)  # (1, T)
    seconds = []
    for i in range(cfg.warmup + cfg.repeats):
        t = decode_timing(model, ids, cfg.new_tokens)
        if i >= cfg.warmup:
            seconds.append(t.prefill_s + t.decode_s)
    return latency_figures(seconds, cfg.new_tokens)


def _adapter_base(chain: list[Artifact], adapter: Path) -> str | None:
    """The base model of an adapter: its elastic config's base_model, the stage config's base, an ancestor."""
    meta_path = adapter / "elastic_adapter_config.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    for candidate in (meta.get("base_model"), chain[0].config.get("base")):
        if isinstance(candidate, str) and (Path(candidate) / "config.json").is_file():
            return candidate
    return next((str(a.path) for a in chain[1:] if (a.path / "config.json").is_file()), None)


def model_source(path: str | os.PathLike) -> tuple[str, str | None] | None:
    """(model directory, adapter directory or None) of an artifact's final model; None when it cannot be found."""
    chain = lineage(path)
    a = chain[0]
    if (a.path / "config.json").is_file():
        return str(a.path), None
    for adapter in (a.path, a.path / "adapter"):
        if (adapter / "adapter_config.json").is_file():
            base = _adapter_base(chain, adapter)
            return (base, str(adapter)) if base else None
    return None


def measure_artifact(path: str | os.PathLike, cfg: LatencyConfig) -> dict[str, float] | None:
    """Load the artifact's final model for inference (plus its adapter) and time it."""
    source = model_source(path)
    if source is None:
        log.warning("no model to time in '%s' (no weights and no base model found): latency left empty", path)
        return None
    model_dir, adapter = source
    loaded = load_for_inference(model_dir, adapter, device=cfg.device)  # INT4 layers on the packed kernels
    model, tokenizer = loaded.model, loaded.tokenizer
    figures = time_generation(model, tokenizer, cfg)
    log.info(
        "%s: %.2f ms/token, %.1f tokens/s",
        path,
        figures["latency_ms_per_token"],
        figures["tokens_per_second"],
    )
    return figures
