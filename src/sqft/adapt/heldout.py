"""Held-out loss during fine-tuning: the mean token cross-entropy on examples the training never sees.

`HeldOutLossCallback` evaluates it before the first step and every `every` optimizer steps, in eval mode (the
forward the merged model computes: QA layers fake-quantize, dropout is off) and at one fixed NLS configuration
(by default each group's median rank, the sub-adapter `merge` takes by default), so curves of different variants compare
the same thing at every logged step. The configuration the NLS sampler set for the step is restored after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from sqft.adapt.inject import adapter_config_of, adapter_layers, groups_of, set_active_ranks
from sqft.errors import SqftError

__all__ = ["mean_token_loss", "HeldOutLossCallback"]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@torch.no_grad()
def mean_token_loss(
    model: nn.Module,
    rows: Sequence[Mapping[str, list[int]]],
    collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    batch_size: int = 8,
) -> float:
    """(1/N) Σ_t −log p(x_t | x_<t) over every labelled next-token position t of `rows` (N of them in all).

    Token-weighted over the whole set (not a mean of batch means), so the value does not depend on batching.
    """
    if not rows:
        raise SqftError("no held-out examples: pass at least one tokenized row")
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in collate(list(rows[i : i + batch_size])).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]  # (B, T-1): position t predicts token t+1
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total += float(nll)
        n += int((labels != IGNORE_INDEX).sum())
    return total / n


def _active_ranks(model: nn.Module) -> dict[str, int]:
    """group → the rank its layers run at now (every layer of a group shares one)."""
    return {m.group: m.active_rank for m in adapter_layers(model).values() if m.group is not None}


class HeldOutLossCallback(TrainerCallback):
    """Record `(step, held-out loss)` at step 0 and every `every` optimizer steps (and at the last step).

    `config`: the NLS configuration (group → rank) to evaluate at; None: each group's median rank (taken when
    training starts, once the adapters are in place).
    """

    def __init__(
        self,
        model: nn.Module,
        rows: Sequence[Mapping[str, list[int]]],
        collate: Callable[[list[Any]], dict[str, torch.Tensor]],
        every: int = 2,
        config: Mapping[str, int] | None = None,
        batch_size: int = 8,
    ) -> None:
        if every < 1:
            raise SqftError(f"every={every} must be a positive number of steps")
        self.model, self.rows, self.collate = model, rows, collate
        self.every, self.batch_size = every, batch_size
        self.config = dict(config) if config is not None else None
        self.curve: list[tuple[int, float]] = []

    def _eval_config(self) -> dict[str, int]:
        if self.config is None:
            groups = groups_of(self.model)
            ranks = adapter_config_of(self.model).ranks if groups else ()  # descending
            self.config = {g: ranks[(len(ranks) - 1) // 2] for g in groups}
        return self.config

    def evaluate(self, step: int) -> float:
        """Held-out loss now, at the evaluation configuration; appended to `curve`."""
        config, was_training, before = self._eval_config(), self.model.training, _active_ranks(self.model)
        self.model.eval()
        if config:
            set_active_ranks(self.model, config)
        try:
            loss = mean_token_loss(self.model, self.rows, self.collate, self.batch_size)
        finally:
            if before:
                set_active_ranks(self.model, before)
            self.model.train(was_training)
        self.curve.append((step, loss))
        log.info("step %d: held-out loss %.4f", step, loss)
        return loss

    def on_train_begin(self, args, state, control, **kw):  # type: ignore[override]
        if state.global_step == 0:
            self.evaluate(0)

    def on_step_end(self, args, state, control, **kw):  # type: ignore[override]
        step = state.global_step
        if step % self.every == 0 or step == state.max_steps:
            self.evaluate(step)
