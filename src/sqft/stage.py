"""Plumbing every stage shares: load its input artifact, write its output artifact with a manifest."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from sqft.artifacts import atomic_output, check_output, write_manifest
from sqft.errors import SqftError
from sqft.modeling.io import load_model, load_tokenizer, resolve_source, save_model

__all__ = ["load_input", "load_calibrated_input", "calibration_figures", "save_output", "max_positions"]


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


def load_calibrated_input(
    source: str | os.PathLike,
    output: str | os.PathLike,
    config: Any,
    calibration: str | None,
    text_field: str = "text",
    overwrite: bool = False,
    dtype: str = "auto",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    check: Callable[[nn.Module], None] | None = None,
) -> tuple[nn.Module, Any, str, Any]:
    """What a calibrated stage (sparsify, quantize) needs: model, tokenizer, parent and calibration windows.

    Everything that can be checked cheaply is checked before the slow model load: the output path, the model
    source, the calibration file. `config` supplies method, needs_calibration, n_samples, seq_len and seed;
    `check(model)` validates the config against the model (N:M pattern, group size) before any work.
    """
    from sqft.calibration import calibration_windows, load_texts

    check_output(output, overwrite)
    resolve_source(source, gguf_file)
    texts = None
    if config.needs_calibration:
        if calibration is None:
            raise SqftError(f"method '{config.method}' needs calibration data: pass --calibration FILE")
        texts = load_texts(calibration, text_field)
    model, tokenizer, parent = load_input(source, dtype, gguf_file, trust_remote_code)
    if check is not None:
        check(model)
    windows = None
    if texts is not None:
        seq_len = min(config.seq_len, max_positions(model) or config.seq_len)
        windows = calibration_windows(tokenizer, texts, config.n_samples, seq_len, config.seed)
    return model, tokenizer, parent, windows


def calibration_figures(calibration: str | None, windows: Any) -> dict[str, Any]:
    """The manifest's record of the calibration data a stage used."""
    return {"source": None if calibration is None else str(calibration),
            "windows": None if windows is None else list(windows.shape)}
