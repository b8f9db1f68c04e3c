"""Fake artifact directories with hand-written manifests and results (no stage needs to run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GiB = 1024**3
MiB = 1024**2


def make_artifact(
    directory: Path,
    stage: str | None,
    config: dict[str, Any] | None = None,
    parent: Path | str | None = None,
    figures: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
) -> Path:
    """A directory with sqft.json (unless `stage` is None) and extra JSON files (name → object)."""
    directory.mkdir(parents=True)
    if stage is not None:
        manifest = {
            "stage": stage,
            "config": config or {},
            "parent": None if parent is None else str(parent),
            "versions": {"sqft": "0.1.0"},
            "created": "2025-01-01T00:00:00+0000",
            "figures": figures or {},
        }
        (directory / "sqft.json").write_text(json.dumps(manifest))
    for name, obj in (files or {}).items():
        (directory / name).write_text(json.dumps(obj))
    return directory


SPACE = [32, 24, 16]
# per-item GSM8K outcomes of the adapter (21/40) and the merged model (20/40) on the same 40 items: the merged
# model loses 3 items the adapter gets and gains 2 it misses
GSM8K_ITEMS = "ab" * 32
ADAPTER_GSM8K = "1" * 21 + "0" * 19
MERGED_GSM8K = "1" * 18 + "000" + "11" + "0" * 17


def elastic_config(n_layers: int = 4) -> dict[str, Any]:
    groups = {
        f"model.layers.{i}.self_attn": {"modules": [f"model.layers.{i}.self_attn.q_proj"], "space": SPACE}
        for i in range(n_layers)
    }
    return {"format": "sqft-adapter/1", "groups": groups, "module_ranks": {}, "base_model": None}


# the adapter's results, in the older nested layout ({"results": {...}})
ADAPTER_RESULTS = {
    "results": {
        "gsm8k": {
            "strict_match": 0.4,
            "flexible_match": 0.525,
            "n": 40,
            "correct": {"flexible_match": ADAPTER_GSM8K},
            "items_sha256": GSM8K_ITEMS,
        },
        "mc": {"acc": 0.32, "acc_norm": 0.34, "n": 50},  # written before intervals: none stored
    }
}
MERGED_RESULTS = {
    "gsm8k": {
        "flexible_match": 0.5,
        "flexible_match_ci95": [0.352, 0.648],  # as stored (Wilson of 20/40, rounded)
        "n": 40,
        "correct": {"flexible_match": MERGED_GSM8K},
        "items_sha256": GSM8K_ITEMS,
    },
    "wiki": {"perplexity": 12.3456, "n_tokens": 1000},
}


def pipeline_artifacts(root: Path) -> dict[str, Path]:
    """sparse base (bf16) → NLS adapter (shears) → search; a merged sparse model; a bare HF checkpoint."""
    sparse = make_artifact(
        root / "sparse50",
        "sparsify",
        {"method": "wanda", "sparsity": 0.5},
        None,
        {"sparsity": {"total": 0.5012, "per_layer": {}}, "seconds": 12.0, "size_on_disk_bytes": 2 * GiB},
        {"config.json": {"model_type": "llama", "dtype": "bfloat16"}},
    )
    adapter = make_artifact(
        root / "adapter",
        "finetune",
        {"pipeline": "shears"},
        sparse,
        {
            "trainable_parameters": 1234567,
            "train_seconds": 3600.0,
            "train_peak_memory_bytes": 8 * GiB,
            "size_on_disk_bytes": 50 * MiB,
        },
        {
            "adapter_config.json": {"peft_type": "LORA"},
            "elastic_adapter_config.json": elastic_config(),
            "results.json": ADAPTER_RESULTS,
        },
    )
    config = {f"model.layers.{i}.self_attn": r for i, r in enumerate([32, 24, 16, 24])}
    search = make_artifact(
        root / "search",
        "search",
        {"strategy": "hill-climbing"},
        adapter,
        {"seconds": 99.0, "size_on_disk_bytes": 10 * MiB},
        {"configuration.json": config},
    )
    merged = make_artifact(
        root / "merged",
        "merge",
        {"pipeline": "sqft-sparsepeft"},
        adapter,
        {"size_on_disk_bytes": 2 * GiB},
        {
            "config.json": {"model_type": "llama", "dtype": "bfloat16"},
            "results.json": MERGED_RESULTS,
        },
    )
    bare = make_artifact(root / "bare", None, files={"config.json": {"model_type": "llama"}})
    return {"sparse": sparse, "adapter": adapter, "search": search, "merged": merged, "bare": bare}
