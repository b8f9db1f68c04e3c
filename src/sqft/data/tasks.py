"""Task examples and their loaders: GSM8K, LLM-Adapters instruction data (math, commonsense), multiple choice.

Formats (see /work/shared/data):
- GSM8K: `{"question", "answer"}` with the answer ending in `#### N`.
- LLM-Adapters: `{"instruction", "input", "output", "answer"}` (math_10k, commonsense_170k, their test sets).
- Multiple choice (lm-eval / llm-foundry style): `{"query", "choices", "gold"}`, or the Winogrande schema
  `{"context_options", "continuation", "gold"}` where the options are contexts and the continuation is scored,
  or raw HellaSwag (`ctx_a`, `ctx_b`, `activity_label`, `endings`, `label`), cleaned as lm-eval does.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqft.data.records import Located, field, read_records
from sqft.data.templates import alpaca_prompt, auto_delimiter, fill_template, gsm8k_prompt
from sqft.errors import SqftError

log = logging.getLogger(__name__)

__all__ = [
    "GSM8KExample",
    "InstructionExample",
    "MCExample",
    "TrainingExample",
    "TRAINING_FORMATS",
    "TrainingFormat",
    "as_training_examples",
    "detect_training_format",
    "gsm8k_target",
    "load_gsm8k",
    "load_instructions",
    "load_multiple_choice",
    "load_training_examples",
    "training_format_of",
]


def gsm8k_target(answer: str) -> str:
    """The final answer of a GSM8K solution: the text after the last `####`."""
    return answer.rsplit("####", 1)[-1].strip()


@dataclass(frozen=True)
class GSM8KExample:
    question: str
    answer: str  # the worked solution, ending "#### N"

    @property
    def target(self) -> str:
        return gsm8k_target(self.answer)


@dataclass(frozen=True)
class InstructionExample:
    """LLM-Adapters record: the prompt is Alpaca-style, `answer` the gold (a number, a letter, 'answer2' ...)."""

    instruction: str
    answer: str
    output: str = ""
    input: str = ""


@dataclass(frozen=True)
class MCExample:
    """A multiple-choice item. With `continuation` set the choices are alternative contexts (Winogrande)."""

    query: str
    choices: tuple[str, ...]
    gold: int
    continuation: str | None = None

    def requests(self, delimiter: str | None = None) -> list[tuple[str, str]]:
        """(context, continuation) pairs to score, one per choice. `delimiter=None`: `auto_delimiter(query)`."""
        if self.continuation is not None:
            return [(option, " " + self.continuation) for option in self.choices]
        sep = auto_delimiter(self.query) if delimiter is None else delimiter
        return [(self.query + sep, choice) for choice in self.choices]


@dataclass(frozen=True)
class TrainingExample:
    """One training sequence `prompt + response`; with prompt masking only the response carries loss."""

    prompt: str
    response: str

    @property
    def text(self) -> str:
        return self.prompt + self.response


def as_training_examples(items: Sequence[TrainingExample | str | tuple[str, str]]) -> list[TrainingExample]:
    """`TrainingExample`s from examples, plain texts (`("", text)`: loss everywhere) or (prompt, response) pairs."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, TrainingExample):
            out.append(item)
        elif isinstance(item, str):
            out.append(TrainingExample("", item))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            out.append(TrainingExample(item[0], item[1]))
        else:
            raise SqftError(
                f"training item {i} is a {type(item).__name__} ({item!r:.60}): pass TrainingExamples, "
                "texts or (prompt, response) pairs of strings"
            )
    return out


def _limit(records: list[Located], limit: int | None) -> list[Located]:
    if limit is not None and limit < 1:
        raise SqftError(f"limit must be a positive number of examples, got {limit}")
    return records if limit is None else records[:limit]


def load_gsm8k(
    source: str | os.PathLike, split: str = "test", limit: int | None = None
) -> list[GSM8KExample]:
    """GSM8K examples (`question`, `answer` ending in `#### N`) from a file or the hub (`openai/gsm8k`)."""
    out = []
    for rec in _limit(
        read_records(source, split, hub_config="main" if "gsm8k" in str(source) else None), limit
    ):
        answer = field(rec, "answer")
        if "####" not in answer:
            raise SqftError(f"{rec.where}: field 'answer' has no '#### N' final answer")
        out.append(GSM8KExample(field(rec, "question"), answer))
    return out


def load_instructions(
    source: str | os.PathLike, split: str = "test", limit: int | None = None
) -> list[InstructionExample]:
    """LLM-Adapters records (`instruction`, `answer`; `input`, `output` optional) from a file or the hub."""
    out = []
    for rec in _limit(read_records(source, split), limit):
        answer = field(rec, "answer", (str, int, float))
        out.append(
            InstructionExample(
                instruction=field(rec, "instruction"),
                answer=str(answer),
                output=str(rec.record.get("output") or ""),
                input=str(rec.record.get("input") or ""),
            )
        )
    return out


def _checked(rec: Located, query: str, choices: list, gold: int, continuation: str | None) -> MCExample:
    if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise SqftError(f"{rec.where}: 'choices' must be a list of at least two strings")
    if not 0 <= gold < len(choices):
        raise SqftError(
            f"{rec.where}: 'gold' is {gold}, but there are {len(choices)} choices (0-based index)"
        )
    return MCExample(query, tuple(choices), gold, continuation)


def _hellaswag_text(text: str) -> str:
    """lm-eval's HellaSwag clean-up of WikiHow artefacts ("[title]", "[step]", double spaces)."""
    text = re.sub(r"\[.*?\]", "", text.strip().replace(" [title]", ". "))
    return text.replace("  ", " ")


def _hellaswag(rec: Located) -> MCExample:
    """A raw HellaSwag record (`ctx_a`, `ctx_b`, `activity_label`, `endings`, `label`) as lm-eval builds it."""
    ctx = field(rec, "ctx_a") + " " + field(rec, "ctx_b").capitalize()
    query = _hellaswag_text(field(rec, "activity_label") + ": " + ctx)
    endings = [_hellaswag_text(e) for e in field(rec, "endings", list)]
    return _checked(rec, query, endings, int(field(rec, "label", (str, int))), None)


def _mc_example(rec: Located) -> MCExample:
    if "endings" in rec.record and "ctx_a" in rec.record:
        return _hellaswag(rec)
    if "context_options" in rec.record:  # Winogrande schema
        choices, query, continuation = field(rec, "context_options", list), "", field(rec, "continuation")
    else:
        query, choices, continuation = field(rec, "query"), field(rec, "choices", list), None
    return _checked(rec, query, choices, field(rec, "gold", int), continuation)


def load_multiple_choice(
    source: str | os.PathLike, split: str = "test", limit: int | None = None
) -> list[MCExample]:
    """Multiple-choice items: `{"query", "choices", "gold"}` or `{"context_options", "continuation", "gold"}`."""
    return [_mc_example(rec) for rec in _limit(read_records(source, split), limit)]


def _instruction_training(records: list[Located]) -> list[TrainingExample]:
    """Alpaca-style examples; records with an empty `output` teach nothing and are skipped with a warning."""
    empty = [r.where for r in records if not field(r, "output").strip()]
    if empty:
        log.warning("skipping %d record(s) with an empty 'output' (first: %s)", len(empty), empty[0])
    return [
        TrainingExample(
            alpaca_prompt(field(r, "instruction"), str(r.record.get("input") or "")), r.record["output"]
        )
        for r in records
        if r.record["output"].strip()
    ]


def _mc_training(rec: Located, delimiter: str | None) -> TrainingExample:
    ex = _mc_example(rec)
    context, continuation = ex.requests(delimiter)[ex.gold]
    return TrainingExample(context, continuation)


TRAINING_FORMATS = ("auto", "gsm8k", "math", "commonsense", "mc", "custom")


class TrainingFormat(NamedTuple):
    """How records become training examples: a `TRAINING_FORMATS` name and, for 'custom', its templates."""

    format: str
    template: str | None = None
    response_template: str | None = None


def training_format_of(record: dict) -> TrainingFormat | None:
    """The format a record's fields imply (most specific first), or None.

    query/choices/gold (or Winogrande's, raw HellaSwag's fields) → mc; question/answer → gsm8k;
    instruction/output → math (Alpaca template); prompt/response → a pair; text → one text.
    """
    keys = set(record)
    mc = ({"query", "choices", "gold"}, {"context_options", "continuation", "gold"}, {"ctx_a", "endings"})
    if any(fields <= keys for fields in mc):
        return TrainingFormat("mc")
    if {"question", "answer"} <= keys:
        return TrainingFormat("gsm8k")
    if {"instruction", "output"} <= keys:
        return TrainingFormat("math")
    if {"prompt", "response"} <= keys:
        return TrainingFormat("custom", "{prompt}", "{response}")
    if "text" in keys:
        return TrainingFormat("custom", "{text}")
    return None


def _detected(rec: Located) -> TrainingFormat:
    fmt = training_format_of(rec.record)
    if fmt is None:
        raise SqftError(
            f"{rec.where}: cannot tell the training format from the fields {sorted(rec.record)}: records need "
            "text, prompt/response, question/answer, instruction/output or query/choices/gold; otherwise "
            "pass --format custom --template '...{field}...'"
        )
    return fmt


def detect_training_format(source: str | os.PathLike, split: str = "train") -> TrainingFormat:
    """The training format of a file or hub dataset, from the fields of its first record."""
    return _detected(read_records(source, split)[0])


def _resolve(
    format: str, template: str | None, response_template: str | None, first: Located
) -> TrainingFormat:
    if format != "auto":
        return TrainingFormat(format, template, response_template)
    if template is not None:  # a template is only used by 'custom'
        return TrainingFormat("custom", template, response_template)
    return _detected(first)


def _examples(records: list[Located], fmt: TrainingFormat, delimiter: str | None) -> list[TrainingExample]:
    if fmt.format == "gsm8k":
        return [
            TrainingExample(gsm8k_prompt(field(r, "question")), " " + field(r, "answer")) for r in records
        ]
    if fmt.format in ("math", "commonsense"):
        return _instruction_training(records)
    if fmt.format == "mc":
        return [_mc_training(r, delimiter) for r in records]
    template, response_template = fmt.template, fmt.response_template
    assert template is not None
    if response_template is None:  # one text: no prompt to mask
        return [TrainingExample("", fill_template(template, r.record, r.where)) for r in records]
    return [
        TrainingExample(
            fill_template(template, r.record, r.where), fill_template(response_template, r.record, r.where)
        )
        for r in records
    ]


def load_training_examples(
    source: str | os.PathLike,
    format: str = "auto",
    template: str | None = None,
    response_template: str | None = None,
    delimiter: str | None = None,
    split: str = "train",
    limit: int | None = None,
) -> list[TrainingExample]:
    """Training examples from a file or hub dataset.

    format: `gsm8k` ("Question: q\\nAnswer: a"), `math` / `commonsense` (LLM-Adapters, Alpaca template),
    `mc` (query + delimiter + gold choice), `custom` (`template` for the prompt and optional
    `response_template` for the response, both with `{field}` placeholders; without a response template
    the whole filled template is one text that carries loss everywhere), or `auto`: 'custom' when a template
    is given, else detected from the first record's fields (`training_format_of`).
    """
    if format not in TRAINING_FORMATS:
        raise SqftError(f"unknown training format '{format}': use one of {', '.join(TRAINING_FORMATS)}")
    if format != "auto" and (format == "custom") != (template is not None):
        raise SqftError(
            "a template is needed with format 'custom' (and only then): pass --template '...{field}...'"
        )
    gsm8k = format == "gsm8k" or (format == "auto" and "gsm8k" in str(source).lower())
    records = _limit(read_records(source, split, hub_config="main" if gsm8k else None), limit)
    return _examples(records, _resolve(format, template, response_template, records[0]), delimiter)
