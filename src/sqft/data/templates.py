"""Prompt templates: GSM8K, Alpaca-style (LLM-Adapters math/commonsense), lm-eval-style multiple choice, user's own.

Each template turns a record into `(prompt, response)`; the training text is `prompt + response`, and the
prompt alone is what an evaluator feeds the model.
"""

from __future__ import annotations

import string

from sqft.errors import SqftError

__all__ = [
    "GSM8K_TEMPLATE",
    "ALPACA_TEMPLATE",
    "ALPACA_TEMPLATE_WITH_INPUT",
    "gsm8k_prompt",
    "alpaca_prompt",
    "auto_delimiter",
    "template_fields",
    "fill_template",
]

# lm-eval's gsm8k: "Question: {q}\nAnswer:" and the target " {a}" (target delimiter one space).
GSM8K_TEMPLATE = "Question: {question}\nAnswer:"

# Alpaca, as LLM-Adapters uses it for math_10k / commonsense_170k (without its stray indentation).
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_TEMPLATE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def gsm8k_prompt(question: str) -> str:
    return GSM8K_TEMPLATE.format(question=question)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    if input:
        return ALPACA_TEMPLATE_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_TEMPLATE.format(instruction=instruction)


def auto_delimiter(query: str) -> str:
    """The text between a multiple-choice query and a choice, lm-eval style.

    `"\\nAnswer: "` after a question; nothing but a space when the query already ends with "Answer:" (lettered
    choices) or is a sentence to complete (COPA); `"Answer: "` when the query already ends with a newline.
    """
    if query.rstrip().endswith("Answer:"):
        return " "
    if "Question:" in query:
        return "Answer: " if query.endswith("\n") else "\nAnswer: "
    return " "


def template_fields(template: str) -> list[str]:
    """The `{field}` placeholders of a template, in order (`{{` and `}}` are literal braces)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise SqftError(
            f"template {template!r:.80} is malformed ({e}): use {{field}}, and {{{{ }}}} for braces"
        ) from e
    for name in names:
        if not name.isidentifier():
            raise SqftError(f"template placeholder '{{{name}}}' is not a plain field name")
    return names


def fill_template(template: str, record: dict, where: str) -> str:
    """`template` with each `{field}` replaced by the record's value; names the missing field and record."""
    missing = [f for f in template_fields(template) if f not in record]
    if missing:
        raise SqftError(
            f"{where}: missing field '{missing[0]}' used by the template (the record has {sorted(record)})"
        )
    return template.format(**{k: record[k] for k in template_fields(template)})
