"""Answer extraction from generated text (pure string functions).

- GSM8K as lm-eval's `gsm8k`: strict = the number after `#### `, flexible = the last number-like span; both
  normalised (commas, `$` and a trailing period dropped) and compared as strings with the target.
- LLM-Adapters math: the last number (commas dropped), correct when within 1e-3 of the gold value.
- AQuA: the chosen letter A–E. Commonsense (generative): the first answer word of the allowed set.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "normalize_number",
    "strict_answer",
    "flexible_answer",
    "last_number",
    "numbers_match",
    "choice_letter",
    "answer_word",
    "answer_vocabulary",
    "truncate_at_stop",
]

_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_NUMBER = re.compile(r"-?\d+\.?\d*")


def normalize_number(s: str) -> str:
    """lm-eval's gsm8k normalisation: drop commas, `$`, anything up to `#### ` and one trailing period."""
    s = re.sub(r"(?s).*#### ", "", s.strip())
    s = s.replace(",", "").replace("$", "")
    return re.sub(r"\.$", "", s).strip()


def strict_answer(text: str) -> str | None:
    """The number after the first `#### ` (lm-eval's strict-match filter), normalised; None without one."""
    m = _STRICT.search(text)
    return normalize_number(m.group(1)) if m else None


def flexible_answer(text: str) -> str | None:
    """The last number-like span (lm-eval's flexible-extract filter), normalised; None without one."""
    matches = _FLEXIBLE.findall(text)
    if not matches:
        return None
    span = next(g for g in matches[-1] if g)
    return normalize_number(span)


def last_number(text: str) -> float | None:
    """The last number in the text as LLM-Adapters reads it (commas removed, `-?\\d+\\.?\\d*`), or None."""
    found = _NUMBER.findall(text.replace(",", ""))
    if not found:
        return None
    value = float(found[-1])
    return value if math.isfinite(value) else None


def numbers_match(pred: float | None, gold: float, tol: float = 1e-3) -> bool:
    """LLM-Adapters' criterion `|gold - pred| <= 1e-3` (a missing prediction is wrong)."""
    return pred is not None and abs(gold - pred) <= tol


def choice_letter(text: str, letters: str = "ABCDE") -> str | None:
    """The option letter a response chose: "answer is (C)" / "answer is C", else the last "(C)", else the
    first standalone capital letter from `letters`."""
    cls = f"[{letters}]"
    for pattern, pick in (
        (rf"(?i:answer is):?\s*\(?({cls})\b", -1),
        (rf"\(({cls})\)", -1),
        (rf"\b({cls})\b", 0),
    ):
        found = re.findall(pattern, text)
        if found:
            return found[pick]
    return None


def answer_vocabulary(instruction: str) -> list[str] | None:
    """The allowed answers named in an LLM-Adapters instruction's "Answer format: a/b/c", or None."""
    m = re.search(r"Answer format:\s*(\S+)", instruction)
    return [w for w in m.group(1).split("/") if w] if m else None


def answer_word(text: str, vocabulary: list[str]) -> str | None:
    """The first word of `vocabulary` in the text, as LLM-Adapters extracts commonsense answers."""
    pattern = "|".join(re.escape(w) for w in sorted(vocabulary, key=len, reverse=True))
    found = re.findall(rf"\b({pattern})\b", text, flags=re.IGNORECASE)
    return found[0].lower() if found else None


def truncate_at_stop(text: str, stops: list[str] | tuple[str, ...]) -> str:
    """`text` up to the first occurrence of any stop sequence."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]
