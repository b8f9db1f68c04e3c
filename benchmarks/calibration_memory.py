"""Peak memory of the calibration stages beyond the model's own weights, for two depths.

The layer-sequential loop keeps one decoder block plus the calibration activations on the device, so the
overhead (peak − weights) must stay about the same when the model gets deeper. Each configuration runs in
its own process so that peak RSS (CPU) or the CUDA allocator's peak is measured cleanly.

    python benchmarks/calibration_memory.py [--device cuda] [--hidden 1024] [--depths 4 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _one(stage: str, depth: int, hidden: int, n: int, seq: int, device: str) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    from sqft.sparsify import SparsifyConfig, sparsify

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=4096,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 128 * 128,
        num_hidden_layers=depth,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 128,
        max_position_embeddings=seq,
    )
    model = LlamaForCausalLM(cfg).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    windows = torch.randint(0, cfg.vocab_size, (n, seq), generator=torch.Generator().manual_seed(0))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss()
    t0 = time.perf_counter()
    if stage == "quantize":
        from sqft.quantize.api import QuantizeConfig, quantize

        quantize(
            model, QuantizeConfig(method="gptq", bits=4, group_size=128, device=device), windows, quiet=True
        )
    else:
        sparsify(model, SparsifyConfig(method=stage, sparsity=0.5, device=device), windows, quiet=True)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else _peak()
    activations = n * seq * hidden * 4
    return {
        "stage": stage,
        "depth": depth,
        "weights_mib": weights / 2**20,
        "overhead_mib": (peak - base) / 2**20,
        "activations_mib": activations / 2**20,
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--depths", type=int, nargs=2, default=[4, 8])
    ap.add_argument("--stages", nargs="+", default=["wanda", "sparsegpt", "quantize"])
    ap.add_argument("--n-samples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--json", default=None)
    ap.add_argument("--one", nargs=2, metavar=("STAGE", "DEPTH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # child process: one configuration, result as JSON on stdout
        print(
            json.dumps(
                _one(args.one[0], int(args.one[1]), args.hidden, args.n_samples, args.seq_len, args.device)
            )
        )
        return
    rows = []
    for stage in args.stages:
        for depth in args.depths:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                stage,
                str(depth),
                "--hidden",
                str(args.hidden),
                "--n-samples",
                str(args.n_samples),
                "--seq-len",
                str(args.seq_len),
                "--device",
                args.device,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"{'stage':<10} {'depth':>5} {'weights MiB':>12} {'overhead MiB':>13} {'acts MiB':>9} {'seconds':>8}"
    )
    for r in rows:
        print(
            f"{r['stage']:<10} {r['depth']:>5} {r['weights_mib']:>12.1f} {r['overhead_mib']:>13.1f} "
            f"{r['activations_mib']:>9.1f} {r['seconds']:>8.1f}"
        )
    for stage in args.stages:
        a, b = [r for r in rows if r["stage"] == stage]
        print(
            f"{stage}: weights x{b['weights_mib'] / a['weights_mib']:.2f}, "
            f"overhead x{b['overhead_mib'] / max(a['overhead_mib'], 1e-9):.2f} when depth x{b['depth'] / a['depth']:.0f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
