"""Multiple choice by log-likelihood, as lm-eval scores it.

Each choice is scored by `ll = Σ log p(choice tokens | context)` with the context `query + delimiter`.
acc picks `argmax ll`; acc_norm picks `argmax ll / len(choice in characters)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import nn

from sqft.data.tasks import MCExample
from sqft.errors import SqftError
from sqft.evaluate.intervals import with_intervals
from sqft.evaluate.lm import loglikelihoods

__all__ = ["choose", "item_key", "evaluate_multiple_choice"]


def choose(lls: Sequence[float], continuations: Sequence[str]) -> tuple[int, int]:
    """(argmax ll, argmax ll / character length): the choices acc and acc_norm pick (first on ties)."""
    norm = [ll / max(len(c), 1) for ll, c in zip(lls, continuations, strict=True)]
    return max(range(len(lls)), key=lambda i: lls[i]), max(range(len(norm)), key=lambda i: norm[i])


def item_key(ex: MCExample) -> str:
    """An item's identity in `items_sha256`: query, choices, shared continuation and gold."""
    return json.dumps([ex.query, list(ex.choices), ex.continuation, ex.gold])


def evaluate_multiple_choice(
    model: nn.Module,
    tokenizer,
    examples: Sequence[MCExample],
    delimiter: str | None = "\nAnswer: ",
    batch_size: int = 8,
    limit: int | None = None,
    device: str | torch.device | None = None,
    add_bos: bool = False,
    progress: bool = True,
    return_scores: bool = False,
) -> dict:
    """`{"acc", "acc_norm", "n"}` over the examples (the first `limit`), with Wilson 95% intervals, per-item
    outcomes and the items' digest (`sqft.evaluate.intervals.with_intervals`).

    `delimiter=None` picks one per query (`sqft.data.auto_delimiter`): "\\nAnswer: " after a question, " "
    when the query already ends with "Answer:". With `return_scores` the per-choice log-likelihoods are
    included under "scores" (a list per example).
    """
    examples = list(examples)[:limit]
    if not examples:
        raise SqftError("no multiple-choice examples to evaluate")
    requests = [ex.requests(delimiter) for ex in examples]
    flat = [pair for reqs in requests for pair in reqs]
    lls = [ll for ll, _ in loglikelihoods(model, tokenizer, flat, batch_size, device, add_bos, progress)]
    acc, acc_norm = [], []
    scores, start = [], 0
    for ex, reqs in zip(examples, requests, strict=True):
        ex_lls = lls[start : start + len(reqs)]
        start += len(reqs)
        pick, pick_norm = choose(ex_lls, [cont for _, cont in reqs])
        acc.append(pick == ex.gold)
        acc_norm.append(pick_norm == ex.gold)
        scores.append(ex_lls)
    n = len(examples)
    result = {"acc": sum(acc) / n, "acc_norm": sum(acc_norm) / n, "n": n}
    with_intervals(result, {"acc": acc, "acc_norm": acc_norm}, [item_key(ex) for ex in examples])
    if return_scores:
        result["scores"] = scores
    return result
