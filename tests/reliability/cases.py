"""What the bad-input tests share: a case (command line, expected phrase, output and inputs to watch), ways to
damage a file, command builders on the tiny shared artifacts, and the check every case must pass.

Each case builds its input in `tmp` (damaging copies, never the shared artifacts).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sqft.cli import main
from tests.reliability.conftest import FAST_FINETUNE, Env, copy_dir
from tests.reliability.helpers import siblings, snapshot


@dataclass
class Case:
    argv: list[str]
    expect: str
    output: Path | None = None
    inputs: list[Path] = field(default_factory=list)


def truncate(p: Path) -> Path:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def garble(p: Path) -> Path:
    """Random bytes in place of the file (same length, seeded)."""
    p.write_bytes(random.Random(0).randbytes(max(p.stat().st_size, 64)))
    return p


def binary(p: Path) -> Path:
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return p


def edit_json(p: Path, **changes) -> Path:
    data = json.loads(p.read_text())
    data.update(changes)
    p.write_text(json.dumps(data))
    return p


def damaged_model(e: Env, t: Path, damage: Callable[[Path], None]) -> Path:
    d = copy_dir(e.dense, t / "model")
    damage(d)
    return d


def sparsify_argv(model: Path, t: Path, *extra: str, calib: Path | None = None) -> list[str]:
    argv = ["sparsify", str(model), "-o", str(t / "out"), "-q", "--n-samples", "2", "--seq-len", "32"]
    return argv + (["--calibration", str(calib)] if calib else ["--method", "magnitude"]) + list(extra)


def finetune_argv(e: Env, t: Path, data: Path, *extra: str, model: Path | None = None) -> list[str]:
    argv = ["finetune", str(model or e.sparse), "--data", str(data), "-o", str(t / "out")]
    return argv + FAST_FINETUNE + list(extra)


def damaged_adapter(e: Env, t: Path, damage: Callable[[Path], None]) -> Path:
    d = copy_dir(e.adapter, t / "adapter")
    damage(d)
    return d


def recipe_file(e: Env, t: Path, **patch) -> Path:
    """A valid sqft-sparsepeft recipe on the tiny models, with `patch` applied (None deletes a key)."""
    recipe = {
        "name": "tiny",
        "model": str(e.dense),
        "pipeline": "sqft-sparsepeft",
        "sparsify": {
            "method": "wanda",
            "sparsity": 0.5,
            "calibration": str(e.calib),
            "n_samples": 2,
            "seq_len": 32,
        },
        "finetune": {
            "data": {"source": str(e.train), "format": "gsm8k"},
            "adapter": {"ranks": [8, 4], "alpha": 16},
            "train": {"max_steps": 2, "batch_size": 2, "micro_batch_size": 2, "warmup_steps": 0},
        },
        "evaluate": {"g": {"task": "gsm8k", "data": str(e.test), "n_shot": 0, "limit": 2}},
    }
    for dotted, value in patch.items():
        *path, last = dotted.split("__")
        node = recipe
        for k in path:
            node = node[k]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    p = t / "recipe.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


def run_check(e: Env, t: Path, **patch) -> Case:
    r = recipe_file(e, t, **patch)
    return Case(["run", str(r), "--check", "-o", str(t / "run")], "", t / "run", [r])


def expecting(case: Case, expect: str) -> Case:
    case.expect = expect
    return case


def write_text(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def truncated_gguf(t: Path) -> Path:
    """A GGUF file with valid magic and version whose tensor table is cut off."""
    import gguf
    import numpy as np

    p = t / "m.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.ones((16, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return truncate(p)


def check_case(name: str, case: Case, capsys) -> None:
    """Exit 2, one line `sqft CMD: error: …` naming the problem, no traceback, nothing written or changed."""
    watched = [p for p in [case.output, *case.inputs] if p is not None]
    before = snapshot(*watched)
    capsys.readouterr()
    rc = main(case.argv)
    err = capsys.readouterr().err
    assert rc == 2, (name, rc, err)
    assert err.count("\n") == 1 and err.startswith(f"sqft {case.argv[0]}: error: "), (name, err)
    assert case.expect in err, (name, case.expect, err)
    assert "Traceback" not in err
    assert snapshot(*watched) == before, name
    if case.output is not None:
        assert siblings(case.output) == [], name
