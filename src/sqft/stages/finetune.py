"""The finetune stage: load a (sparse / INT4) model and the training data, train an adapter
(`sqft.adapt.train.finetune`), write the adapter artifact (PEFT layout + NLS files + manifest).

Checks its inputs and output path before the expensive work; checkpoints of an interrupted run live beside
the (not yet existing) output and are resumed by a run with the same configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqft.adapt.api import resolve_qa_base
from sqft.adapt.config import AdaptConfig, TrainConfig
from sqft.adapt.equations import QAParams
from sqft.adapt.export import save_adapter
from sqft.adapt.inject import qa_params_of
from sqft.adapt.layer import is_quant_linear
from sqft.adapt.provenance import check_resume
from sqft.adapt.train import finetune, is_main_process, last_checkpoint
from sqft.artifacts import Stopwatch, atomic_output, check_output, fingerprint, write_manifest
from sqft.data import TrainingExample, as_training_examples, load_training_examples
from sqft.errors import SqftError
from sqft.loading import load_model
from sqft.merge import prepare_qa_fp16_base
from sqft.stages.common import check_model_output, load_input

__all__ = ["run_finetune", "qa_params_from"]


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


def qa_params_from(int4: str | os.PathLike | nn.Module) -> dict[str, QAParams]:
    """The INT4 model's frozen (s, z) per quantized linear: what a QA adapter on the fp16 base trains against."""
    int4 = int4 if isinstance(int4, nn.Module) else load_model(int4)
    return {n.removeprefix("module."): qa_params_of(m) for n, m in int4.named_modules() if is_quant_linear(m)}


def _qa_on_fp16_base(
    model: nn.Module, adapt: AdaptConfig, qa_int4: str | os.PathLike | None
) -> dict[str, QAParams] | None:
    """The INT4 model's (s, z) for a QA adapter on the fp16 base, with the base made ready from the INT4 model
    (`merge.prepare_qa_fp16_base`); None without an INT4 model."""
    if qa_int4 is None:
        return None
    int4 = load_model(qa_int4)
    if adapt.quantization_aware:
        prepare_qa_fp16_base(model, adapt, int4, str(qa_int4))
    return qa_params_from(int4)


def _examples(
    data: str | os.PathLike | Sequence[TrainingExample],
    data_format: str,
    template: str | None,
    response_template: str | None,
    data_limit: int | None,
) -> list[TrainingExample]:
    if isinstance(data, (str, os.PathLike)):
        return load_training_examples(data, data_format, template, response_template, limit=data_limit)
    return as_training_examples(data)[:data_limit]


def _resolved_adapt(adapt: AdaptConfig, qa_int4: str | os.PathLike | None) -> AdaptConfig:
    adapt = resolve_qa_base(adapt, fp16_parent=qa_int4 is not None)
    if adapt.on_fp16_base and qa_int4 is None:
        raise SqftError(
            f"qa_base={adapt.qa_base} trains on the fp16 sparse model and needs the INT4 model's scales: "
            "pass --qa-int4 INT4_MODEL_DIR (or use --qa-base gptq on the INT4 model)"
        )
    return adapt


def run_finetune(
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
    from_file = isinstance(data, (str, os.PathLike))
    inputs = [model_source, qa_int4, data if from_file else None]
    out = check_output(output, overwrite, inputs)
    check_model_output(model_source, output, overwrite, dtype, gguf_file, size_factor=0.0, inputs=inputs)
    examples = _examples(data, data_format, template, response_template, data_limit)
    adapt = _resolved_adapt(adapt, qa_int4)
    work = _work_dir(out)
    if is_main_process():
        record = _run_record(model_source, examples, adapt, train, qa_int4)
        check_resume(work, record, last_checkpoint(work) is not None, restart)
    model, tokenizer, parent = load_input(model_source, dtype=dtype, gguf_file=gguf_file)
    qa_params = _qa_on_fp16_base(model, adapt, qa_int4)
    with Stopwatch("cuda" if torch.cuda.is_available() else "cpu") as sw:
        result = finetune(model, tokenizer, examples, adapt, train, work, qa_params, progress)
    if not is_main_process():
        return out
    with atomic_output(out, overwrite, inputs) as tmp:
        save_adapter(result.model, tmp, base=parent, stats=result.stats, qa_int4=qa_int4)
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
