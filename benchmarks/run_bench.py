"""Is the merged sparse INT4 model faster than the dense one? SmolLM2-135M-Instruct, side by side in one run.

Part `models` (default): dense fp32, dense bf16, its 50% Wanda sparse model and the merged QA-SparsePEFT INT4
model (INT4 layers on PyTorch's packed-INT4 kernels, bf16), benchmarked by `sqft.inference.bench_models` (the
code of `sqft bench`), interleaved. The sparse and INT4 models are built here with `sqft.pipeline.run_recipe`
on a short recipe (synthetic arithmetic data, 4 QA steps: the speed does not depend on how well it learned),
or taken from a run directory (`--runs runs/demo`, as `sqft demo` writes). Targets (this CPU): INT4 decode at
batch 1 ≥ 2.5× dense fp32 and ≥ 1.5× dense bf16; INT4 weights in memory ≤ 0.3× fp32.

Part `layers`: one linear at Llama-3-8B shapes with random weights, bf16 dense vs the INT4 kernel (group 128),
batch 1 and 16: the kernel's own speed-up without the model around it (the GPU goal: ≥ 1.9× at batch 1).

    python benchmarks/run_bench.py [--part models|layers|all] [--runs DIR] [--device cpu|cuda] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

LLAMA3_8B = {"q/o": (4096, 4096), "k/v": (1024, 4096), "gate/up": (14336, 4096), "down": (4096, 14336)}


def build_models(work: Path, device: str) -> dict[str, str]:
    """The sparse and merged QA-SparsePEFT INT4 SmolLM2 (cached in `work`: a re-run skips what is done)."""
    from sqft.demo import DemoConfig, _model_path, _recipe, _write_data
    from sqft.pipeline import run_recipe

    cfg = DemoConfig(
        output=str(work), device=device, n_train=64, n_test=8, max_steps=4, batch_size=4, micro_batch_size=4
    )
    model = _model_path(cfg)
    state = run_recipe(_recipe(cfg, model, "sqft-qa-sparsepeft", _write_data(cfg, work)), work, quiet=True)
    return {"dense": model, "sparse": state.dirs["sparsify"], "int4": state.dirs["merge"]}


def models_from_runs(runs: Path) -> dict[str, str]:
    """Dense, sparse and merged INT4 of a `sqft demo` run directory (read from its pipeline summary)."""
    summary = json.loads((runs / "demo-sqft-qa-sparsepeft.json").read_text())
    parent = json.loads((Path(summary["stages"]["sparsify"]) / "sqft.json").read_text())["parent"]
    return {"dense": parent, "sparse": summary["stages"]["sparsify"], "int4": summary["stages"]["merge"]}


def bench_models_part(paths: dict[str, str], args: argparse.Namespace) -> dict:
    from sqft.inference.bench import BenchConfig, BenchSpec, bench_models
    from sqft.inference.bench_report import bench_markdown

    specs = [
        BenchSpec(paths["dense"], dtype="float32", label="dense fp32"),
        BenchSpec(paths["dense"], dtype="bfloat16", label="dense bf16"),
        BenchSpec(paths["sparse"], dtype="float32", label="50% sparse fp32"),
        BenchSpec(paths["int4"], dtype="bfloat16", label="merged QA-SparsePEFT INT4"),
    ]
    cfg = BenchConfig(
        batch_sizes=tuple(args.batch_sizes),
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        warmup=1,
        device=args.device,
        peak_memory=not args.no_peak_memory,
    )
    results = bench_models(specs, cfg, lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    print(bench_markdown(results, cfg))
    by = {r["name"]: r for r in results}
    int4, fp32, bf16 = by["merged QA-SparsePEFT INT4"], by["dense fp32"], by["dense bf16"]

    def decode(r: dict) -> float:
        return r["batches"]["1"]["decode_tokens_per_s"]["median"]

    ratios = {
        "int4_decode_vs_fp32": decode(int4) / decode(fp32),
        "int4_decode_vs_bf16": decode(int4) / decode(bf16),
        "int4_weights_vs_fp32": int4["weight_bytes"] / fp32["weight_bytes"],
    }
    targets = {
        "int4_decode_vs_fp32": (">=", 2.5),
        "int4_decode_vs_bf16": (">=", 1.5),
        "int4_weights_vs_fp32": ("<=", 0.3),
    }
    for key, value in ratios.items():
        op, target = targets[key]
        met = value >= target if op == ">=" else value <= target
        print(f"{key}: {value:.2f} (target {op} {target}: {'met' if met else 'NOT met'})")
    return {"config": cfg.__dict__, "results": results, "ratios": ratios}


def _median_seconds(fn, repeats: int, device: str) -> float:
    times = []
    for i in range(repeats + 3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.inference_mode()
def bench_layers_part(args: argparse.Namespace) -> dict:
    """bf16 (and fp32) dense F.linear vs PackedInt4Linear at Llama-3-8B layer shapes, batch 1 and 16."""
    from sqft.quantize.kernels import PackedInt4Linear
    from sqft.quantize.qlinear import QuantLinear
    from sqft.quantize.rtn import rtn_quantize

    rows = {}
    g = torch.Generator().manual_seed(0)
    for name, (out_f, in_f) in LLAMA3_8B.items():
        W = torch.randn(out_f, in_f, generator=g) * 0.02
        q, scale, zero = rtn_quantize(W, 4, 128, False)
        layer = QuantLinear.from_codes(q, scale, zero, 4, 128, False)
        packed = PackedInt4Linear(layer, args.device, torch.bfloat16)
        W_fp32 = layer.dequantize().to(args.device)
        W_bf16 = W_fp32.to(torch.bfloat16)
        del W, q, layer
        for batch in (1, 16):
            x = torch.randn(batch, in_f, generator=g).to(args.device, torch.bfloat16)
            dense = _median_seconds(
                lambda x=x, W=W_bf16: torch.nn.functional.linear(x, W), args.repeats * 10, args.device
            )
            x32 = x.float()
            fp32 = _median_seconds(
                lambda x=x32, W=W_fp32: torch.nn.functional.linear(x, W), args.repeats * 10, args.device
            )
            int4 = _median_seconds(lambda x=x, packed=packed: packed(x), args.repeats * 10, args.device)
            rows[f"{name} {out_f}x{in_f} batch {batch}"] = {
                "bf16_us": 1e6 * dense,
                "fp32_us": 1e6 * fp32,
                "int4_us": 1e6 * int4,
                "speedup": dense / int4,
                "speedup_vs_fp32": fp32 / int4,
            }
            print(
                f"{name:8s} {out_f:>5}x{in_f:<5} batch {batch:>2}: bf16 {1e6 * dense:8.1f} us, "
                f"fp32 {1e6 * fp32:8.1f} us, INT4 {1e6 * int4:8.1f} us, speed-up {dense / int4:.2f}x "
                f"(vs fp32 {fp32 / int4:.2f}x)",
                flush=True,
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["models", "layers", "all"], default="models")
    p.add_argument(
        "--runs", type=Path, default=None, help="a `sqft demo` run directory to take the models from"
    )
    p.add_argument("--work", type=Path, default=Path("runs/run-bench"), help="where the models are built")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-peak-memory", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__}
    t0 = time.perf_counter()
    if args.part in ("models", "all"):
        paths = models_from_runs(args.runs) if args.runs else build_models(args.work, args.device)
        report["models"] = bench_models_part(paths, args)
    if args.part in ("layers", "all"):
        report["layers"] = bench_layers_part(args)
    report["wall_s"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
