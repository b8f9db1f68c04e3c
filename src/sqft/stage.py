"""Plumbing every stage shares: load its input artifact, write its output artifact with a manifest."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from sqft.artifacts import atomic_output, write_manifest
from sqft.modeling.io import load_model, load_tokenizer, resolve_source, save_model

__all__ = ["load_input", "save_output", "max_positions"]


def load_input(
    source: str | os.PathLike,
    dtype: str = "auto",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[nn.Module, Any, str]:
    """Model (on the CPU: stages move one block at a time to the device), tokenizer, and the parent reference."""
    resolve_source(source, gguf_file)  # fail fast with a clear message before the slow imports
    model = load_model(source, dtype=dtype, gguf_file=gguf_file, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(source, gguf_file=gguf_file, trust_remote_code=trust_remote_code)
    parent = str(Path(source).resolve()) if Path(str(source)).exists() else str(source)
    return model, tokenizer, parent


def save_output(
    model: nn.Module,
    tokenizer: Any,
    output: str | os.PathLike,
    *,
    stage: str,
    config: Any,
    parent: str | None,
    figures: dict[str, Any],
    overwrite: bool = False,
    save_fn: Callable[[nn.Module, Any, Path], None] = save_model,
) -> dict[str, Any]:
    """Write weights + tokenizer + sqft.json to a temporary directory, then move it into place."""
    with atomic_output(output, overwrite) as tmp:
        save_fn(model, tokenizer, tmp)
        return write_manifest(tmp, stage, config, parent, figures)


def max_positions(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)
