"""Bad or hostile inputs to every command: each is refused with exit 2 and one line that names the problem,
no traceback, and nothing written: the output path and every input file are byte-identical afterwards.

Each case builds its input in `tmp` (damaging copies, never the shared artifacts) and returns the command line,
a phrase the error must contain, the output path and the inputs to compare before and after.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
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


def _model(e: Env, t: Path, damage: Callable[[Path], None]) -> Path:
    d = copy_dir(e.dense, t / "model")
    damage(d)
    return d


def _sparsify(model: Path, t: Path, *extra: str, calib: Path | None = None) -> list[str]:
    argv = ["sparsify", str(model), "-o", str(t / "out"), "-q", "--n-samples", "2", "--seq-len", "32"]
    return argv + (["--calibration", str(calib)] if calib else ["--method", "magnitude"]) + list(extra)


def _finetune(e: Env, t: Path, data: Path, *extra: str, model: Path | None = None) -> list[str]:
    argv = ["finetune", str(model or e.sparse), "--data", str(data), "-o", str(t / "out")]
    return argv + FAST_FINETUNE + list(extra)


def _adapter(e: Env, t: Path, damage: Callable[[Path], None]) -> Path:
    d = copy_dir(e.adapter, t / "adapter")
    damage(d)
    return d


def _recipe(e: Env, t: Path, **patch) -> Path:
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


def _run_check(e: Env, t: Path, **patch) -> Case:
    r = _recipe(e, t, **patch)
    return Case(["run", str(r), "--check", "-o", str(t / "run")], "", t / "run", [r])


def _with(case: Case, expect: str) -> Case:
    case.expect = expect
    return case


CASES: dict[str, Callable[[Env, Path], Case]] = {
    # ---- models: missing, damaged, or not covering their config ----------------------------------------------
    "sparsify/model-missing": lambda e, t: Case(_sparsify(t / "nope", t), "does not exist", t / "out"),
    "sparsify/config-garbled": lambda e, t: Case(
        _sparsify(m := _model(e, t, lambda d: (d / "config.json").write_text("{not json")), t),
        "not valid JSON",
        t / "out",
        [m],
    ),
    "sparsify/weights-truncated": lambda e, t: Case(
        _sparsify(m := _model(e, t, lambda d: truncate(d / "model.safetensors")), t),
        "truncated safetensors",
        t / "out",
        [m],
    ),
    "sparsify/weights-random-bytes": lambda e, t: Case(
        _sparsify(m := _model(e, t, lambda d: garble(d / "model.safetensors")), t),
        "not a valid safetensors file",
        t / "out",
        [m],
    ),
    "sparsify/config-one-layer-more": lambda e, t: Case(
        _sparsify(m := _model(e, t, lambda d: edit_json(d / "config.json", num_hidden_layers=3)), t),
        "missing (model.layers.2.",
        t / "out",
        [m],
    ),
    "sparsify/config-wrong-width": lambda e, t: Case(
        _sparsify(m := _model(e, t, lambda d: edit_json(d / "config.json", intermediate_size=96)), t),
        "wrong shape",
        t / "out",
        [m],
    ),
    "sparsify/config-one-layer-less": lambda e, t: Case(
        _sparsify(m := _model(e, t, lambda d: edit_json(d / "config.json", num_hidden_layers=1)), t),
        "unexpected (model.layers.1.",
        t / "out",
        [m],
    ),
    "sparsify/tokenizer-garbled": lambda e, t: Case(
        _sparsify(m := _model(e, t, lambda d: garble(d / "tokenizer.json")), t),
        "not UTF-8 text",
        t / "out",
        [m],
    ),
    "sparsify/model-is-a-text-file": lambda e, t: Case(
        _sparsify(e.calib, t), "not a .gguf file", t / "out", [e.calib]
    ),
    "quantize/gguf-truncated": lambda e, t: Case(
        ["quantize", str(_gguf(t)), "--method", "rtn", "-o", str(t / "out"), "-q"],
        "damaged or truncated",
        t / "out",
        [t / "m.gguf"],
    ),
    "inspect/weights-truncated": lambda e, t: Case(
        ["inspect", str(m := _model(e, t, lambda d: truncate(d / "model.safetensors")))],
        "truncated safetensors",
        None,
        [m],
    ),
    "inspect/not-a-model": lambda e, t: Case(
        ["inspect", str(e.root / "data")], "no config.json", None, [e.train]
    ),
    "evaluate/weights-random-bytes": lambda e, t: Case(
        [
            "evaluate",
            str(m := _model(e, t, lambda d: garble(d / "model.safetensors"))),
            "--perplexity",
            str(e.calib),
        ],
        "not a valid safetensors file",
        None,
        [m, e.calib],
    ),
    # ---- calibration text -------------------------------------------------------------------------------------
    "sparsify/calibration-binary": lambda e, t: Case(
        _sparsify(e.dense, t, calib=binary(t / "c.txt")), "not UTF-8 text", t / "out", [t / "c.txt"]
    ),
    "sparsify/calibration-missing": lambda e, t: Case(
        _sparsify(e.dense, t, calib=t / "none.txt"), "does not exist", t / "out"
    ),
    "sparsify/calibration-too-short": lambda e, t: Case(
        _sparsify(e.dense, t, calib=_write(t / "c.txt", "tiny")), "not one window", t / "out", [t / "c.txt"]
    ),
    "sparsify/calibration-bad-jsonl": lambda e, t: Case(
        _sparsify(e.dense, t, calib=_write(t / "c.jsonl", '{"text": "a"}\n{"text": ')),
        "line 2 is not valid JSON",
        t / "out",
        [t / "c.jsonl"],
    ),
    "quantize/calibration-field-missing": lambda e, t: Case(
        [
            "quantize",
            str(e.dense),
            "-o",
            str(t / "out"),
            "-q",
            "--calibration",
            str(_write(t / "c.jsonl", '{"body": "x"}\n')),
        ],
        "has no field 'text'",
        t / "out",
        [t / "c.jsonl"],
    ),
    # ---- values, devices, outputs -----------------------------------------------------------------------------
    "sparsify/device-cuda-without-cuda": lambda e, t: Case(
        _sparsify(e.dense, t, "--device", "cuda"), "no CUDA support", t / "out", [e.dense]
    ),
    "sparsify/device-unknown": lambda e, t: Case(
        _sparsify(e.dense, t, "--device", "tpu7"), "unknown device 'tpu7'", t / "out"
    ),
    "sparsify/sparsity-out-of-range": lambda e, t: Case(
        _sparsify(e.dense, t, "--sparsity", "1.5"), "outside [0, 1)", t / "out"
    ),
    "quantize/explicit-group-size-does-not-divide": lambda e, t: Case(
        ["quantize", str(e.dense), "--method", "rtn", "--group-size", "48", "-o", str(t / "out"), "-q"],
        "group size 48 does not divide",
        t / "out",
        [e.dense],
    ),
    "quantize/bits-unsupported": lambda e, t: Case(
        ["quantize", str(e.dense), "--method", "rtn", "--bits", "5", "-o", str(t / "out"), "-q"],
        "bits=5",
        t / "out",
    ),
    "sparsify/output-exists": lambda e, t: Case(
        _sparsify(e.dense, t), "already exists", _write(t / "out" / "keep.txt", "mine").parent, [e.dense]
    ),
    "sparsify/output-parent-missing": lambda e, t: Case(
        ["sparsify", str(e.dense), "--method", "magnitude", "-o", str(t / "no" / "out")],
        "does not exist",
        t / "no",
    ),
    "sparsify/output-unwritable": lambda e, t: Case(
        ["sparsify", str(e.dense), "--method", "magnitude", "-o", "/sys/sqft-out"],
        "not writable",
        Path("/sys/sqft-out"),
    ),
    # ---- fine-tuning data and settings ------------------------------------------------------------------------
    "finetune/data-binary": lambda e, t: Case(
        _finetune(e, t, binary(t / "d.jsonl")), "not UTF-8 text", t / "out", [t / "d.jsonl", e.sparse]
    ),
    "finetune/data-bad-json": lambda e, t: Case(
        _finetune(e, t, _write(t / "d.jsonl", '{"question": "q", "answer": "a"}\n{oops}\n')),
        "line 2: not valid JSON",
        t / "out",
        [t / "d.jsonl"],
    ),
    "finetune/data-missing": lambda e, t: Case(
        _finetune(e, t, t / "none.jsonl"), "does not exist", t / "out"
    ),
    "finetune/data-unknown-fields": lambda e, t: Case(
        _finetune(e, t, _write(t / "d.jsonl", '{"body": "x"}\n')),
        "cannot tell the training format",
        t / "out",
    ),
    "finetune/max-steps-0": lambda e, t: Case(
        _finetune(e, t, e.train, "--max-steps", "0"), "max_steps=0", t / "out"
    ),
    "finetune/r-max-below-ranks": lambda e, t: Case(
        _finetune(e, t, e.train, "--r-max", "4"), "has maximum 8, but r_max is 4", t / "out"
    ),
    "finetune/model-truncated": lambda e, t: Case(
        _finetune(e, t, e.train, model=_model(e, t, lambda d: truncate(d / "model.safetensors"))),
        "truncated safetensors",
        t / "out",
        [t / "model"],
    ),
    # ---- adapters: merge, extract, evaluate --adapter, search -------------------------------------------------
    "merge/adapter-truncated": lambda e, t: Case(
        [
            "merge",
            str(e.sparse),
            str(a := _adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
            "-o",
            str(t / "out"),
        ],
        "truncated safetensors",
        t / "out",
        [a, e.sparse],
    ),
    "merge/adapter-random-bytes": lambda e, t: Case(
        [
            "merge",
            str(e.sparse),
            str(a := _adapter(e, t, lambda d: garble(d / "adapter_model.safetensors"))),
            "-o",
            str(t / "out"),
        ],
        "not a valid safetensors file",
        t / "out",
        [a],
    ),
    "merge/sparsepeft-into-dense-original": lambda e, t: Case(
        ["merge", str(e.dense), str(e.adapter), "-o", str(t / "out")],
        "was trained on",
        t / "out",
        [e.adapter, e.dense],
    ),
    "merge/sparsepeft-into-other-mask": lambda e, t: Case(
        ["merge", str(e.sparse_other), str(e.adapter), "-o", str(t / "out")],
        "was trained on",
        t / "out",
        [e.sparse_other],
    ),
    "merge/not-an-adapter": lambda e, t: Case(
        ["merge", str(e.sparse), str(e.sparse), "-o", str(t / "out")],
        "is not an adapter directory",
        t / "out",
    ),
    "extract/adapter-truncated": lambda e, t: Case(
        [
            "extract",
            str(a := _adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
            "-o",
            str(t / "out"),
        ],
        "truncated safetensors",
        t / "out",
        [a],
    ),
    "extract/elastic-config-garbled": lambda e, t: Case(
        [
            "extract",
            str(a := _adapter(e, t, lambda d: garble(d / "elastic_adapter_config.json"))),
            "-o",
            str(t / "out"),
        ],
        "not UTF-8 text",
        t / "out",
        [a],
    ),
    "extract/elastic-config-empty-object": lambda e, t: Case(
        [
            "extract",
            str(a := _adapter(e, t, lambda d: (d / "elastic_adapter_config.json").write_text("{}"))),
            "-o",
            str(t / "out"),
        ],
        "lacks adapt_config",
        t / "out",
        [a],
    ),
    "extract/config-file-other-groups": lambda e, t: Case(
        [
            "extract",
            str(e.adapter),
            "--config",
            str(_write(t / "c.json", '{"nope": 8}')),
            "-o",
            str(t / "out"),
        ],
        "nope",
        t / "out",
        [t / "c.json", e.adapter],
    ),
    "evaluate/adapter-truncated": lambda e, t: Case(
        [
            "evaluate",
            str(e.sparse),
            "--adapter",
            str(a := _adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
            "--perplexity",
            str(e.calib),
        ],
        "truncated safetensors",
        None,
        [a],
    ),
    "evaluate/adapter-on-dense-base": lambda e, t: Case(
        ["evaluate", str(e.dense), "--adapter", str(e.adapter), "--perplexity", str(e.calib)],
        "was trained on",
        None,
        [e.dense],
    ),
    "search/adapter-truncated": lambda e, t: Case(
        [
            "search",
            str(a := _adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
            "--base",
            str(e.sparse),
            "--strategy",
            "median",
            "-o",
            str(t / "out"),
        ],
        "truncated safetensors",
        t / "out",
        [a],
    ),
    "search/validation-binary": lambda e, t: Case(
        [
            "search",
            str(e.adapter),
            "--base",
            str(e.sparse),
            "--validation",
            str(binary(t / "v.jsonl")),
            "-o",
            str(t / "out"),
        ],
        "not UTF-8 text",
        t / "out",
        [t / "v.jsonl", e.adapter],
    ),
    # ---- evaluation data ---------------------------------------------------------------------------------------
    "evaluate/data-binary": lambda e, t: Case(
        ["evaluate", str(e.dense), "--task", "gsm8k", "--n-shot", "0", "--data", str(binary(t / "d.jsonl"))],
        "not UTF-8 text",
        None,
        [t / "d.jsonl"],
    ),
    "evaluate/gsm8k-no-fewshot-source": lambda e, t: Case(
        ["evaluate", str(e.dense), "--task", "gsm8k", "--data", str(e.test)],
        "needs solved examples",
        None,
        [e.test],
    ),
    "evaluate/device-unknown": lambda e, t: Case(
        ["evaluate", str(e.dense), "--perplexity", str(e.calib), "--device", "tpu7"], "unknown device", None
    ),
    "evaluate/results-file-exists": lambda e, t: Case(
        ["evaluate", str(e.dense), "--perplexity", str(e.calib), "-o", str(_write(t / "r.json", "{}"))],
        "already exists",
        t / "r.json",
    ),
    # ---- recipes: sqft run --check validates what the run would fail on ---------------------------------------
    "run/recipe-binary": lambda e, t: Case(
        ["run", str(binary(t / "r.yaml")), "--check"], "not UTF-8 text", None, [t / "r.yaml"]
    ),
    "run/recipe-bad-yaml": lambda e, t: Case(
        ["run", str(_write(t / "r.yaml", "name: [unclosed\nmodel: x\n")), "--check"],
        "not valid YAML",
        None,
        [t / "r.yaml"],
    ),
    "run/max-steps-word": lambda e, t: _with(
        _run_check(e, t, finetune__train__max_steps="two"), "max_steps='two' must be an integer"
    ),
    "run/max-steps-fraction": lambda e, t: _with(
        _run_check(e, t, finetune__train__max_steps=2.7), "max_steps=2.7 must be an integer"
    ),
    "run/cutoff-bool": lambda e, t: _with(
        _run_check(e, t, finetune__train__cutoff=True), "cutoff=True must be an integer"
    ),
    "run/ranks-string": lambda e, t: _with(
        _run_check(e, t, finetune__adapter__ranks="8,6,4"), "ranks='8,6,4' must be a list"
    ),
    "run/section-scalar": lambda e, t: _with(
        _run_check(e, t, finetune__adapter=5), "finetune.adapter: expected a mapping"
    ),
    "run/calibration-missing": lambda e, t: _with(
        _run_check(e, t, sparsify__calibration=str(t / "none.txt")), "calibration file"
    ),
    "run/training-data-missing": lambda e, t: _with(
        _run_check(e, t, finetune__data__source=str(t / "none.jsonl")), "does not exist"
    ),
    "run/model-missing": lambda e, t: _with(_run_check(e, t, model=str(t / "no-model")), "does not exist"),
    "run/evaluate-data-missing": lambda e, t: _with(
        _run_check(e, t, evaluate__g__data=str(t / "none.jsonl")), "does not exist"
    ),
    "run/device-cuda-without-cuda": lambda e, t: _with(_run_check(e, t, device="cuda"), "no CUDA support"),
    "run/calibration-too-short": lambda e, t: _with(
        _run_check(e, t, sparsify__calibration=str(_write(t / "c.txt", "short"))), "not one window"
    ),
}


def _write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _gguf(t: Path) -> Path:
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


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(name, env, tmp_path, capsys):
    case = CASES[name](env, tmp_path)
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
