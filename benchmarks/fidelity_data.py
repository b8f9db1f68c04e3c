"""The fidelity study's data: a commonsense training mix, calibration text, and per test task the accuracy
items and the held-out perplexity text (see fidelity.py).

Everything comes from ../shared/data/llm-adapters and is written once under WORK/data (seeded, so a resumed
run reads the same files and every model is scored on the same items).

Accuracy items are LLM-Adapters test items in the training format: the Alpaca prompt, and as choices each
answer the item allows ("the correct answer is answer1", … from its "Answer format: answer1/…" line), scored by
log-likelihood; that is the answer the paper's generation-based scorer extracts, without the failures to
follow the format that a small model's free generation adds. Perplexity text is the next items of the same
test set, prompt and gold response, so it never overlaps the accuracy items.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from sqft.data.templates import alpaca_prompt
from sqft.evaluate.extract import answer_vocabulary

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN_SETS = ("boolq", "ARC-Easy", "ARC-Challenge", "openbookqa")
TESTS = {"arc_easy": "ARC-Easy", "boolq": "boolq", "piqa": "piqa", "winogrande": "winogrande"}


@dataclass(frozen=True)
class StudyData:
    train: Path  # LLM-Adapters records, the training mix
    valid: Path  # held-out train items (ARC-e), in the accuracy format: the search's validation set
    valid_loss: Path  # held-out train items of every train set, in the training format: the loss search's
    calibration: Path  # text for Wanda / GPTQ (train items only)
    tasks: dict  # evaluate section: accuracy task per test set, plus "<task>-ppl"


def _read(name: str, split: str) -> list[dict]:
    return json.loads((SHARED / "data/llm-adapters" / name / f"{split}.json").read_text())


def mc_record(item: dict) -> dict:
    """An LLM-Adapters item as a multiple-choice record: the Alpaca prompt, one choice per allowed answer."""
    vocabulary = answer_vocabulary(item["instruction"])
    assert vocabulary and item["answer"] in vocabulary, item["instruction"][-80:]
    return {
        "query": alpaca_prompt(item["instruction"], item.get("input") or ""),
        "choices": [f"the correct answer is {word}" for word in vocabulary],
        "gold": vocabulary.index(item["answer"]),
    }


def _write_jsonl(records: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def build_data(
    work: Path, per_task: int, items: int, ppl_items: int, valid_items: int, seed: int
) -> StudyData:
    """Write (or reuse) the study's files under WORK/data; `items` accuracy items and `ppl_items` perplexity
    items per test set, `per_task` training items per train set."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train, valid, valid_loss = [], [], []
    for name in TRAIN_SETS:
        records = _read(name, "train")
        rng.shuffle(records)
        train += records[:per_task]
        # the train sets' held-out part: never trained on, never a test item
        valid_loss += records[per_task : per_task + valid_items // len(TRAIN_SETS)]
        if name == "ARC-Easy":
            valid = records[per_task : per_task + valid_items]
    rng.shuffle(train)
    paths = {
        "train": data / "train.json",
        "valid": data / "valid.jsonl",
        "valid_loss": data / "valid-loss.json",
        "calibration": data / "calibration.txt",
    }
    paths["train"].write_text(json.dumps(train))
    _write_jsonl([mc_record(r) for r in valid], paths["valid"])
    paths["valid_loss"].write_text(json.dumps(valid_loss))
    paths["calibration"].write_text(
        "\n\n".join(alpaca_prompt(r["instruction"], r.get("input") or "") + r["output"] for r in train[:256])
    )
    tasks: dict[str, dict] = {}
    for task, name in TESTS.items():
        records = _read(name, "test")
        order = random.Random(f"{seed}-{task}").sample(range(len(records)), len(records))
        scored = [records[i] for i in order[:items]]
        held_out = [records[i] for i in order[items : items + ppl_items]]
        mc = _write_jsonl([mc_record(r) for r in scored], data / f"{task}.jsonl")
        text = data / f"{task}-ppl.txt"
        text.write_text("\n\n".join(alpaca_prompt(r["instruction"]) + r["output"] for r in held_out))
        tasks[task] = {"task": "mc", "data": str(mc), "delimiter": "", "batch_size": 16}
        tasks[f"{task}-ppl"] = {"task": "perplexity", "data": str(text), "seq_len": 512, "batch_size": 4}
    return StudyData(paths["train"], paths["valid"], paths["valid_loss"], paths["calibration"], tasks)
