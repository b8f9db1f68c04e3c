"""Fine-tune adapters with Hugging Face `Trainer` (so `torchrun` / `accelerate launch` give DDP) — SPEC §3.

Only adapter parameters train; AdamW, cosine schedule with warmup, optional bf16/fp16 autocast and gradient
checkpointing; NLS ranks are sampled by `NLSCallback` once per optimizer step. Resumes from the last
checkpoint in `work_dir` when there is one.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sqft.adapt.config import AdaptConfig, TrainConfig
from sqft.adapt.equations import QAParams
from sqft.adapt.inject import (
    adapter_layers,
    adapter_parameters,
    groups_of,
    inject_adapters,
    named_adapter_parameters,
)
from sqft.adapt.layer import is_quant_linear
from sqft.adapt.nls import NLSCallback, NLSStats
from sqft.data import TrainingExample, as_training_examples, build_training_dataset, pad_collate
from sqft.errors import SqftError
from sqft.fused import fused_by_default, set_fused

__all__ = [
    "FinetuneResult",
    "finetune",
    "world_size",
    "is_main_process",
    "last_checkpoint",
    "adapter_state",
    "load_adapter_state",
    "CHECKPOINT_FILE",
]

CHECKPOINT_FILE = "adapter_state.safetensors"
CHECKPOINT_DONE = "sqft_checkpoint_done"  # written last: a checkpoint without it was interrupted while saving

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    model: nn.Module
    train: TrainConfig
    stats: NLSStats | None
    figures: dict[str, Any]


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _step(p: Path) -> int:
    tail = p.name.split("-")[-1]
    return int(tail) if tail.isdigit() else -1


_OWN_FILES = (
    CHECKPOINT_FILE,
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "training_args.bin",
    "nls_stats.json",
)


def _interrupted(p: Path) -> bool:
    """An sqft checkpoint whose save was interrupted (a kill): only files sqft's trainer writes, and not the
    marker written last. Checkpoints of older sqft (adapter state and trainer_state.json, no marker) count as
    complete; foreign ones too (the loader refuses them by name)."""
    if (p / CHECKPOINT_DONE).is_file():
        return False
    names = {f.name for f in p.iterdir()}
    own = all(n in _OWN_FILES or n.startswith(("rng_state", "trainer_state")) for n in names)
    return own and not {CHECKPOINT_FILE, "trainer_state.json"} <= names


def last_checkpoint(work_dir: str | os.PathLike, clean: bool = False) -> str | None:
    """The newest complete `checkpoint-N` directory in `work_dir`, if any, skipping newer ones whose save was
    interrupted; `clean` deletes those (they are sqft's own, and the resumed run writes them again)."""
    d = Path(work_dir)
    ckpts = sorted((p for p in d.glob("checkpoint-*") if _step(p) >= 0), key=_step) if d.is_dir() else []
    while ckpts and _interrupted(ckpts[-1]):
        partial = ckpts.pop()
        if clean:
            log.warning("deleting %s: its save was interrupted", partial)
            shutil.rmtree(partial)
    return str(ckpts[-1]) if ckpts else None


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors, `<module>.lora_A` / `<module>.lora_B`: all that a training checkpoint must hold."""
    return {k: p.detach().contiguous() for k, p in named_adapter_parameters(model).items()}


def load_adapter_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy `adapter_state` tensors back into the model's adapters; the names and shapes must match exactly."""
    params = named_adapter_parameters(model)
    missing, unexpected = sorted(params.keys() - state.keys()), sorted(state.keys() - params.keys())
    if missing or unexpected:
        raise SqftError(
            f"checkpoint '{source}' does not match this adapter (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}): it was written with another configuration; delete it to start over"
        )
    with torch.no_grad():
        for key, tensor in state.items():
            if tensor.shape != params[key].shape:
                raise SqftError(
                    f"checkpoint '{source}': {key} has shape {tuple(tensor.shape)}, the adapter "
                    f"{tuple(params[key].shape)}; delete the checkpoint to start over"
                )
            params[key].copy_(tensor)


def _adapter_trainer_class():
    from transformers import Trainer

    class AdapterTrainer(Trainer):
        """`Trainer` whose checkpoints hold the adapter tensors only, not the frozen base model (which would be
        16 GB per checkpoint at 8B). The optimizer, scheduler, RNG and trainer state are saved by `Trainer` as
        usual. Under FSDP or DeepSpeed the engine's own checkpoint format is kept."""

        def _engine_owns_checkpoints(self) -> bool:
            return bool(self.is_fsdp_enabled or self.is_deepspeed_enabled)

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            if self._engine_owns_checkpoints():
                return super()._save(output_dir, state_dict)
            if not self.args.should_save:
                return
            out = Path(output_dir or self.args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            save_file(adapter_state(self.accelerator.unwrap_model(self.model)), str(out / CHECKPOINT_FILE))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
            if self._engine_owns_checkpoints():
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            path = Path(resume_from_checkpoint) / CHECKPOINT_FILE
            if not path.is_file():
                raise SqftError(
                    f"checkpoint '{resume_from_checkpoint}' has no {CHECKPOINT_FILE}: it was not "
                    "written by sqft's trainer; delete it to start over"
                )
            target = self.accelerator.unwrap_model(model if model is not None else self.model)
            load_adapter_state(target, load_file(str(path)), str(path))

    return AdapterTrainer


def _checkpoint_done_callback():
    from transformers import TrainerCallback

    class CheckpointDone(TrainerCallback):
        """Mark a checkpoint complete once everything (Trainer state, NLS statistics) is in it."""

        def on_save(self, args, state, control, **kw):  # type: ignore[override]
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and ckpt.is_dir():
                (ckpt / CHECKPOINT_DONE).write_text(f"{state.global_step}\n")

    return CheckpointDone()


class _Examples(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict[str, list[int]]]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.examples[i]


def _training_args(train: TrainConfig, work_dir: Path, progress: bool):
    from transformers import TrainingArguments

    per_step = train.micro_batch_size * world_size()
    if train.batch_size % per_step:
        raise SqftError(
            f"batch_size {train.batch_size} is not a multiple of micro_batch_size × processes = {per_step}"
        )
    return TrainingArguments(
        output_dir=str(work_dir),
        per_device_train_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=train.batch_size // per_step,
        learning_rate=train.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=train.warmup_steps,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        weight_decay=train.weight_decay,
        optim="adamw_torch",
        bf16=train.mixed_precision == "bf16",
        fp16=train.mixed_precision == "fp16",
        activation_checkpointing=train.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        save_strategy="steps" if train.save_steps else "no",
        save_steps=train.save_steps or 500,
        save_total_limit=2,
        logging_steps=train.logging_steps,
        seed=train.seed,
        data_seed=train.seed,
        report_to=[],
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        **({"fsdp": True, "fsdp_config": {"version": 2}} if train.fsdp and world_size() > 1 else {}),
        **train.extra,
    )


def _engine(trainer) -> str:
    """Which distributed engine ran the training: fsdp, deepspeed, ddp or none (one process)."""
    if trainer.is_fsdp_enabled:
        return "fsdp"
    if trainer.is_deepspeed_enabled:
        return "deepspeed"
    return "ddp" if world_size() > 1 else "none"


def _trainer(
    model: nn.Module,
    adapt: AdaptConfig,
    train: TrainConfig,
    args: Any,
    rows: list,
    collate: Any,
    callbacks: Sequence[Any],
) -> tuple[Any, NLSCallback | None]:
    """The adapter Trainer with sqft's callbacks (the NLS sampler when there are elastic groups, then the
    checkpoint-done marker) before the caller's."""
    own: list[Any] = []
    nls = None
    if groups_of(model):
        spaces = {g: list(adapt.ranks) for g in groups_of(model)}
        nls = NLSCallback(model, spaces, seed=train.nls_seed)
        own.append(nls)
    own.append(_checkpoint_done_callback())  # after NLSCallback, whose on_save writes its statistics
    trainer = _adapter_trainer_class()(
        model=model,
        args=args,
        train_dataset=_Examples(rows),
        data_collator=collate,
        callbacks=own + list(callbacks),
    )
    return trainer, nls


def _training_figures(trainer: Any, result: Any, n_train: int, resume: str | None) -> dict[str, Any]:
    """Steps, losses (first, last, the logged curve) and runtime of a finished training run."""
    logged = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    losses = [loss for _, loss in logged]
    return {
        "trainable_parameters": n_train,
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "loss_first_logged": losses[0] if losses else None,
        "loss_last_logged": losses[-1] if losses else None,
        "loss_curve": [[step, round(loss, 4)] for step, loss in logged],
        "train_runtime_s": result.metrics.get("train_runtime"),
        "resumed_from": resume,
    }


def finetune(
    model: nn.Module,
    tokenizer,
    examples: Sequence[TrainingExample | str | tuple[str, str]],
    adapt: AdaptConfig,
    train: TrainConfig,
    work_dir: str | os.PathLike,
    qa_params: Mapping[str, QAParams] | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
) -> FinetuneResult:
    """Inject adapters into `model` (in place) and train them on `examples`; returns the trained model.

    `examples`: `TrainingExample`s, plain texts or (prompt, response) pairs. Each is tokenized as BOS + prompt
    + response + EOS, cut at `train.cutoff`; the loss covers the whole sequence unless `train.mask_prompt`.
    `callbacks`: more `TrainerCallback`s (e.g. `HeldOutLossCallback` on `model`), run after the NLS sampler's.
    """
    rows = build_training_dataset(
        tokenizer, as_training_examples(examples), train.cutoff, train.mask_prompt, add_bos=train.add_bos
    )
    collate = pad_collate(tokenizer)  # data errors surface before the model is changed
    layers = inject_adapters(model, adapt, qa_params, seed=train.seed)
    int4 = any(is_quant_linear(m.base_layer) for m in layers.values())
    fused = fused_by_default() if train.fused is None else train.fused
    n_fusable = set_fused(model, fused)
    train = train.resolved(adapt, int4_base=int4)
    args = _training_args(train, Path(work_dir), progress)
    trainer, nls = _trainer(model, adapt, train, args, rows, collate, callbacks)
    if train.fsdp and not trainer.is_fsdp_enabled:
        log.warning(
            "fsdp was asked for but the model is not sharded: accelerate runs FSDP on GPUs only, over more than "
            "one process (here %d, %s): launch with torchrun/accelerate on GPUs to shard",
            world_size(),
            _engine(trainer),
        )
    n_train = sum(p.numel() for p in adapter_parameters(model))
    log.info(
        "training %d adapter layers (%d parameters), lr %g, %s",
        len(layers),
        n_train,
        train.learning_rate,
        f"{train.max_steps} steps" if train.max_steps > 0 else f"{train.epochs} epochs",
    )
    resume = last_checkpoint(work_dir, clean=True)
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    model.eval()
    figures = {
        **_training_figures(trainer, result, n_train, resume),
        "adapter_layers": len(adapter_layers(model)),
        "world_size": world_size(),
        "distributed": _engine(trainer),
        "fused_layers": n_fusable if fused else 0,
    }
    set_fused(model, False)  # back to the eager reference path after training
    return FinetuneResult(model, train, nls.stats if nls else None, figures)
