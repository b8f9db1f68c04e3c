"""Artifacts shared by the reliability suite, built once per session on tiny offline models.

Tests never write into these: a case that damages a file damages a copy (`copy_dir`), and every bad-input
case checks that its inputs are byte-identical afterwards.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from sqft.cli import main
from tests.adapt.helpers import magnitude_prune_
from tests.conftest import CORPUS, char_tokenizer, tiny_llama

FAST_FINETUNE = (
    "--max-steps 2 --batch-size 2 --micro-batch-size 2 --warmup-steps 0 --cutoff 64 --ranks 8 4 "
    "--alpha 16 --lr 1e-2 --dropout 0 -q"
).split()


@dataclass(frozen=True)
class Env:
    root: Path
    dense: Path  # tiny Llama, fp32
    sparse: Path  # the same, 50% magnitude-pruned (every row)
    sparse_other: Path  # the same dense model, pruned with another mask (2:4)
    adapter: Path  # SparsePEFT NLS adapter trained on `sparse`
    train: Path  # GSM8K-style JSONL
    test: Path  # GSM8K-style JSONL, no train split beside it
    calib: Path  # calibration text


def _save(model, d: Path) -> Path:
    model.save_pretrained(d)
    char_tokenizer().save_pretrained(d)
    return d


def _gsm8k(path: Path, n: int, offset: int = 0) -> Path:
    rows = [
        {"question": f"What is {i} plus {i + 1}?", "answer": f"{i} + {i + 1} = {2 * i + 1}. #### {2 * i + 1}"}
        for i in range(offset, offset + n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("reliability")
    dense = _save(tiny_llama(), root / "dense")
    sparse = _save(magnitude_prune_(tiny_llama()), root / "sparse")
    other = root / "sparse_other"
    assert (
        main(["sparsify", str(dense), "--method", "magnitude", "--pattern", "2:4", "-o", str(other), "-q"])
        == 0
    )
    (root / "data").mkdir()
    (root / "eval").mkdir()
    train = _gsm8k(root / "data" / "train.jsonl", 8)
    test = _gsm8k(root / "eval" / "questions.jsonl", 4, 100)
    calib = root / "calib.txt"
    calib.write_text(CORPUS)
    adapter = root / "adapter"
    args = ["finetune", str(sparse), "--data", str(train), "--sparse-adapter", "-o", str(adapter)]
    assert main(args + FAST_FINETUNE) == 0
    return Env(root, dense, sparse, other, adapter, train, test, calib)


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
