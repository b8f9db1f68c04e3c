"""One target layer, forward + backward: LoRA vs the SparsePEFT and QA-SparsePEFT forms, against the matmul floor.

Isolates what a masked adapter costs per layer from the rest of a model (attention, norms, the head). Per form:
median time of forward + backward of one layer, its ratio to a LoRA layer on the same weight and tokens (in the
same run, forms stepped in turn), and the floor that ratio cannot go below: the weight-sized matmuls of the form
over LoRA's two (3/2 folded, where `∂L = gᵀx` is the extra one; 5/2 for SparsePEFT with adapter-branch dropout,
where the dropped input needs its own pair; QA-SparsePEFT drops the layer input and stays folded with or without
dropout). What is above the floor is the weight rebuild. `authors-sparsepeft` is the authors' design in plain
autograd (`adapt.reference.sparse_peft` with its dropout branch: two GEMMs, L kept for backward), the baseline of
the one-GEMM SparsePEFT. Llama-3-8B's up_proj on a GPU:

    python benchmarks/adapter_layer_bench.py --out-features 14336 --in-features 4096 --tokens 4096 \
        --dtype bfloat16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from sqft.adapt import reference
from sqft.adapt.equations import pack_mask
from sqft.adapt.recompute import FloatBase, Int4Base, adapted_linear
from sqft.fused import fused_by_default
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize

FLOOR = {
    "lora": 1.0,
    "sparsepeft": 1.5,
    "sparsepeft-drop": 2.5,
    "authors-sparsepeft": 2.5,
    "qa-int4": 1.5,
    "qa-int4-drop": 1.5,
}


def forms(args) -> dict:
    """form → a closure running forward + backward once."""
    dev, dt = args.device, getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    out, n_in, r, s = args.out_features, args.in_features, args.rank, 2.0
    W = torch.randn(out, n_in, generator=g)
    W.scatter_(1, W.abs().argsort(dim=1)[:, : n_in // 2], 0.0)  # 50% per row
    q, scale, zero = rtn_quantize(W, 4, 128, min_zero=1)
    int4 = QuantLinear.from_codes(q, scale, zero, 4, 128, False).to(dev)
    W = W.to(dev, dt)
    A = (torch.randn(r, n_in, generator=g) * 0.01).to(dev).requires_grad_()
    B = (torch.randn(out, r, generator=g) * 0.01).to(dev).requires_grad_()
    x = torch.randn(args.tokens, n_in, generator=g).to(dev, dt).requires_grad_()
    xd = F.dropout(x.detach(), 0.1).requires_grad_()
    gy = torch.randn(args.tokens, out, generator=g).to(dev, dt)
    fused = args.fused == "on" or (args.fused == "auto" and fused_by_default())
    M = W != 0
    dense = FloatBase(lambda: W, pack_mask(M), None, fused)
    codes = Int4Base(int4.codes_t, 4, masked=True, fused=fused)

    def lora():  # PEFT's form: frozen base + B A on the dropped input
        y = F.linear(x, W) + F.linear(F.linear(xd, A.to(dt)), B.to(dt)) * s
        y.backward(gy)

    def authors():  # y = x Wᵀ + dropout(x) Lᵀ in plain autograd (the dropout is drawn outside, as for LoRA)
        reference.sparse_peft(x, W, A, B, s, M, dropout=lambda _: xd).backward(gy)

    return {
        "lora": lora,
        "sparsepeft": lambda: adapted_linear(x, A, B, s, dense).backward(gy),
        "sparsepeft-drop": lambda: adapted_linear(x, A, B, s, dense, x_drop=xd).backward(gy),
        "authors-sparsepeft": authors,
        "qa-int4": lambda: adapted_linear(x, A, B, s, codes).backward(gy),
        "qa-int4-drop": lambda: adapted_linear(xd, A, B, s, codes).backward(gy),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-features", type=int, default=2816)
    p.add_argument("--in-features", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fused", default="auto", choices=["auto", "on", "off"], help="compiled weight builds")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write results as JSON")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = forms(args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.repeats + 1):  # round 0 warms up (and compiles)
        for name, run in runs.items():
            sync()
            t0 = time.perf_counter()
            run()
            sync()
            if i:
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{'form':16s} {'ms':>9s} {'x lora':>7s} {'floor':>6s}")
    results = {}
    for name, t in med.items():
        results[name] = {"ms": t * 1e3, "ratio": t / med["lora"], "floor": FLOOR[name]}
        print(f"{name:16s} {t * 1e3:9.1f} {t / med['lora']:7.2f} {FLOOR[name]:6.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
