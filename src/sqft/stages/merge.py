"""The merge stage: load a base and its adapter, fold the adapter in (`sqft.merge.merge_adapters`), write one
model: sparse fp16/bf16, or INT4 in the GPTQ format (QA-SparsePEFT).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqft.adapt.export import load_adapter, read_elastic_config
from sqft.adapt.inject import adapter_layers, set_active_ranks
from sqft.artifacts import Stopwatch, atomic_output, check_output, write_manifest
from sqft.errors import SqftError
from sqft.loading import load_model
from sqft.merge import (
    check_adapter_inputs,
    check_mergeable,
    dense_target_linears,
    load_qa_fp16_base,
    merge_adapters,
    report_figures,
    take_int4_layers,
)
from sqft.modeling.io import save_model
from sqft.quantize.format import save_gptq_model
from sqft.search.api import resolve_adapter_config
from sqft.stages.common import check_model_output, load_input

__all__ = ["PROBE_TEXT", "run_merge"]

PROBE_TEXT = "Question: Natalia sold 48 clips in April and half as many in May. How many in total?\nAnswer:"


def _probe(tokenizer, model: nn.Module) -> torch.Tensor:
    ids = tokenizer(PROBE_TEXT, return_tensors="pt")["input_ids"]
    return ids.to(next(model.parameters()).device)


def _complete_int4(model: nn.Module, qa_int4: str | os.PathLike | None) -> None:
    """Replace decoder linears left dense (no adapter) by the INT4 model's layers; refuse a mixed model."""
    dense = dense_target_linears(model)
    if not dense:
        return
    if qa_int4 is None:
        raise SqftError(
            f"the merged model still has {len(dense)} dense decoder linears (e.g. '{dense[0]}'): this QA adapter "
            "was trained on the fp16 base (qa_base=fp16); pass --qa-int4 INT4_MODEL_DIR to take those layers "
            "from the INT4 model"
        )
    take_int4_layers(model, dense, load_model(qa_int4), str(qa_int4))


def run_merge(
    base_source: str | os.PathLike,
    adapter_dir: str | os.PathLike,
    output: str | os.PathLike,
    config_spec: str | None = None,
    allow_densify: bool = False,
    overwrite: bool = False,
    dtype: str = "auto",
    qa_int4: str | os.PathLike | None = None,
    gguf_file: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Merge an adapter into its base and save one model (sparse fp16/bf16, or INT4 in the GPTQ format).

    A QA adapter trained on the fp16 base (qa_base fp16 or gptq-residual) merges into the fp16 sparse BASE;
    `qa_int4` then supplies the INT4 layers that carry no adapter (o_proj, gate_proj, ...), so the output is a
    complete INT4 model, and for gptq-residual the bins the targets were moved into. The adapter
    must have been trained on BASE (its recorded fingerprint and, for SparsePEFT, mask), unless `force`.
    Returns the manifest's figures.
    """
    inputs = [base_source, adapter_dir, qa_int4]
    out = check_output(output, overwrite, inputs)
    meta = read_elastic_config(adapter_dir)  # fails fast on a non-adapter directory
    check_model_output(base_source, output, overwrite, dtype, gguf_file, inputs=inputs)
    _, provenance = check_adapter_inputs(adapter_dir, base_source, qa_int4, force)
    config = resolve_adapter_config(adapter_dir, config_spec or "median") if meta["groups"] else None
    model, tokenizer, parent = load_input(base_source, dtype=dtype, gguf_file=gguf_file)
    # the base the adapter trained on, before the adapter wraps its targets
    load_qa_fp16_base(model, adapter_dir, qa_int4, dtype)
    load_adapter(model, adapter_dir, force)
    provenance["mask_checked"] = meta.get("mask_fingerprint") is not None
    check_mergeable(model, allow_densify)
    if config is not None:
        set_active_ranks(model, config)
    n_layers = len(adapter_layers(model))
    with Stopwatch() as sw:
        model, report = merge_adapters(model, allow_densify, probe=_probe(tokenizer, model))
    if report.kind == "int4":
        _complete_int4(model, qa_int4)
    figures = {
        **report_figures(report),
        "adapter_layers": n_layers,
        "time_s": sw.seconds,
        "provenance": provenance,
    }
    cfg = {
        "adapter": str(Path(adapter_dir).resolve()),
        "config": config_spec,
        "configuration": config,
        "allow_densify": allow_densify,
        "base": parent,
        "force": force,
    }
    with atomic_output(out, overwrite, inputs) as tmp:
        (save_gptq_model if report.kind == "int4" else save_model)(model, tokenizer, tmp)
        # the parent is the adapter (whose own parent is the base): the lineage then holds the fine-tuning
        write_manifest(tmp, "merge", cfg, str(adapter_dir), figures)
    return figures
