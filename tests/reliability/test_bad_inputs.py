"""Bad or hostile inputs to every command (models, calibration text, values, fine-tuning data): each is refused
with exit 2 and one line that names the problem, no traceback, and nothing written: the output path and every
input file are byte-identical afterwards (`cases.check_case`). Adapters, evaluation data and recipes:
`test_bad_adapters_and_recipes.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.cases import (
    Case,
    binary,
    check_case,
    damaged_model,
    edit_json,
    finetune_argv,
    garble,
    sparsify_argv,
    truncate,
    truncated_gguf,
    write_text,
)
from tests.reliability.conftest import Env
from tests.reliability.test_bad_adapters_and_recipes import CASES as ADAPTER_CASES

CASES: dict[str, Callable[[Env, Path], Case]] = {
    # ---- models: missing, damaged, or not covering their config ----------------------------------------------
    "sparsify/model-missing": lambda e, t: Case(sparsify_argv(t / "nope", t), "does not exist", t / "out"),
    "sparsify/config-garbled": lambda e, t: Case(
        sparsify_argv(m := damaged_model(e, t, lambda d: (d / "config.json").write_text("{not json")), t),
        "not valid JSON",
        t / "out",
        [m],
    ),
    "sparsify/weights-truncated": lambda e, t: Case(
        sparsify_argv(m := damaged_model(e, t, lambda d: truncate(d / "model.safetensors")), t),
        "truncated safetensors",
        t / "out",
        [m],
    ),
    "sparsify/weights-random-bytes": lambda e, t: Case(
        sparsify_argv(m := damaged_model(e, t, lambda d: garble(d / "model.safetensors")), t),
        "not a valid safetensors file",
        t / "out",
        [m],
    ),
    "sparsify/config-one-layer-more": lambda e, t: Case(
        sparsify_argv(
            m := damaged_model(e, t, lambda d: edit_json(d / "config.json", num_hidden_layers=3)), t
        ),
        "missing (model.layers.2.",
        t / "out",
        [m],
    ),
    "sparsify/config-wrong-width": lambda e, t: Case(
        sparsify_argv(
            m := damaged_model(e, t, lambda d: edit_json(d / "config.json", intermediate_size=96)), t
        ),
        "wrong shape",
        t / "out",
        [m],
    ),
    "sparsify/config-one-layer-less": lambda e, t: Case(
        sparsify_argv(
            m := damaged_model(e, t, lambda d: edit_json(d / "config.json", num_hidden_layers=1)), t
        ),
        "unexpected (model.layers.1.",
        t / "out",
        [m],
    ),
    "sparsify/tokenizer-garbled": lambda e, t: Case(
        sparsify_argv(m := damaged_model(e, t, lambda d: garble(d / "tokenizer.json")), t),
        "not UTF-8 text",
        t / "out",
        [m],
    ),
    "sparsify/model-is-a-text-file": lambda e, t: Case(
        sparsify_argv(e.calib, t), "not a .gguf file", t / "out", [e.calib]
    ),
    "quantize/gguf-truncated": lambda e, t: Case(
        ["quantize", str(truncated_gguf(t)), "--method", "rtn", "-o", str(t / "out"), "-q"],
        "damaged or truncated",
        t / "out",
        [t / "m.gguf"],
    ),
    "inspect/weights-truncated": lambda e, t: Case(
        ["inspect", str(m := damaged_model(e, t, lambda d: truncate(d / "model.safetensors")))],
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
            str(m := damaged_model(e, t, lambda d: garble(d / "model.safetensors"))),
            "--perplexity",
            str(e.calib),
        ],
        "not a valid safetensors file",
        None,
        [m, e.calib],
    ),
    # ---- calibration text -------------------------------------------------------------------------------------
    "sparsify/calibration-binary": lambda e, t: Case(
        sparsify_argv(e.dense, t, calib=binary(t / "c.txt")), "not UTF-8 text", t / "out", [t / "c.txt"]
    ),
    "sparsify/calibration-missing": lambda e, t: Case(
        sparsify_argv(e.dense, t, calib=t / "none.txt"), "does not exist", t / "out"
    ),
    "sparsify/calibration-too-short": lambda e, t: Case(
        sparsify_argv(e.dense, t, calib=write_text(t / "c.txt", "tiny")),
        "not one window",
        t / "out",
        [t / "c.txt"],
    ),
    "sparsify/calibration-bad-jsonl": lambda e, t: Case(
        sparsify_argv(e.dense, t, calib=write_text(t / "c.jsonl", '{"text": "a"}\n{"text": ')),
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
            str(write_text(t / "c.jsonl", '{"body": "x"}\n')),
        ],
        "has no field 'text'",
        t / "out",
        [t / "c.jsonl"],
    ),
    # ---- values, devices, outputs -----------------------------------------------------------------------------
    "sparsify/device-cuda-without-cuda": lambda e, t: Case(
        sparsify_argv(e.dense, t, "--device", "cuda"), "no CUDA support", t / "out", [e.dense]
    ),
    "sparsify/device-unknown": lambda e, t: Case(
        sparsify_argv(e.dense, t, "--device", "tpu7"), "unknown device 'tpu7'", t / "out"
    ),
    "sparsify/sparsity-out-of-range": lambda e, t: Case(
        sparsify_argv(e.dense, t, "--sparsity", "1.5"), "outside [0, 1)", t / "out"
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
        sparsify_argv(e.dense, t),
        "already exists",
        write_text(t / "out" / "keep.txt", "mine").parent,
        [e.dense],
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
        finetune_argv(e, t, binary(t / "d.jsonl")), "not UTF-8 text", t / "out", [t / "d.jsonl", e.sparse]
    ),
    "finetune/data-bad-json": lambda e, t: Case(
        finetune_argv(e, t, write_text(t / "d.jsonl", '{"question": "q", "answer": "a"}\n{oops}\n')),
        "line 2: not valid JSON",
        t / "out",
        [t / "d.jsonl"],
    ),
    "finetune/data-missing": lambda e, t: Case(
        finetune_argv(e, t, t / "none.jsonl"), "does not exist", t / "out"
    ),
    "finetune/data-unknown-fields": lambda e, t: Case(
        finetune_argv(e, t, write_text(t / "d.jsonl", '{"body": "x"}\n')),
        "cannot tell the training format",
        t / "out",
    ),
    "finetune/max-steps-0": lambda e, t: Case(
        finetune_argv(e, t, e.train, "--max-steps", "0"), "max_steps=0", t / "out"
    ),
    "finetune/r-max-below-ranks": lambda e, t: Case(
        finetune_argv(e, t, e.train, "--r-max", "4"), "has maximum 8, but r_max is 4", t / "out"
    ),
    "finetune/model-truncated": lambda e, t: Case(
        finetune_argv(e, t, e.train, model=damaged_model(e, t, lambda d: truncate(d / "model.safetensors"))),
        "truncated safetensors",
        t / "out",
        [t / "model"],
    ),
}


def test_there_are_at_least_40_cases():
    assert len(CASES) + len(ADAPTER_CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(name, env, tmp_path, capsys):
    check_case(name, CASES[name](env, tmp_path), capsys)
