"""Defaults that work on the default model's shapes, the smaller fixes of the issue, and a few bad inputs
through a real `python -m sqft.cli` process: exit 2, exactly one line on stderr, no traceback."""

from __future__ import annotations

import json

import pytest

from sqft.cli import main
from tests.conftest import CORPUS, char_tokenizer, tiny_llama
from tests.reliability.conftest import copy_dir
from tests.reliability.helpers import run_cli, siblings
from tests.reliability.test_bad_inputs import binary, truncate


def test_quantize_chooses_a_group_size_that_divides_every_target(tmp_path, capsys):
    """SmolLM2 is 576 wide: 128 does not divide it. Here hidden 96 and intermediate 192: 32 divides both."""
    d = tmp_path / "m"
    tiny_llama(hidden=96, intermediate=192).save_pretrained(d)
    char_tokenizer().save_pretrained(d)
    out = tmp_path / "q"
    assert main(["quantize", str(d), "--method", "rtn", "-o", str(out), "-q"]) == 0
    manifest = json.loads((out / "sqft.json").read_text())
    assert manifest["config"]["group_size"] == 32 and manifest["config"]["group_size_auto"] is True
    assert json.loads((out / "config.json").read_text())["quantization_config"]["group_size"] == 32
    capsys.readouterr()
    assert main(["quantize", str(d), "--method", "rtn", "--group-size", "64", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err  # an explicit size stays strict; the hint lists sizes that fit every target
    assert "group size 64 does not divide in_features=96" in err and "[32, 16, 8, 4, 2]" in err


def test_r_max_defaults_to_the_largest_rank(env):
    meta = json.loads((env.adapter / "elastic_adapter_config.json").read_text())
    assert meta["adapt_config"]["r_max"] == 8 and meta["adapt_config"]["ranks"] == [8, 4]


def test_search_scores_loss_on_plain_text(env, tmp_path, capsys):
    text = tmp_path / "val.jsonl"
    text.write_text("".join(json.dumps({"text": s}) + "\n" for s in CORPUS.split(". ")[:6]))
    out = tmp_path / "s"
    argv = [
        "search",
        str(env.adapter),
        "--base",
        str(env.sparse),
        "--validation",
        str(text),
        "--strategy",
        "median",
    ]
    assert main(argv + ["--no-extract", "-o", str(out)]) == 0
    summary = json.loads((out / "search.json").read_text())
    assert summary["metric"] == "loss" and summary["validation"]["format"] == "text" and summary["score"] < 0


def test_gsm8k_fewshot_examples_come_from_a_sibling_train_split(env, tmp_path, caplog):
    d = copy_dir(env.root / "data", tmp_path / "gsm8k")
    (d / "test.jsonl").write_bytes(env.test.read_bytes())
    out = tmp_path / "r.json"
    argv = ["evaluate", str(env.dense), "--task", "gsm8k", "--data", str(d / "test.jsonl"), "--n-shot", "2"]
    with caplog.at_level("INFO"):
        assert main(argv + ["--limit", "1", "--max-new-tokens", "2", "-o", str(out), "-q"]) == 0
    assert json.loads(out.read_text())["tasks"]["gsm8k"]["fewshot_data"] == str(d / "train.jsonl")
    assert "sibling train split" in caplog.text


def test_the_manifest_records_the_seq_len_used(env, tmp_path):
    out = tmp_path / "s"
    argv = [
        "sparsify",
        str(env.dense),
        "--calibration",
        str(env.calib),
        "--n-samples",
        "2",
        "--seq-len",
        "4096",
    ]
    assert main(argv + ["-o", str(out), "-q"]) == 0
    manifest = json.loads((out / "sqft.json").read_text())
    assert manifest["config"]["seq_len"] == 256  # the tiny model's max_position_embeddings
    assert manifest["figures"]["calibration"]["seq_len_requested"] == 4096
    assert manifest["figures"]["calibration"]["windows"] == [2, 256]


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda e, t: ["sparsify", str(_truncated(e, t)), "--method", "magnitude"], "truncated safetensors"),
        (
            lambda e, t: ["sparsify", str(e.dense), "--calibration", str(binary(t / "c.txt"))],
            "not UTF-8 text",
        ),
        (
            lambda e, t: ["sparsify", str(e.dense), "--method", "magnitude", "--device", "cuda"],
            "no CUDA support",
        ),
    ],
    ids=["truncated-weights", "binary-calibration", "cuda-without-cuda"],
)
def test_a_real_process_prints_one_line_and_no_traceback(env, tmp_path, make, expect):
    out = tmp_path / "out"
    r = run_cli(*make(env, tmp_path), "-o", str(out), "-q")
    assert r.returncode == 2 and expect in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() and siblings(out) == []


def _truncated(env, tmp_path):
    d = copy_dir(env.dense, tmp_path / "model")
    truncate(d / "model.safetensors")
    return d
