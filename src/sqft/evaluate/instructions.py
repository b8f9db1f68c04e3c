"""LLM-Adapters generative protocol: Alpaca prompt, greedy answer, answer extraction.

- math (GSM8K, MAWPS, SVAMP, AddSub, SingleEq, MultiArith): the last number of the response, correct within
  1e-3 of the gold; AQuA (gold answers are letters): the chosen option letter.
- commonsense (BoolQ, PIQA, SIQA, ARC, OBQA, HellaSwag, WinoGrande in LLM-Adapters' format): the first word of
  the instruction's "Answer format: a/b/..." found in the response, compared with the gold word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from sqft.data.tasks import InstructionExample
from sqft.data.templates import alpaca_prompt
from sqft.errors import SqftError
from sqft.evaluate.extract import answer_vocabulary, answer_word, choice_letter, last_number, numbers_match
from sqft.evaluate.intervals import with_intervals
from sqft.evaluate.lm import greedy_generate

__all__ = ["ALPACA_STOP", "is_letter_task", "score_math", "evaluate_math", "evaluate_commonsense_gen"]

ALPACA_STOP = ("### Instruction:", "</s>", "<|im_end|>")


def is_letter_task(examples: Sequence[InstructionExample]) -> bool:
    """True when every gold answer is an option letter (AQuA, MathQA)."""
    return all(re.fullmatch(r"[A-E]", ex.answer.strip()) for ex in examples)


def score_math(response: str, gold: str, letters: bool) -> bool:
    """Whether a response answers `gold`: the option letter, or the last number within 1e-3."""
    if letters:
        return choice_letter(response) == gold.strip()
    try:
        value = float(gold.replace(",", ""))
    except ValueError as e:
        raise SqftError(f"gold answer {gold!r} is not a number: is this a math test set?") from e
    return numbers_match(last_number(response), value)


def _accuracy(
    model: nn.Module,
    tokenizer,
    examples: list[InstructionExample],
    is_correct: Callable[[InstructionExample, str], bool],
    max_new_tokens: int,
    return_outputs: bool,
    **gen: Any,
) -> dict:
    if not examples:
        raise SqftError("no examples to evaluate")
    prompts = [alpaca_prompt(ex.instruction, ex.input) for ex in examples]
    outputs = greedy_generate(model, tokenizer, prompts, max_new_tokens, ALPACA_STOP, **gen)
    correct = [is_correct(ex, out) for ex, out in zip(examples, outputs, strict=True)]
    result: dict = {"accuracy": sum(correct) / len(examples), "n": len(examples)}
    keys = [json.dumps([ex.instruction, ex.input, ex.answer]) for ex in examples]
    with_intervals(result, {"accuracy": correct}, keys)
    if return_outputs:
        result["outputs"] = outputs
    return result


def evaluate_math(
    model: nn.Module,
    tokenizer,
    examples: Sequence[InstructionExample],
    max_new_tokens: int = 256,
    limit: int | None = None,
    return_outputs: bool = False,
    **gen: Any,
) -> dict:
    """`{"accuracy", "n", "answer_type"}` under the LLM-Adapters math protocol (letters for AQuA-style sets), with
    `accuracy_ci95`, per-item outcomes and the items' digest (`sqft.evaluate.intervals.with_intervals`).

    `gen`: options of `greedy_generate` (batch_size, device, add_bos, progress).
    """
    examples = list(examples)[:limit]
    letters = is_letter_task(examples)
    result = _accuracy(
        model,
        tokenizer,
        examples,
        lambda ex, out: score_math(out, ex.answer, letters),
        max_new_tokens,
        return_outputs,
        **gen,
    )
    return {**result, "answer_type": "letter" if letters else "number"}


def evaluate_commonsense_gen(
    model: nn.Module,
    tokenizer,
    examples: Sequence[InstructionExample],
    max_new_tokens: int = 32,
    limit: int | None = None,
    return_outputs: bool = False,
    **gen: Any,
) -> dict:
    """`{"accuracy", "n"}` (with interval, outcomes and digest, as `evaluate_math`): the first allowed answer
    word in the response must equal the gold word.

    The allowed words come from the instruction's "Answer format: a/b/..." (else the set of gold answers).
    `gen`: options of `greedy_generate` (batch_size, device, add_bos, progress).
    """
    examples = list(examples)[:limit]
    vocab_all = sorted({ex.answer.strip().lower() for ex in examples})

    def is_correct(ex: InstructionExample, out: str) -> bool:
        return answer_word(out, answer_vocabulary(ex.instruction) or vocab_all) == ex.answer.strip().lower()

    return _accuracy(model, tokenizer, examples, is_correct, max_new_tokens, return_outputs, **gen)
