"""Adapter training-step cost: PEFT LoRA vs sqft LoRA, NLS, SparsePEFT, QA-SparsePEFT (same model, same batch).

Measures, per variant: median wall time of one optimizer step (forward + backward + AdamW) and the bytes the
autograd graph saves for backward (activation memory; on a GPU also the CUDA peak). Ratios are relative to
PEFT's LoRA. Writes JSON (and prints a table).

    python benchmarks/adapt_step_bench.py --hidden 512 --layers 4 --batch 4 --seq 128 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sqft.adapt import AdaptConfig, inject_adapters
from sqft.modeling.structure import find_target_linears
from sqft.quantize.format import replace_module
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build(hidden: int, layers: int, sparse: bool, int4: bool, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=1024,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for lin in find_target_linears(model, LINEARS).values():
            if sparse:  # 50% magnitude pruning per row
                W = lin.weight
                W.scatter_(1, W.abs().argsort(dim=1)[:, : W.shape[1] // 2], 0.0)
    if int4:
        for name, lin in find_target_linears(model, LINEARS).items():
            q, s, z = rtn_quantize(lin.weight.detach(), 4, 128, min_zero=1)
            replace_module(model, name, QuantLinear.from_codes(q, s, z, 4, 128, False))
    return model.to(device)


def variants():
    return {
        "peft-lora": ("peft", dict(sparse=True, int4=False), None),
        "sqft-lora": ("sqft", dict(sparse=True, int4=False), AdaptConfig(adapter="lora")),
        "sqft-nls": ("sqft", dict(sparse=True, int4=False), AdaptConfig(adapter="nls")),
        "sparsepeft": (
            "sqft",
            dict(sparse=True, int4=False),
            AdaptConfig(adapter="nls", sparse_adapter=True),
        ),
        "sparsepeft-nodrop": (
            "sqft",
            dict(sparse=True, int4=False),
            AdaptConfig(adapter="nls", sparse_adapter=True, dropout=0.0),
        ),
        "qa-sparsepeft": (
            "sqft",
            dict(sparse=True, int4=True),
            AdaptConfig(adapter="nls", sparse_adapter=True, quantization_aware=True),
        ),
    }


def prepare(kind, model_kw, cfg, args):
    model = build(args.hidden, args.layers, device=args.device, **model_kw)
    if kind == "peft":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=32,
                lora_alpha=64,
                lora_dropout=0.1,
                target_modules=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
            ),
        )
    else:
        inject_adapters(model, cfg)
    return model.train()


def saved_bytes(model, x) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x, labels=x).loss.backward()
    model.zero_grad()
    return total


def bench(name, kind, model_kw, cfg, args) -> dict:
    model = prepare(kind, model_kw, cfg, args)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randint(0, 1024, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(
        args.device
    )
    times = []
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        model(x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    out = {
        "step_s": statistics.median(times),
        "saved_for_backward_bytes": saved_bytes(model, x),
        "trainable": sum(p.numel() for p in params),
    }
    if args.device.startswith("cuda"):
        out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", nargs="*", default=None, help="subset of variants")
    p.add_argument("--out", default=None, help="write results as JSON")
    args = p.parse_args()
    results = {}
    for name, (kind, model_kw, cfg) in variants().items():
        if args.only and name not in args.only:
            continue
        results[name] = bench(name, kind, model_kw, cfg, args)
    ref = results.get("peft-lora")
    print(f"{'variant':20s} {'step s':>8s} {'x peft':>7s} {'saved MB':>9s} {'x peft':>7s}")
    for name, r in results.items():
        if ref:
            r["step_ratio"] = r["step_s"] / ref["step_s"]
            r["saved_ratio"] = r["saved_for_backward_bytes"] / ref["saved_for_backward_bytes"]
        print(
            f"{name:20s} {r['step_s']:8.3f} {r.get('step_ratio', float('nan')):7.2f} "
            f"{r['saved_for_backward_bytes'] / 2**20:9.1f} {r.get('saved_ratio', float('nan')):7.2f}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
