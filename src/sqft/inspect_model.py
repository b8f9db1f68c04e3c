"""`inspect`: what an artifact is — architecture, dtype or bits, size on disk, sparsity per layer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqft.artifacts import dir_size_bytes, read_manifest
from sqft.errors import SqftError
from sqft.files import read_json_file
from sqft.loading import load_model
from sqft.sparsify.api import sparsity_report

__all__ = ["inspect_artifact", "format_inspection"]


def inspect_artifact(directory: str | os.PathLike) -> dict[str, Any]:
    """Summary of a model directory (dense, sparse or INT4), counting zeros of dequantized weights."""
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise SqftError(f"'{d}' is not a model directory (no config.json)")
    cfg = read_json_file(d / "config.json", "model config")
    if not isinstance(cfg, dict):
        raise SqftError(f"model config '{d / 'config.json'}' is not a JSON object")
    qcfg = cfg.get("quantization_config") or {}
    model = load_model(d)
    n_params = sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for n, b in model.named_buffers() if n.endswith("qweight")
    )
    manifest = read_manifest(d)
    return {
        "path": str(d),
        "architecture": (cfg.get("architectures") or [type(model).__name__])[0],
        "model_type": cfg.get("model_type"),
        "layers": cfg.get("num_hidden_layers"),
        "hidden_size": cfg.get("hidden_size"),
        "dtype": cfg.get("dtype") or cfg.get("torch_dtype"),
        "bits": qcfg.get("bits"),
        "group_size": qcfg.get("group_size"),
        "size_on_disk_bytes": dir_size_bytes(d),
        "stage": manifest["stage"] if manifest else None,
        "parameters_or_packed_words": n_params,
        "sparsity": sparsity_report(model),
    }


def format_inspection(info: dict[str, Any], per_layer: bool = True) -> str:
    """Human-readable table of `inspect_artifact`'s result."""
    bits = f"INT{info['bits']} (group {info['group_size']})" if info["bits"] else str(info["dtype"])
    lines = [
        f"path          {info['path']}",
        f"architecture  {info['architecture']} ({info['model_type']}, {info['layers']} layers, hidden {info['hidden_size']})",
        f"weights       {bits}",
        f"size on disk  {info['size_on_disk_bytes'] / 2**20:.2f} MiB",
        f"stage         {info['stage'] or '-'}",
        f"sparsity      {info['sparsity']['total']:.2%} of {info['sparsity']['numel']:,} target weights",
    ]
    if per_layer:
        lines.append("")
        lines.append(f"{'layer':<50} {'sparsity':>9}")
        for name, s in info["sparsity"]["per_layer"].items():
            lines.append(f"{name:<50} {s:>9.2%}")
    return "\n".join(lines)
