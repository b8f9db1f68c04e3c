"""Plumbing of the adapt-stage commands: fine-tune to an adapter directory, extract a sub-adapter, merge.

Each checks its inputs and output path before the expensive work, writes through `atomic_output`, and leaves
a manifest (`sqft.json`) with its configuration and measured figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqft.adapt.config import AdaptConfig, TrainConfig
from sqft.adapt.export import (
    elastic_space,
    extract_subadapter,
    load_adapter,
    read_elastic_config,
    save_adapter,
)
from sqft.adapt.inject import adapter_layers, qa_params_of, set_active_ranks
from sqft.adapt.layer import is_quant_linear
from sqft.adapt.nls import STATS_FILE
from sqft.adapt.provenance import check_base, check_resume
from sqft.adapt.train import finetune, is_main_process, last_checkpoint
from sqft.artifacts import (
    Stopwatch,
    atomic_output,
    check_output,
    check_writable,
    fingerprint,
    write_manifest,
)
from sqft.data import TrainingExample, as_training_examples, load_training_examples
from sqft.errors import SqftError
from sqft.files import read_json_file, safetensors_header

__all__ = [
    "finetune_to_dir",
    "resolve_qa_base",
    "resolve_adapter_config",
    "extract_to_dir",
    "merge_to_dir",
    "CONFIGURATION_FILE",
]

log = logging.getLogger(__name__)

CONFIGURATION_FILE = "configuration.json"
PROBE_TEXT = "Question: Natalia sold 48 clips in April and half as many in May. How many in total?\nAnswer:"


def _work_dir(output: Path) -> Path:
    return output.resolve().parent / f".{output.name}.checkpoints"


def _run_record(
    model_source: Any,
    examples: Sequence[TrainingExample],
    adapt: AdaptConfig,
    train: TrainConfig,
    qa_int4: Any,
) -> dict[str, Any]:
    """What makes two fine-tuning runs the same run: the base, the data, the adapter and training configs
    (logging and checkpoint frequency aside)."""
    data = hashlib.sha256()
    for ex in examples:
        data.update(ex.prompt.encode() + b"\0" + ex.response.encode() + b"\1")
    train_cfg = {
        k: v for k, v in dataclasses.asdict(train).items() if k not in ("logging_steps", "save_steps")
    }
    return {
        "base": fingerprint(model_source) or str(model_source),
        "qa_int4": fingerprint(qa_int4) if qa_int4 is not None else None,
        "data": data.hexdigest()[:32],
        "adapt": dataclasses.asdict(adapt),
        "train": train_cfg,
    }


def _qa_params_from(int4_source: str | os.PathLike) -> dict[str, Any]:
    from sqft.modeling import load_model

    int4 = load_model(int4_source)
    return {n.removeprefix("module."): qa_params_of(m) for n, m in int4.named_modules() if is_quant_linear(m)}


def resolve_qa_base(adapt: AdaptConfig, fp16_parent: bool) -> AdaptConfig:
    """`qa_base='auto'` for a fine-tuning run: fp16 when the fp16 sparse model is the base (`fp16_parent`: the INT4
    model is given alongside for its s_q, z), else gptq-dither on the INT4 model; logged with the reason."""
    if not adapt.quantization_aware or adapt.qa_base != "auto":
        return adapt
    if fp16_parent:
        log.info(
            "qa_base=auto -> fp16: the fp16 sparse weights are the base, as in the paper (its held-out loss fell fastest)"
        )
        return adapt.with_(qa_base="fp16")
    log.info(
        "qa_base=auto -> gptq-dither: only the INT4 model is given, so QA trains on its codes with a seeded in-bin "
        "offset (a plain gptq base lies on the grid and would freeze the forward for the first steps); to train on "
        "the paper's fp16 base, pass the fp16 sparse model as MODEL and the INT4 model as --qa-int4"
    )
    return adapt.with_(qa_base="gptq-dither")


def finetune_to_dir(
    model_source: str | os.PathLike,
    data: str | os.PathLike | Sequence[TrainingExample],
    adapt: AdaptConfig,
    train: TrainConfig,
    output: str | os.PathLike,
    overwrite: bool = False,
    dtype: str = "auto",
    qa_int4: str | os.PathLike | None = None,
    data_limit: int | None = None,
    progress: bool = True,
    gguf_file: str | None = None,
    data_format: str = "auto",
    template: str | None = None,
    response_template: str | None = None,
    restart: bool = False,
) -> Path:
    """Fine-tune an adapter on `model_source` and save it (PEFT layout + sqft files) to `output`.

    `data`: a file (or hub dataset) read by `sqft.data.load_training_examples` with `data_format`,
    `template`, `response_template` and `data_limit`; or the training examples themselves. Checkpoints of an
    interrupted run with the same configuration are resumed; of another configuration refused, unless
    `restart` (which deletes them).
    """
    from sqft.stage import check_model_output, load_input

    from_file = isinstance(data, (str, os.PathLike))
    inputs = [model_source, qa_int4, data if from_file else None]
    out = check_output(output, overwrite, inputs)
    check_model_output(model_source, output, overwrite, dtype, gguf_file, size_factor=0.0, inputs=inputs)
    if from_file:
        examples = load_training_examples(data, data_format, template, response_template, limit=data_limit)
    else:
        examples = as_training_examples(data)[:data_limit]
    adapt = resolve_qa_base(adapt, fp16_parent=qa_int4 is not None)
    if adapt.quantization_aware and adapt.qa_base == "fp16" and qa_int4 is None:
        raise SqftError(
            "qa_base=fp16 trains on the fp16 sparse model and needs the INT4 model's scales: "
            "pass --qa-int4 INT4_MODEL_DIR (or use --qa-base gptq on the INT4 model)"
        )
    work = _work_dir(out)
    if is_main_process():
        record = _run_record(model_source, examples, adapt, train, qa_int4)
        check_resume(work, record, last_checkpoint(work) is not None, restart)
    qa_params = _qa_params_from(qa_int4) if qa_int4 is not None else None
    model, tokenizer, parent = load_input(model_source, dtype=dtype, gguf_file=gguf_file)
    with Stopwatch("cuda" if torch.cuda.is_available() else "cpu") as sw:
        result = finetune(model, tokenizer, examples, adapt, train, work, qa_params, progress)
    if is_main_process():
        with atomic_output(out, overwrite, inputs) as tmp:
            save_adapter(result.model, tmp, base=parent, stats=result.stats)
            figures = {
                **result.figures,
                "time_s": sw.seconds,
                "peak_memory_bytes": sw.peak_memory_bytes,
                "examples": len(examples),
            }
            config = {
                "adapt": adapt,
                "train": result.train,
                "data": str(data) if from_file else f"{len(examples)} examples",
                "data_format": data_format if from_file else None,
                "qa_int4": qa_int4,
            }
            write_manifest(tmp, "finetune", config, parent, figures)
        shutil.rmtree(work, ignore_errors=True)
    return out


def resolve_adapter_config(adapter_dir: str | os.PathLike, spec: str) -> dict[str, int]:
    """A configuration (group → rank) of an adapter from a heuristic name or a JSON file (via sqft.search)."""
    from sqft.search import SearchSpace, resolve_config

    spaces = elastic_space(adapter_dir)
    if not spaces:
        raise SqftError(
            f"adapter '{adapter_dir}' has no elastic (NLS) groups: there is no configuration to choose"
        )
    stats_file = Path(adapter_dir) / STATS_FILE
    stats = read_json_file(stats_file, "NLS statistics") if stats_file.is_file() else None
    return dict(resolve_config(spec, SearchSpace(spaces), stats))


def check_configuration_source(adapter_dir: str | os.PathLike, spec: str, force: bool = False) -> bool:
    """A configuration JSON written by `sqft search` must come from a search on this adapter: its directory's
    manifest records the adapter's fingerprint. Returns whether the check ran."""
    from sqft.artifacts import read_manifest

    path = Path(spec)
    manifest = read_manifest(path.parent) if spec.endswith(".json") and path.is_file() else None
    expected = (manifest or {}).get("parent_fingerprint")
    if expected is None:
        return False
    actual = fingerprint(adapter_dir)
    if actual != expected:
        message = (
            f"configuration '{spec}' was chosen by a search on another adapter ('{manifest.get('parent')}', "
            f"fingerprint {expected[:12]}), not on '{adapter_dir}' ({str(actual)[:12]}): use that adapter"
        )
        if not force:
            raise SqftError(message + "; or pass --force to extract anyway (recorded in the manifest)")
        log.warning("--force: %s", message)
    return True


def extract_to_dir(
    adapter_dir: str | os.PathLike,
    spec: str,
    output: str | os.PathLike,
    overwrite: bool = False,
    force: bool = False,
) -> dict[str, int]:
    """Write the sub-adapter chosen by `spec` (median, maximal, ..., or a JSON file) to `output`."""
    out = check_output(output, overwrite, [adapter_dir])
    check_writable(out)
    read_elastic_config(adapter_dir)  # a damaged adapter fails here, before the configuration is resolved
    checked = check_configuration_source(adapter_dir, spec, force)
    config = resolve_adapter_config(adapter_dir, spec)
    with atomic_output(out, overwrite, [adapter_dir]) as tmp:
        ranks = extract_subadapter(adapter_dir, config, tmp)
        (tmp / CONFIGURATION_FILE).write_text(json.dumps(config, indent=2) + "\n")
        figures = {"adapter_parameters": _count_params(tmp), "mean_rank": sum(ranks.values()) / len(ranks)}
        write_manifest(
            tmp,
            "extract",
            {"config": spec, "configuration": config, "force": force},
            str(adapter_dir),
            {**figures, "provenance": {"configuration_checked": checked, "forced": force}},
        )
    return config


def _count_params(directory: Path) -> int:
    _, header = safetensors_header(directory / "adapter_model.safetensors")
    return sum(v["shape"][0] * v["shape"][1] for k, v in header.items() if k != "__metadata__")


def _complete_int4(model: nn.Module, qa_int4: str | os.PathLike | None) -> None:
    """Replace decoder linears left dense (no adapter) by the INT4 model's layers; refuse a mixed model."""
    from sqft.modeling.structure import DEFAULT_TARGETS, find_target_linears
    from sqft.quantize.format import replace_module

    dense = [n for n, m in find_target_linears(model, DEFAULT_TARGETS).items() if isinstance(m, nn.Linear)]
    if not dense:
        return
    if qa_int4 is None:
        raise SqftError(
            f"the merged model still has {len(dense)} dense decoder linears (e.g. '{dense[0]}'): this QA adapter "
            "was trained on the fp16 base (qa_base=fp16); pass --qa-int4 INT4_MODEL_DIR to take those layers "
            "from the INT4 model"
        )
    from sqft.modeling import load_model

    int4 = load_model(qa_int4)
    for name in dense:
        layer = int4.get_submodule(name)
        if not is_quant_linear(layer):
            raise SqftError(
                f"'{qa_int4}' has no INT4 layer '{name}': pass the INT4 model the adapter was trained with"
            )
        replace_module(model, name, layer)


def _probe(tokenizer, model: nn.Module) -> torch.Tensor:
    ids = tokenizer(PROBE_TEXT, return_tensors="pt")["input_ids"]
    return ids.to(next(model.parameters()).device)


def merge_to_dir(
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

    A QA adapter trained with qa_base=fp16 merges into the fp16 sparse BASE; `qa_int4` then supplies the INT4
    layers that carry no adapter (o_proj, gate_proj, ...), so the output is a complete INT4 model. The adapter
    must have been trained on BASE (its recorded fingerprint and, for SparsePEFT, mask), unless `force`.
    """
    from sqft.merge import check_mergeable, merge_adapters, report_figures
    from sqft.modeling.io import save_model
    from sqft.stage import check_model_output, load_input

    inputs = [base_source, adapter_dir, qa_int4]
    out = check_output(output, overwrite, inputs)
    meta = read_elastic_config(adapter_dir)  # fails fast on a non-adapter directory
    check_model_output(base_source, output, overwrite, dtype, gguf_file, inputs=inputs)
    provenance = check_base(meta, adapter_dir, base_source, force)
    config = resolve_adapter_config(adapter_dir, config_spec or "median") if meta["groups"] else None
    model, tokenizer, parent = load_input(base_source, dtype=dtype, gguf_file=gguf_file)
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
    with atomic_output(out, overwrite, inputs) as tmp:
        if report.kind == "int4":
            from sqft.quantize.format import save_gptq_model

            save_gptq_model(model, tokenizer, tmp)
        else:
            save_model(model, tokenizer, tmp)
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
        # the parent is the adapter (whose own parent is the base): the lineage then holds the fine-tuning
        write_manifest(tmp, "merge", cfg, str(adapter_dir), figures)
    return figures
