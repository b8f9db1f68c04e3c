"""Minimal training data for the adapt stage: text records or (prompt, response) pairs → token examples.

`examples_from_records` is the entry point the trainer uses; it takes plain strings and pairs, so any task
loader (sqft.data) can feed it. `load_records` reads JSON/JSONL files with `text`, `prompt`/`response`,
`instruction`/`input`/`output` (Alpaca) or `question`/`answer` (GSM8K: `Question: {q}\\nAnswer: {a}`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sqft.errors import SqftError

__all__ = ["Record", "load_records", "examples_from_records", "collate"]

Record = str | tuple[str, str]  # or any object with .prompt and .response (sqft.data.TrainingExample)
IGNORE = -100


def _record(obj: dict[str, Any], where: str) -> Record:
    if "text" in obj:
        return str(obj["text"])
    if "prompt" in obj and "response" in obj:
        return str(obj["prompt"]), str(obj["response"])
    if "question" in obj and "answer" in obj:
        return f"Question: {obj['question']}\nAnswer:", f" {obj['answer']}"
    if "instruction" in obj and "output" in obj:
        inp = obj.get("input") or ""
        head = (
            "Below is an instruction that describes a task. Write a response that completes the request.\n\n"
        )
        prompt = f"{head}### Instruction:\n{obj['instruction']}\n\n"
        prompt += f"### Input:\n{inp}\n\n### Response:\n" if inp else "### Response:\n"
        return prompt, str(obj["output"])
    raise SqftError(
        f"{where}: a record needs 'text', 'prompt'+'response', 'question'+'answer' or 'instruction'+'output'; "
        f"it has {sorted(obj)}"
    )


def load_records(path: str | os.PathLike, limit: int | None = None) -> list[Record]:
    """Records of a .json (list) or .jsonl file."""
    p = Path(path)
    if not p.is_file():
        raise SqftError(f"training data '{p}' does not exist")
    if p.suffix not in (".json", ".jsonl"):
        raise SqftError(f"training data '{p}' must be a .json or .jsonl file")
    try:
        if p.suffix == ".jsonl":
            rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        else:
            rows = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SqftError(f"training data '{p}' is not valid JSON ({e})") from e
    if not isinstance(rows, list) or not rows:
        raise SqftError(f"training data '{p}' holds no records")
    rows = rows[:limit] if limit else rows
    return [_record(r, f"{p}[{i}]") for i, r in enumerate(rows)]


def examples_from_records(
    tokenizer, records: Sequence[Record], cutoff: int = 256, train_on_prompt: bool = False
) -> list[dict[str, list[int]]]:
    """Tokenize: input_ids (bos + prompt + response + eos, cut at `cutoff`), labels (prompt masked unless asked)."""
    out = []
    for rec in records:
        if isinstance(rec, str):
            prompt, response = "", rec
        elif hasattr(rec, "prompt") and hasattr(rec, "response"):  # sqft.data.TrainingExample
            prompt, response = rec.prompt, rec.response
        else:
            prompt, response = rec
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        r_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        ids = (bos + p_ids + r_ids + eos)[:cutoff]
        n_prompt = len(bos) + len(p_ids)
        labels = list(ids) if train_on_prompt or not prompt else [IGNORE] * n_prompt + ids[n_prompt:]
        labels = labels[: len(ids)]
        if all(t == IGNORE for t in labels[1:]):
            continue  # nothing to learn after the cut
        out.append({"input_ids": ids, "labels": labels})
    if not out:
        raise SqftError(f"no training example has a response within cutoff={cutoff} tokens: raise --cutoff")
    return out


def collate(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: input_ids with pad_id, labels with -100, attention_mask 1/0."""
    T = max(len(e["input_ids"]) for e in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
