"""Validation data for the search: load it, draw the proxy set D_M, keep it apart from the test data.

Two kinds of data, two scores (higher is better for both):
- multiple choice (`{"query", "choices", "gold"}` or Winogrande's schema) → accuracy by log-likelihood;
- anything with a reference text (GSM8K, LLM-Adapters math/commonsense, prompt/response pairs, plain
  `{"text": ...}` records as `sqft finetune --data` reads them) → the negative mean token loss of
  prompt + response, the cheap proxy of the training objective (generation would cost ~100× more per item).

The validation set must never be the reported test set (paper §3.3 uses the validation splits of ARC and
OBQA): `check_disjoint` refuses the same file (path or content) and any shared item.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqft.data import load_multiple_choice, load_training_examples, read_records, training_format_of
from sqft.errors import SqftError

__all__ = [
    "FORMATS",
    "METRICS",
    "detect_format",
    "load_validation",
    "sample_proxy",
    "fingerprint",
    "check_disjoint",
]

FORMATS = ("auto", "mc", "gsm8k", "math", "commonsense", "text")
METRICS = ("auto", "accuracy", "loss")


def detect_format(source: str | os.PathLike, split: str = "validation") -> str:
    """'mc' for multiple-choice records, 'gsm8k' for question/answer, 'math' for LLM-Adapters records, 'text'
    for plain text or prompt/response records (scored by loss, as `sqft finetune` trains on them)."""
    rec = read_records(source, split)[0]
    fmt = training_format_of(rec.record)
    if fmt is None:
        raise SqftError(
            f"cannot tell the format of '{source}' from its fields {sorted(rec.record)}: pass --validation-format "
            'mc (query/choices/gold), gsm8k (question/answer), math (instruction/output) or text ({"text": ...})'
        )
    return "text" if fmt.format == "custom" else fmt.format


def load_validation(
    source: str | os.PathLike, fmt: str = "auto", split: str = "validation"
) -> tuple[str, list]:
    """(format, examples): `MCExample`s for 'mc', `TrainingExample`s (prompt + reference response) otherwise."""
    if fmt not in FORMATS:
        raise SqftError(f"validation format '{fmt}' is unknown: use one of {', '.join(FORMATS)}")
    fmt = detect_format(source, split) if fmt == "auto" else fmt
    if fmt == "mc":
        return fmt, load_multiple_choice(source, split)
    if fmt == "text":  # plain text or prompt/response records, read as the training data loader reads them
        return fmt, load_training_examples(source, "auto", split=split)
    return fmt, load_training_examples(source, fmt, split=split)


def sample_proxy(n_items: int, m: int, seed: int) -> list[int]:
    """Indices of D_M = Sample(D, M): M distinct items drawn with a seeded generator, in file order."""
    if m < 1:
        raise SqftError(f"proxy size M={m} must be a positive number of validation samples")
    if m >= n_items:
        return list(range(n_items))
    return sorted(random.Random(seed).sample(range(n_items), m))


def fingerprint(example: Any) -> str:
    """A content hash of an item's question side (MC query + choices, or the prompt / text of a
    reference example), whitespace-normalized: the same question with another answer still counts as shared."""
    if hasattr(example, "choices"):
        parts = [example.query, *example.choices, example.continuation or ""]
    else:
        parts = [example.prompt or example.text]
    text = "\x1f".join(" ".join(p.split()) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_digest(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_disjoint(
    validation: str | os.PathLike,
    test: str | os.PathLike,
    proxy_items: Sequence[Any],
    test_items: Sequence[Any],
) -> None:
    """Refuse validation data that is the test data: same path, same bytes, or a shared item."""
    pv, pt = Path(validation), Path(test)
    if pv.is_file() and pt.is_file():
        if pv.resolve() == pt.resolve() or _file_digest(pv) == _file_digest(pt):
            raise SqftError(
                f"--validation '{validation}' and --test-data '{test}' are the same data: searching on the test "
                "set inflates the reported score; use a validation split (or hold out part of the training data)"
            )
    elif str(validation) == str(test):
        raise SqftError(f"--validation and --test-data both name '{validation}': use a validation split")
    test_prints = {fingerprint(e) for e in test_items}
    shared = [i for i, e in enumerate(proxy_items) if fingerprint(e) in test_prints]
    if shared:
        raise SqftError(
            f"{len(shared)} of the {len(proxy_items)} proxy validation items also appear in the test data "
            f"'{test}' (e.g. proxy item {shared[0]}): remove them from the validation set or pick another split"
        )
