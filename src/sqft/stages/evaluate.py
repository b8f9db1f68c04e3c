"""The evaluate stage: load a model (plus an optional adapter), score it on its tasks (`sqft.evaluate`),
write the results: an artifact directory (`results.json` + manifest, as a pipeline caches it) or one results
file (`sqft evaluate --output`), each written atomically. `sqft evaluate` and `sqft run` both come here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sqft.adapt.export import load_adapter
from sqft.artifacts import atomic_output, check_output, check_writable, versions, write_manifest
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.evaluate.api import TaskSpec, check_results_path, evaluate, load_task_data, write_results
from sqft.loading import load_model
from sqft.merge import check_adapter_inputs, load_qa_fp16_base
from sqft.modeling.io import load_tokenizer, resolve_source
from sqft.quantize.kernels import pack_int4_layers

__all__ = ["EvaluateOptions", "Evaluation", "run_evaluate"]


@dataclass
class EvaluateOptions:
    """How the model is loaded and run for evaluation."""

    adapter: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    gguf_file: str | None = None
    trust_remote_code: bool = False
    int4_kernels: bool = False  # INT4 layers on the packed kernels (default: the exact dequantized reference)
    force: bool = False  # an adapter recorded as trained on another base
    # a QA adapter trained on the fp16 base: the INT4 model whose layers the decoder linears without an adapter
    # take, as in training and in the merged model (`merge.take_untargeted_int4_layers`)
    qa_int4: str | None = None
    quiet: bool = False


@dataclass
class Evaluation:
    results: dict[str, dict]
    load_seconds: float
    provenance: dict | None


def _check_adapter(model_path: str, opts: EvaluateOptions) -> dict | None:
    """Before loading anything: the adapter exists, is undamaged and was trained on the model (or force)."""
    if opts.adapter is not None and not Path(opts.adapter).is_dir():
        raise SqftError(f"adapter directory '{opts.adapter}' does not exist")
    _, provenance = check_adapter_inputs(opts.adapter, model_path, opts.qa_int4, opts.force)
    return provenance if opts.adapter is not None else None


def _load(model_path: str, opts: EvaluateOptions) -> tuple[nn.Module, Any]:
    model = load_model(model_path, opts.dtype, opts.device, opts.gguf_file, opts.trust_remote_code)
    tokenizer = load_tokenizer(model_path, opts.gguf_file, opts.trust_remote_code)
    # before the adapter wraps its targets (`_check_adapter` checked the pair)
    load_qa_fp16_base(model, opts.adapter, opts.qa_int4, opts.dtype, opts.device)
    if opts.adapter is not None:
        model = load_adapter(model, opts.adapter, opts.force).to(opts.device).eval()
    if opts.int4_kernels:
        pack_int4_layers(model, opts.device)
    return model, tokenizer


def _write_dir(
    out: Path, model_path: str, specs: dict[str, TaskSpec], opts: EvaluateOptions, ev: Evaluation
) -> None:
    parent = opts.adapter if opts.adapter is not None else model_path
    with atomic_output(out, inputs=[model_path, opts.adapter, opts.qa_int4]) as tmp:
        (tmp / "results.json").write_text(json.dumps(ev.results, indent=2) + "\n")
        write_manifest(
            tmp,
            "evaluate",
            {"tasks": specs, "model": model_path, "adapter": opts.adapter, "qa_int4": opts.qa_int4},
            parent,
            {"results": ev.results, "provenance": ev.provenance},
        )


def _write_file(
    path: str | os.PathLike,
    overwrite: bool,
    model_path: str,
    specs: dict[str, TaskSpec],
    opts: EvaluateOptions,
    ev: Evaluation,
) -> None:
    meta = {
        "model": str(model_path),
        "adapter": opts.adapter,
        "tasks": {name: vars(spec) for name, spec in specs.items()},
        "device": opts.device,
        "provenance": ev.provenance,
        "force": opts.force,
        "versions": versions(),
    }
    write_results(ev.results, path, overwrite, meta)


def run_evaluate(
    model_path: str,
    specs: dict[str, TaskSpec],
    output: str | os.PathLike | None = None,
    opts: EvaluateOptions | None = None,
    *,
    results_file: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Evaluation:
    """Evaluate `model_path` (plus `opts.adapter`) on `specs`. `output`: write an evaluation artifact
    (results.json + manifest); `results_file`: write `{"results": ..., model, tasks, versions, ...}` to one JSON
    file (refused if it exists, unless `overwrite`). Every check comes before the model is loaded."""
    opts = opts or EvaluateOptions()
    check_device(opts.device)
    if output is not None:
        check_writable(check_output(output, inputs=[model_path, opts.adapter, opts.qa_int4]))
    if results_file is not None:
        check_writable(check_results_path(results_file, overwrite))
    resolve_source(model_path, opts.gguf_file)
    provenance = _check_adapter(model_path, opts)
    data = {name: load_task_data(spec) for name, spec in specs.items()}
    t0 = time.perf_counter()
    model, tokenizer = _load(model_path, opts)
    load_seconds = time.perf_counter() - t0
    results = evaluate(model, tokenizer, specs, device=opts.device, progress=not opts.quiet, data=data)
    ev = Evaluation(results, load_seconds, provenance)
    if output is not None:
        _write_dir(Path(output), model_path, specs, opts, ev)
    if results_file is not None:
        _write_file(results_file, overwrite, model_path, specs, opts, ev)
    return ev
