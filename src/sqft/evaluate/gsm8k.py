"""GSM8K few-shot greedy generation with strict and flexible exact match (lm-eval's `gsm8k`).

Prompt: n_shot solved examples `Question: q\\nAnswer: a` separated by blank lines, then the test question
`Question: q\\nAnswer:`. Generation stops at "Question:", a blank line or EOS. strict_match reads the number
after `#### `; flexible_match the last number in the output.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import torch
from torch import nn

from sqft.data.tasks import GSM8KExample
from sqft.data.templates import gsm8k_prompt
from sqft.errors import SqftError
from sqft.evaluate.extract import flexible_answer, normalize_number, strict_answer
from sqft.evaluate.intervals import with_intervals
from sqft.evaluate.lm import greedy_generate

__all__ = ["GSM8K_STOP", "fewshot_prefix", "pick_fewshot", "item_key", "evaluate_gsm8k"]

GSM8K_STOP = ("Question:", "</s>", "<|im_end|>", "\n\n")


def pick_fewshot(
    pool: Sequence[GSM8KExample], n_shot: int, exclude: Sequence[GSM8KExample] = (), seed: int = 1234
) -> list[GSM8KExample]:
    """`n_shot` examples drawn with `seed` from `pool`, never one whose question is evaluated."""
    banned = {ex.question.strip() for ex in exclude}
    candidates = [ex for ex in pool if ex.question.strip() not in banned]
    if len(candidates) < n_shot:
        raise SqftError(
            f"{n_shot}-shot needs {n_shot} few-shot examples outside the evaluated items, found {len(candidates)}: "
            "pass a few-shot file (e.g. the train split) or lower n_shot"
        )
    return random.Random(seed).sample(candidates, n_shot)


def fewshot_prefix(shots: Sequence[GSM8KExample]) -> str:
    """The solved examples, each `Question: q\\nAnswer: a`, each followed by a blank line."""
    return "".join(f"{gsm8k_prompt(ex.question)} {ex.answer}\n\n" for ex in shots)


def item_key(ex: GSM8KExample) -> str:
    """An item's identity in `items_sha256`: its question and solution."""
    return json.dumps([ex.question, ex.answer])


def evaluate_gsm8k(
    model: nn.Module,
    tokenizer,
    examples: Sequence[GSM8KExample],
    fewshot: Sequence[GSM8KExample] = (),
    n_shot: int = 5,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 1234,
    add_bos: bool = False,
    progress: bool = True,
    return_outputs: bool = False,
) -> dict:
    """`{"strict_match", "flexible_match", "n"}`, each match with its Wilson 95% interval (`<metric>_ci95`),
    per-item outcomes ("correct") and the items' digest (`sqft.evaluate.intervals`); plus "outputs" with
    `return_outputs`."""
    examples = list(examples)[:limit]
    if not examples:
        raise SqftError("no GSM8K examples to evaluate")
    prefix = fewshot_prefix(pick_fewshot(fewshot, n_shot, exclude=examples, seed=seed)) if n_shot else ""
    prompts = [prefix + gsm8k_prompt(ex.question) for ex in examples]
    outputs = greedy_generate(
        model, tokenizer, prompts, max_new_tokens, GSM8K_STOP, batch_size, device, add_bos, progress
    )
    strict, flexible = [], []
    for ex, out in zip(examples, outputs, strict=True):
        gold = normalize_number(ex.target)
        strict.append(strict_answer(out) == gold)
        flexible.append(flexible_answer(out) == gold)
    n = len(examples)
    result = {"strict_match": sum(strict) / n, "flexible_match": sum(flexible) / n, "n": n, "n_shot": n_shot}
    with_intervals(
        result, {"strict_match": strict, "flexible_match": flexible}, [item_key(e) for e in examples]
    )
    if return_outputs:
        result["outputs"] = outputs
    return result
