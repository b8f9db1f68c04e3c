"""Inference latency and throughput of a final model (paper Table 7): greedy generation of a fixed prompt.

Protocol (the same for every artifact): batch 1, the same prompt, exactly `new_tokens` generated tokens
(end-of-sequence suppressed), `warmup` untimed runs, then the median of `repeats` timed runs.
latency = median time / new_tokens (ms/token, prefill included); throughput = new_tokens / median time.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sqft.errors import SqftError
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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_generation(model: nn.Module, tokenizer, cfg: LatencyConfig) -> dict[str, float]:
    """Time greedy generation of exactly `cfg.new_tokens` tokens after `cfg.prompt` (see the module doc)."""
    ids = tokenizer(cfg.prompt, return_tensors="pt").input_ids.to(cfg.device)  # (1, T)
    kwargs = {
        "max_new_tokens": cfg.new_tokens,
        "min_new_tokens": cfg.new_tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else tokenizer.eos_token_id,
        "attention_mask": torch.ones_like(ids),
    }
    seconds = []
    for i in range(cfg.warmup + cfg.repeats):
        _sync(cfg.device)
        t0 = time.perf_counter()
        out = model.generate(ids, **kwargs)
        _sync(cfg.device)
        if i >= cfg.warmup:
            seconds.append(time.perf_counter() - t0)
    generated = out.shape[1] - ids.shape[1]  # = new_tokens: min_new_tokens suppresses an early EOS
    return latency_figures(seconds, generated)


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
    """Load the artifact's final model with `sqft.modeling.load_model` (plus its adapter) and time it."""
    from sqft.modeling import load_model, load_tokenizer

    source = model_source(path)
    if source is None:
        log.warning("no model to time in '%s' (no weights and no base model found): latency left empty", path)
        return None
    model_dir, adapter = source
    model = load_model(model_dir, device="cpu")
    if adapter is not None:
        from sqft.adapt import load_adapter

        model = load_adapter(model, adapter)
    model = model.to(cfg.device).eval()
    tokenizer = load_tokenizer(
        adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else model_dir
    )
    figures = time_generation(model, tokenizer, cfg)
    log.info(
        "%s: %.2f ms/token, %.1f tokens/s",
        path,
        figures["latency_ms_per_token"],
        figures["tokens_per_second"],
    )
    return figures
