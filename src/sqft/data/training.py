"""Training data for the Hugging Face Trainer: tokenize, cut off, append EOS, mask the prompt, pad batches.

Follows alpaca-lora / LLM-Adapters: tokenize `prompt + response` with the tokenizer's special tokens, cut at
`cutoff_len`, append EOS when there is room, and (optionally) set the labels of the prompt tokens to -100.
The paper trains on the whole sequence, so `mask_prompt=False` is the default.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

from sqft.data.tasks import TrainingExample
from sqft.errors import SqftError

__all__ = [
    "IGNORE_INDEX",
    "tokenize_example",
    "build_training_dataset",
    "pad_collate",
    "shuffled",
    "train_val_split",
]

IGNORE_INDEX = -100  # label value the cross-entropy loss skips

T = TypeVar("T")


def _encode(tokenizer, text: str, cutoff_len: int, add_bos: bool) -> list[int]:
    """Token ids of `text` with the tokenizer's special tokens, BOS first when `add_bos`, cut at `cutoff_len`."""
    ids = tokenizer(text, truncation=True, max_length=cutoff_len, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if add_bos and bos is not None and (not ids or ids[0] != bos):  # the tokenizer did not add it itself
        ids = [bos] + ids[: cutoff_len - 1]
    return list(ids)


def tokenize_example(
    tokenizer,
    ex: TrainingExample,
    cutoff_len: int,
    mask_prompt: bool = False,
    add_eos: bool = True,
    add_bos: bool = False,
):
    """`{"input_ids", "attention_mask", "labels"}` (lists of ints) for one example."""
    ids = _encode(tokenizer, ex.text, cutoff_len, add_bos)
    eos = tokenizer.eos_token_id
    if add_eos and eos is not None and len(ids) < cutoff_len and (not ids or ids[-1] != eos):
        ids = ids + [eos]
    labels = list(ids)
    if mask_prompt and ex.prompt:
        n_prompt = len(_encode(tokenizer, ex.prompt, cutoff_len, add_bos))
        labels[:n_prompt] = [IGNORE_INDEX] * min(n_prompt, len(labels))
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def build_training_dataset(
    tokenizer,
    examples: Sequence[TrainingExample],
    cutoff_len: int = 256,
    mask_prompt: bool = False,
    add_eos: bool = True,
    add_bos: bool = False,
) -> list[dict[str, list[int]]]:
    """Tokenized examples (unpadded) for `transformers.Trainer`; pad batches with `pad_collate(tokenizer)`.

    `add_bos` puts the BOS token first when the tokenizer does not add it itself (character / GPT-2 style
    tokenizers). Examples whose labels are all masked (prompt longer than `cutoff_len`) are dropped: they
    carry no loss.
    """
    if cutoff_len < 2:
        raise SqftError(f"cutoff_len must be at least 2 tokens, got {cutoff_len}")
    rows = [tokenize_example(tokenizer, ex, cutoff_len, mask_prompt, add_eos, add_bos) for ex in examples]
    rows = [r for r in rows if any(label != IGNORE_INDEX for label in r["labels"][1:])]
    if not rows:
        raise SqftError(
            f"no training example has a response within cutoff_len={cutoff_len}: raise the cutoff"
        )
    return rows


def pad_collate(tokenizer, pad_to_multiple_of: int | None = None):
    """A Trainer `data_collator`: right-pads input_ids (pad id), attention_mask (0) and labels (-100)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise SqftError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token")

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        T = max(len(r["input_ids"]) for r in rows)
        if pad_to_multiple_of:
            T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
        fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {
            key: torch.tensor(
                [list(r[key]) + [value] * (T - len(r[key])) for r in rows], dtype=torch.long
            )  # (B, T)
            for key, value in fill.items()
        }

    return collate


def shuffled(items: Sequence[T], seed: int) -> list[T]:
    """A seeded permutation of `items` (the input is left unchanged)."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def train_val_split(items: Sequence[T], val_size: int | float, seed: int = 0) -> tuple[list[T], list[T]]:
    """Seeded shuffle, then the first `val_size` items (a count, or a fraction in (0, 1)) become validation."""
    n = len(items)
    n_val = round(val_size * n) if isinstance(val_size, float) and 0 < val_size < 1 else val_size
    if not isinstance(n_val, int) or isinstance(n_val, bool) or not 0 <= n_val < n:
        raise SqftError(f"val_size {val_size!r} is not a count below {n} or a fraction in (0, 1)")
    items = shuffled(items, seed)
    return items[n_val:], items[:n_val]
