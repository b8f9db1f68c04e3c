"""`sqft demo` end to end on a tiny model: every row, accuracy with its n beside held-out perplexity, merged =
unmerged, resume."""

import math

import pytest
import torch

from sqft.demo import DemoConfig, _recipe, _tasks, _write_data, run_demo
from sqft.devices import compute_dtype, has_fast_bf16
from sqft.pipeline import evaluate_unmerged, run_recipe
from sqft.report.collect import read_results
from tests.export.helpers import save_bpe_llama
from tests.tolerance import assert_close

pytest.importorskip("gguf")  # the demo ends with a GGUF export


def _config(tmp_path) -> DemoConfig:
    return DemoConfig(
        model=str(save_bpe_llama(tmp_path / "tiny")),
        output=str(tmp_path / "demo"),
        dtype="float32",
        n_train=16,
        n_test=4,
        max_steps=2,
        batch_size=2,
        micro_batch_size=2,
        cutoff=64,
        group_size=32,
        calibration_samples=2,
        calibration_seq_len=32,
        speed=False,
    )


def test_demo_rows_metrics_and_resume(tmp_path):
    cfg = _config(tmp_path)
    table, rows, gguf = run_demo(cfg, quiet=True)
    assert len(rows) == 5 and len(table.splitlines()) == 2 + 5
    for path in rows:
        results = read_results(path)
        assert results["arithmetic"]["n"] == cfg.n_test
        assert (
            math.isfinite(results["arithmetic-ppl"]["perplexity"])
            and results["arithmetic-ppl"]["perplexity"] > 1
        )
    assert gguf[0].startswith("GGUF")
    ppl = [read_results(path)["arithmetic-ppl"]["perplexity"] for path in rows]
    # rows: dense, sparse, SparsePEFT merged, SparsePEFT unmerged, QA merged: the merged model computes what
    # its adapter computes on the sparse base (W + L formed in fp32 either way; sums of 256 terms per logit)
    assert_close(ppl[2], ppl[3], torch.float32, 256)
    assert "(unmerged)" in table.splitlines()[5]
    # QA-SparsePEFT (fp16 base) unmerged: its adapter on the fp16 sparse model with the INT4 layers it trained
    # with (the pipeline state is cached: nothing re-runs) computes what the merged INT4 model computes
    root, paths = tmp_path / "demo", _write_data(cfg, tmp_path / "demo")
    qa = run_recipe(_recipe(cfg, cfg.model, "sqft-qa-sparsepeft", paths), root, quiet=True)
    unmerged = evaluate_unmerged(root, qa, _tasks(cfg, paths), "cpu", "float32", quiet=True)
    assert_close(read_results(unmerged)["arithmetic-ppl"]["perplexity"], ppl[4], torch.float32, 256)
    again, rows_again, _ = run_demo(cfg, quiet=True)  # every stage is there: nothing re-runs, same figures
    assert rows_again == rows and again == table


def test_fast_bf16_from_cpu_flags():
    assert has_fast_bf16("cpu", "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    assert has_fast_bf16("cpu", "flags\t\t: fpu avx2 avx512_bf16\n")
    assert not has_fast_bf16("cpu", "flags\t\t: fpu avx2 avx512f\n")
    assert not has_fast_bf16("cpu", "")
    assert has_fast_bf16("cuda") and not has_fast_bf16("mps")
    assert compute_dtype("cpu", "float32") == "float32" and compute_dtype("cuda") == "bfloat16"
