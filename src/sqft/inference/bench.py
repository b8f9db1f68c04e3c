"""How fast a model runs: prefill and decode throughput, time to first token, memory.

Protocol (the same for every model of a run, so the figures compare):
- the prompt is `prompt_tokens` token ids drawn from a seeded generator (the same ids for every model with
  the same vocabulary), repeated over the batch;
- one timed run = a prefill forward over the prompt (its last logits give the first token: time to first
  token = prefill time) and `new_tokens − 1` greedy decode steps on the KV cache;
  prefill tokens/s = batch·prompt_tokens / prefill time, decode tokens/s = batch·(new_tokens − 1) / decode time;
- `warmup` untimed rounds, then `repeats` timed rounds; every round runs every model and batch size, the order
  of the models rotating from round to round, so a machine whose speed drifts slows all of them alike;
- median with min and max over the timed rounds.
Memory: the weights' bytes in memory (parameters and buffers), and the peak of one run at the largest batch
in a fresh process (`peak_memory`: max RSS on the CPU, the CUDA allocator's peak on a GPU).
"""

from __future__ import annotations

import inspect
import logging
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from sqft.artifacts import dir_size_bytes, peak_memory_bytes
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.inference.load import LoadedModel, load_for_inference

__all__ = [
    "BenchConfig",
    "BenchSpec",
    "Timing",
    "bench_models",
    "decode_timing",
    "prompt_batch",
    "summarize",
    "weight_bytes",
]

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    """What `sqft bench` measures (see the module doc for the protocol)."""

    batch_sizes: tuple[int, ...] = (1, 8)
    prompt_tokens: int = 128
    new_tokens: int = 128
    repeats: int = 3
    warmup: int = 1
    device: str = "cpu"
    seed: int = 0
    peak_memory: bool = True

    def __post_init__(self) -> None:
        self.batch_sizes = tuple(self.batch_sizes)
        checks = {"prompt_tokens": 1, "new_tokens": 2, "repeats": 1, "warmup": 0}
        for name, least in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SqftError(f"bench {name}={value!r} must be an integer ≥ {least}")
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise SqftError(f"bench batch sizes {self.batch_sizes} must be positive integers")


@dataclass
class BenchSpec:
    """One model to benchmark: where it is, and how to load it."""

    source: str
    adapter: str | None = None
    dtype: str = "auto"
    label: str | None = None
    int4_kernels: bool = True

    @property
    def name(self) -> str:
        return self.label or (self.source if self.adapter is None else f"{self.source} + {self.adapter}")


@dataclass
class Timing:
    """One run: prefill (= time to first token) and decode wall times in seconds."""

    prefill_s: float
    decode_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cache_kwarg(model: nn.Module) -> str:
    """The name under which the model's forward takes its KV cache (`cache` from transformers 5.2x on)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@torch.inference_mode()
def decode_timing(model: nn.Module, ids: torch.Tensor, new_tokens: int) -> Timing:
    """Time a prefill over ids (B, T) and `new_tokens − 1` greedy decode steps on the KV cache."""
    device = ids.device
    kv = {_cache_kwarg(model): DynamicCache()}  # filled in place by every forward
    _sync(device)
    t0 = time.perf_counter()
    logits = model(input_ids=ids, use_cache=True, **kv).logits
    nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1): the first new token
    _sync(device)
    t1 = time.perf_counter()
    for _ in range(new_tokens - 1):
        logits = model(input_ids=nxt, use_cache=True, **kv).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    return Timing(t1 - t0, time.perf_counter() - t1)


def prompt_batch(vocab_size: int, prompt_tokens: int, batch: int, seed: int, device: str) -> torch.Tensor:
    """The benchmark prompt (batch, prompt_tokens): seeded ids, the same row repeated."""
    g = torch.Generator().manual_seed(seed)
    row = torch.randint(0, vocab_size, (1, prompt_tokens), generator=g)
    return row.expand(batch, -1).contiguous().to(device)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (each storage once): what its weights take in memory."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _figures(timings: list[Timing], batch: int, cfg: BenchConfig) -> dict[str, Any]:
    return {
        "prefill_tokens_per_s": summarize([batch * cfg.prompt_tokens / t.prefill_s for t in timings]),
        "decode_tokens_per_s": summarize([batch * (cfg.new_tokens - 1) / t.decode_s for t in timings]),
        "time_to_first_token_ms": summarize([1000 * t.prefill_s for t in timings]),
    }


def _load(spec: BenchSpec, device: str) -> LoadedModel:
    return load_for_inference(
        spec.source, spec.adapter, device=device, dtype=spec.dtype, int4_kernels=spec.int4_kernels
    )


def _peak_memory_run(spec: BenchSpec, cfg: BenchConfig) -> int:
    """In a fresh process: load the model, run once at the largest batch, return the peak memory."""
    loaded = _load(spec, cfg.device)
    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    ids = prompt_batch(
        loaded.model.config.vocab_size, cfg.prompt_tokens, max(cfg.batch_sizes), cfg.seed, cfg.device
    )
    decode_timing(loaded.model, ids, cfg.new_tokens)
    return peak_memory_bytes(cfg.device) if cfg.device.startswith("cuda") else _own_peak_rss()


def _own_peak_rss() -> int:
    """This process's own peak RSS: VmHWM, which a new program image starts afresh (Linux's ru_maxrss carries
    the parent's peak across fork + exec, so a spawned child would report the benchmark's own)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return peak_memory_bytes("cpu")


def peak_memory(spec: BenchSpec, cfg: BenchConfig) -> int:
    """`_peak_memory_run` in a spawned process, so that no other model's memory is counted."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_peak_memory_run, (spec, cfg))


def bench_models(
    specs: Sequence[BenchSpec], cfg: BenchConfig, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Benchmark every model side by side (see the module doc); one result dict per model, in order."""
    check_device(cfg.device)
    if not specs:
        raise SqftError("no model to benchmark: give one or more MODEL paths")
    say = progress or log.info
    loaded = []
    for i, spec in enumerate(specs):
        say(f"[{i + 1}/{len(specs)}] loading {spec.name}")
        loaded.append(_load(spec, cfg.device))
    timings: list[dict[int, list[Timing]]] = [{b: [] for b in cfg.batch_sizes} for _ in specs]
    rounds = cfg.warmup + cfg.repeats
    for r in range(rounds):
        order = [(r + k) % len(specs) for k in range(len(specs))]
        for i in order:
            model = loaded[i].model
            for b in cfg.batch_sizes:
                ids = prompt_batch(model.config.vocab_size, cfg.prompt_tokens, b, cfg.seed, cfg.device)
                t = decode_timing(model, ids, cfg.new_tokens)
                if r >= cfg.warmup:
                    timings[i][b].append(t)
        say(f"round {r + 1}/{rounds} {'(warm-up)' if r < cfg.warmup else ''}".rstrip())
    results = []
    for spec, lm, tm in zip(specs, loaded, timings, strict=True):
        results.append(_result(spec, lm, tm, cfg, say))
    return results


def _result(
    spec: BenchSpec,
    lm: LoadedModel,
    tm: dict[int, list[Timing]],
    cfg: BenchConfig,
    say: Callable[[str], None],
) -> dict[str, Any]:
    packing = lm.packing
    result = {
        "name": spec.name,
        "spec": asdict(spec),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "int4_layers": {
            "packed": 0 if packing is None else len(packing.packed),
            "fallback": 0 if packing is None else len(packing.fallback),
        },
        "weight_bytes": weight_bytes(lm.model),
        "disk_bytes": _disk_bytes(spec.source),
        "batches": {str(b): _figures(t, b, cfg) for b, t in tm.items()},
        "peak_memory_bytes": None,
    }
    if cfg.peak_memory:
        say(f"peak memory of {spec.name} (fresh process)")
        result["peak_memory_bytes"] = peak_memory(spec, cfg)
    return result


def _disk_bytes(source: str) -> int | None:
    p = Path(source)
    return dir_size_bytes(p) if p.is_dir() else p.stat().st_size if p.is_file() else None
