"""`sqft bench`: the protocol's figures are consistent (tokens counted exactly, min ≤ median ≤ max), memory
figures are exact byte counts, results come out as Markdown, JSON and PNG, and bad input is refused."""

import json

import pytest
import torch

from sqft.artifacts import dir_size_bytes
from sqft.cli import main
from sqft.errors import SqftError
from sqft.inference.bench import BenchConfig, BenchSpec, Timing, bench_models, decode_timing, weight_bytes
from sqft.quantize.kernels import PackedInt4Linear
from tests.adapt.helpers import sparse_int4_model

FAST = {"batch_sizes": (1, 2), "prompt_tokens": 8, "new_tokens": 3, "repeats": 2, "warmup": 0}


def test_decode_timing_runs_the_greedy_tokens_of_generate(model):
    """The timed loop is greedy decoding on the KV cache: its calls see exactly the tokens `generate` makes."""
    ids = torch.randint(4, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    seen = []
    handle = model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    t = decode_timing(model.eval(), ids, 5)
    handle.remove()
    want = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    assert isinstance(t, Timing) and t.prefill_s > 0 and t.decode_s > 0
    assert torch.equal(seen[0], ids) and len(seen) == 5
    assert torch.equal(torch.cat(seen[1:], 1), want[:, 6:])


def test_weight_bytes_count_every_storage_once():
    model = sparse_int4_model()
    want = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert weight_bytes(model) == want
    layer = next(m for m in model.modules() if hasattr(m, "qweight"))
    packed = PackedInt4Linear(layer, "cpu", torch.float32)
    G = layer.in_features // layer.group_size
    assert (
        weight_bytes(packed) == layer.out_features * layer.in_features // 2 + G * layer.out_features * 2 * 4
    )


def test_bench_models_figures(model_dir, tmp_path):
    cfg = BenchConfig(**FAST, peak_memory=False)
    specs = [BenchSpec(str(model_dir), dtype="float32"), BenchSpec(str(model_dir), dtype="bfloat16")]
    lines = []
    results = bench_models(specs, cfg, lines.append)
    assert sum("loading" in line for line in lines) == 2 and sum("round" in line for line in lines) == 2
    fp32, bf16 = results
    assert (fp32["dtype"], bf16["dtype"]) == ("float32", "bfloat16")
    assert fp32["disk_bytes"] == dir_size_bytes(model_dir)
    assert (
        bf16["weight_bytes"] < 0.55 * fp32["weight_bytes"]
    )  # every float halves; only rotary buffers stay fp32
    for r in results:
        assert set(r["batches"]) == {"1", "2"}
        for b, f in r["batches"].items():
            for stat in f.values():
                assert 0 < stat["min"] <= stat["median"] <= stat["max"]
            # prefill tokens/s and time to first token come from the same prefill times
            ttft, prefill = f["time_to_first_token_ms"], f["prefill_tokens_per_s"]
            assert prefill["max"] == pytest.approx(int(b) * 8 / (ttft["min"] / 1000), rel=1e-9)
            assert prefill["min"] == pytest.approx(int(b) * 8 / (ttft["max"] / 1000), rel=1e-9)


def test_peak_memory_is_measured_in_a_fresh_process(model_dir):
    """The child's own peak, not this process's: after this process has touched 1 GiB more than the child
    can need, the figure must stay below that (ru_maxrss would carry the parent's peak into the child)."""
    ballast = torch.ones(2**28)  # 1 GiB in this process
    cfg = BenchConfig(**{**FAST, "batch_sizes": (1,), "repeats": 1})
    (r,) = bench_models([BenchSpec(str(model_dir))], cfg)
    del ballast
    from sqft.artifacts import peak_memory_bytes

    assert r["weight_bytes"] < r["peak_memory_bytes"] < peak_memory_bytes("cpu") - 2**29


def test_cli_writes_markdown_json_and_png(model_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", str(model_dir), "--batch-sizes", "1", "--prompt-tokens", "8", "--new-tokens", "3"]
    args += ["--repeats", "1", "--warmup", "0", "--no-peak-memory", "-o", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "| model | dtype | batch |" in captured.out and "bench: [1/1] loading" in captured.err
    payload = json.loads((out / "bench.json").read_text())
    assert payload["config"]["new_tokens"] == 3 and len(payload["results"]) == 1
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "sqft.json").is_file()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kw", [{"new_tokens": 1}, {"prompt_tokens": 0}, {"repeats": 0}, {"warmup": -1}, {"batch_sizes": (0,)}]
)
def test_bad_bench_config(kw):
    with pytest.raises(SqftError):
        BenchConfig(**kw)


def test_cli_bad_input(model_dir, tmp_path, capsys):
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(model_dir), "--dtype", "float32", "bfloat16"], "--dtype takes one value or one per model"),
        ([str(model_dir), "--adapter", "x=y"], "must be MODEL=DIR"),
        ([str(model_dir), "--device", "tpu7"], "unknown device 'tpu7'"),
    ]
    for args, message in cases:
        assert main(["bench", *args, "--no-peak-memory", "--new-tokens", "2", "--repeats", "1"]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
