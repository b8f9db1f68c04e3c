"""Plumbing every stage shares: check the output first, load the input artifact, write the output artifact
(temporary directory, then moved into place) with its manifest."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sqft.artifacts import (
    Stopwatch,
    atomic_output,
    check_output,
    check_writable,
    parent_reference,
    write_manifest,
)
from sqft.calibration import calibration_windows, load_texts
from sqft.errors import SqftError
from sqft.loading import load_model
from sqft.modeling.io import (
    config_dict,
    load_tokenizer,
    parse_dtype,
    resolve_source,
    save_model,
    weights_bytes,
)

__all__ = [
    "StageIO",
    "check_model_output",
    "load_input",
    "max_positions",
    "run_calibrated_stage",
    "save_output",
]

log = logging.getLogger(__name__)


def check_model_output(
    source: str | os.PathLike,
    output: str | os.PathLike,
    overwrite: bool = False,
    dtype: str = "auto",
    gguf_file: str | None = None,
    size_factor: float = 1.0,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> None:
    """Before any work: OUTPUT may be written (`check_output` with the stage's `inputs`) and has room for about
    `size_factor` × the source's weights (in `dtype`), and the source exists with undamaged config, tokenizer
    files and weight headers."""
    check_output(output, overwrite, inputs)
    where, gguf = resolve_source(source, gguf_file)
    cfg = None if gguf else config_dict(where)
    need = int(weights_bytes(where, cfg, parse_dtype(dtype)) * size_factor)
    if gguf:
        need = Path(where, gguf).stat().st_size
    check_writable(output, need)


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
    return model, tokenizer, parent_reference(source)


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
    inputs: Sequence[str | os.PathLike | None] = (),
) -> dict[str, Any]:
    """Write weights + tokenizer + sqft.json to a temporary directory, then move it into place (`inputs`:
    the paths the stage read, which `--overwrite` must never delete)."""
    with atomic_output(output, overwrite, inputs) as tmp:
        save_fn(model, tokenizer, tmp)
        return write_manifest(tmp, stage, config, parent, figures)


def max_positions(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


@dataclass
class StageIO:
    """Where a calibrated stage (sparsify, quantize) reads and writes, and how it loads its input."""

    source: str
    output: str
    calibration: str | None = None
    text_field: str = "text"
    overwrite: bool = False
    dtype: str = "auto"
    gguf_file: str | None = None
    trust_remote_code: bool = False
    quiet: bool = False


def run_calibrated_stage(
    stage: str,
    io: StageIO,
    config: Any,
    check: Callable[[nn.Module], None],
    apply: Callable[[nn.Module, Any], Any],
    figures_of: Callable[[Any], dict[str, Any]],
    save_fn: Callable[[nn.Module, Any, Path], None] = save_model,
    size_factor: float = 1.0,
) -> dict[str, Any]:
    """Load, calibrate, transform, write: the flow every calibrated stage shares. Returns the manifest.

    Everything that can be checked cheaply is checked before the slow model load: the output path (writable,
    room for about `size_factor` × the input's weights), the model source, the calibration file. `config` supplies method, needs_calibration, n_samples, seq_len, seed and
    device; `check(model)` validates it against the model (N:M pattern, group size) before any work;
    `apply(model, windows)` does the stage's work in place and returns its result, `figures_of(result)` the
    stage's own figures for the manifest.
    """
    inputs = [io.source, io.calibration]
    check_model_output(io.source, io.output, io.overwrite, io.dtype, io.gguf_file, size_factor, inputs)
    texts = None
    if config.needs_calibration:
        if io.calibration is None:
            raise SqftError(f"method '{config.method}' needs calibration data: pass --calibration FILE")
        texts = load_texts(io.calibration, io.text_field)
    model, tokenizer, parent = load_input(io.source, io.dtype, io.gguf_file, io.trust_remote_code)
    check(model)
    windows = None
    requested = config.seq_len
    if texts is not None:
        seq_len = min(config.seq_len, max_positions(model) or config.seq_len)
        if seq_len != requested:
            log.info("seq_len %d capped to the model's max_position_embeddings %d", requested, seq_len)
            config.seq_len = seq_len  # the manifest records the length used
        windows = calibration_windows(tokenizer, texts, config.n_samples, seq_len, config.seed)
    with Stopwatch(config.device) as sw:
        result = apply(model, windows)
    figures = {
        **figures_of(result),
        "seconds": round(sw.seconds, 3),
        "peak_memory_bytes": sw.peak_memory_bytes,
        "calibration": {
            "source": None if io.calibration is None else str(io.calibration),
            "windows": None if windows is None else list(windows.shape),
            "seq_len_requested": requested,
        },
    }
    return save_output(
        model,
        tokenizer,
        io.output,
        stage=stage,
        config=config,
        parent=parent,
        figures=figures,
        overwrite=io.overwrite,
        save_fn=save_fn,
        inputs=inputs,
    )
