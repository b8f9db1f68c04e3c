"""The export stage: load a merged model artifact, write GGUF or compressed-tensors (`sqft.export`) into a
temporary directory that is moved into place with a manifest."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from sqft.artifacts import atomic_output, check_output, parent_reference, write_manifest
from sqft.export.api import (
    ExportConfig,
    check_export,
    check_source,
    default_output,
    export_name,
    require_extra,
    write_export,
)
from sqft.export.inputs import export_inputs
from sqft.loading import load_model
from sqft.modeling.io import load_tokenizer, resolve_source

__all__ = ["run_export"]

log = logging.getLogger(__name__)


def run_export(
    source: str | os.PathLike,
    output: str | os.PathLike | None,
    config: ExportConfig,
    overwrite: bool = False,
    gguf_file: str | None = None,
) -> dict[str, Any]:
    """Export the model at `source` (a merged sqft artifact or any HF model) to `output` (default:
    `default_output`); returns the manifest."""
    out = check_output(output if output is not None else default_output(source, config.format), overwrite)
    require_extra(config)
    check_source(source)
    resolve_source(source, gguf_file)
    model = load_model(source, gguf_file=gguf_file)
    tokenizer = load_tokenizer(source, gguf_file=gguf_file)
    inputs = export_inputs(model, export_name(config, source))
    check_export(inputs, tokenizer, config)
    t0 = time.perf_counter()
    with atomic_output(out, overwrite) as tmp:
        figures = write_export(inputs, tokenizer, config, tmp)
        figures["seconds"] = round(time.perf_counter() - t0, 3)
        manifest = write_manifest(tmp, "export", config, parent_reference(source), figures)
    log.info("exported %s → %s", source, out)
    return manifest
