"""Bad adapters, evaluation data and recipes: refused with exit 2, one line, nothing written (as
`test_bad_inputs.py`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.cases import (
    Case,
    binary,
    check_case,
    damaged_adapter,
    expecting,
    garble,
    run_check,
    truncate,
    write_text,
)
from tests.reliability.conftest import Env

CASES: dict[str, Callable[[Env, Path], Case]] = {
    # ---- adapters: merge, extract, evaluate --adapter, search -------------------------------------------------
    "merge/adapter-truncated": lambda e, t: Case(
        [
            "merge",
            str(e.sparse),
            str(a := damaged_adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
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
            str(a := damaged_adapter(e, t, lambda d: garble(d / "adapter_model.safetensors"))),
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
            str(a := damaged_adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
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
            str(a := damaged_adapter(e, t, lambda d: garble(d / "elastic_adapter_config.json"))),
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
            str(a := damaged_adapter(e, t, lambda d: (d / "elastic_adapter_config.json").write_text("{}"))),
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
            str(write_text(t / "c.json", '{"nope": 8}')),
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
            str(a := damaged_adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
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
            str(a := damaged_adapter(e, t, lambda d: truncate(d / "adapter_model.safetensors"))),
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
        ["evaluate", str(e.dense), "--perplexity", str(e.calib), "-o", str(write_text(t / "r.json", "{}"))],
        "already exists",
        t / "r.json",
    ),
    # ---- recipes: sqft run --check validates what the run would fail on ---------------------------------------
    "run/recipe-binary": lambda e, t: Case(
        ["run", str(binary(t / "r.yaml")), "--check"], "not UTF-8 text", None, [t / "r.yaml"]
    ),
    "run/recipe-bad-yaml": lambda e, t: Case(
        ["run", str(write_text(t / "r.yaml", "name: [unclosed\nmodel: x\n")), "--check"],
        "not valid YAML",
        None,
        [t / "r.yaml"],
    ),
    "run/max-steps-word": lambda e, t: expecting(
        run_check(e, t, finetune__train__max_steps="two"), "max_steps='two' must be an integer"
    ),
    "run/max-steps-fraction": lambda e, t: expecting(
        run_check(e, t, finetune__train__max_steps=2.7), "max_steps=2.7 must be an integer"
    ),
    "run/cutoff-bool": lambda e, t: expecting(
        run_check(e, t, finetune__train__cutoff=True), "cutoff=True must be an integer"
    ),
    "run/ranks-string": lambda e, t: expecting(
        run_check(e, t, finetune__adapter__ranks="8,6,4"), "ranks='8,6,4' must be a list"
    ),
    "run/section-scalar": lambda e, t: expecting(
        run_check(e, t, finetune__adapter=5), "finetune.adapter: expected a mapping"
    ),
    "run/calibration-missing": lambda e, t: expecting(
        run_check(e, t, sparsify__calibration=str(t / "none.txt")), "calibration file"
    ),
    "run/training-data-missing": lambda e, t: expecting(
        run_check(e, t, finetune__data__source=str(t / "none.jsonl")), "does not exist"
    ),
    "run/model-missing": lambda e, t: expecting(run_check(e, t, model=str(t / "no-model")), "does not exist"),
    "run/evaluate-data-missing": lambda e, t: expecting(
        run_check(e, t, evaluate__g__data=str(t / "none.jsonl")), "does not exist"
    ),
    "run/device-cuda-without-cuda": lambda e, t: expecting(run_check(e, t, device="cuda"), "no CUDA support"),
    "run/calibration-too-short": lambda e, t: expecting(
        run_check(e, t, sparsify__calibration=str(write_text(t / "c.txt", "short"))), "not one window"
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(name, env, tmp_path, capsys):
    check_case(name, CASES[name](env, tmp_path), capsys)
