"""Scores of sub-adapter candidates on a proxy set D_M, as callables for `sqft.search.choose_configuration`.

Each candidate only switches the active ranks of one loaded model, so one score costs one pass over M items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sqft.data import build_training_dataset, pad_collate
from sqft.evaluate.lm import logits_of, model_device
from sqft.evaluate.multiple_choice import evaluate_multiple_choice
from sqft.evaluate.perplexity import token_nll
from sqft.search.space import Config

__all__ = ["make_score_fn", "mean_token_loss"]


@torch.no_grad()
def mean_token_loss(
    model: nn.Module, tokenizer: Any, examples: Sequence[Any], cutoff: int = 256, batch_size: int = 8
) -> float:
    """Token-weighted mean next-token NLL of prompt + response over `examples` (`TrainingExample`s)."""
    rows = build_training_dataset(tokenizer, examples, cutoff_len=cutoff)
    collate, device = pad_collate(tokenizer), model_device(model)
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = collate(rows[i : i + batch_size])
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)  # (B, T)
        nll, n = token_nll(logits_of(model, ids, mask), ids, mask)
        total, count = total + nll, count + n
    return total / max(count, 1)


def make_score_fn(
    model: nn.Module,
    tokenizer: Any,
    proxy: Sequence[Any],
    metric: str,
    set_ranks: Callable[[nn.Module, Config], None],
    batch_size: int = 8,
    cutoff: int = 256,
) -> Callable[[Config], float]:
    """score(config): switch the adapter to `config` and score it on the proxy set (higher is better):
    accuracy (multiple choice) or the negative mean token loss."""

    def score(config: Config) -> float:
        set_ranks(model, config)
        if metric == "accuracy":
            result = evaluate_multiple_choice(model, tokenizer, proxy, batch_size=batch_size, progress=False)
            return float(result["acc"])
        return -mean_token_loss(model, tokenizer, proxy, cutoff, batch_size)

    return score
