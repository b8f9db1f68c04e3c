"""Adapter training-step cost: PEFT LoRA vs sqft LoRA, NLS, SparsePEFT, QA-SparsePEFT (same model, same batch).

Measures, per variant: median wall time of one optimizer step (forward + backward + AdamW), the bytes the
autograd graph saves for backward, and the training memory: on a GPU the CUDA peak, everywhere a model of it
(parameters + buffers + gradients + AdamW state + saved-for-backward bytes). Ratios: time and memory against
PEFT's LoRA on the same model and batch; QA-SparsePEFT's memory also against `qa-fp16-copy`, the design that
holds an fp16 copy of the target weights (QA on the dequantized fp16 weights, non-target layers INT4) — the
issue's targets are ≤ 1.1× (SparsePEFT time and memory), ≤ 1.03× (NLS vs fixed-rank sqft LoRA), ≤ 1.25× time
and ≤ 0.6× memory vs the fp16 copy (QA). `int4-nls` is the sqft pipeline (a dense NLS adapter on the INT4 base);
the `-nodrop` variants run with adapter dropout 0, where the masked adapter folds into one matmul.

The designs the targets are stated against, in the same run: `authors-sparsepeft`, the authors' SparsePEFT
(`y = x Wᵀ + dropout(x) Lᵀ` in plain autograd, `AdapterLinear.path = "reference"`, two GEMMs, L kept for backward);
`qa-fp16-copy` (above); and the matmul floors, `floor-3` (the target weights themselves get gradients: forward,
∂x and ∂W, three weight-sized GEMMs per target layer, no optimizer work) and `floor-5` (a second, trained branch
on the dropped input: five), each also `-int4` on the INT4 model of the QA variants. Targets (a GPU benchmark):
SparsePEFT and QA-SparsePEFT steps ≤ 1.1× their own floor (folded: 3, SparsePEFT with dropout: 5); the one-GEMM
SparsePEFT ≤ 0.75× the authors' design; memory ≤ 1.05× PEFT LoRA (SparsePEFT), ≤ 0.6× the fp16 copy (QA).

On a CPU every variant is built at once and they are stepped in turn (`--interleave`); on a GPU one after
another, each with its own CUDA peak. Writes JSON (and prints a table). Llama-3-8B shapes on a GPU:

    python benchmarks/adapt_step_bench.py --hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 \
        --vocab 128256 --layers 4 --batch 4 --seq 1024 --dtype bfloat16 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from adapt_step_report import print_static, print_table

from sqft.adapt import AdaptConfig, adapter_layers, inject_adapters
from sqft.fused import fused_by_default, set_fused
from sqft.modeling.structure import find_target_linears
from sqft.quantize.format import replace_module
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


TARGETS = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")


def build(args, sparse: bool, int4: bool, fp16_targets: bool = False):
    """Random Llama at the requested shapes; 50% sparse; INT4 (RTN, g128) for the QA variants.

    fp16_targets: the target layers hold dequantized copies of their INT4 weights (the fp16-copy design).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate or args.hidden * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(2048, args.seq),
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
    qa_params = None
    if fp16_targets:
        from sqft.adapt.inject import qa_params_of

        qa_params = {}
        for name, ql in find_target_linears(model, TARGETS).items():
            qa_params[name] = qa_params_of(ql)
            lin = torch.nn.Linear(ql.in_features, ql.out_features, bias=False)
            lin.weight.data = ql.dequantize(torch.float32).contiguous()
            replace_module(model, name, lin)
    dtype = getattr(torch, args.dtype)
    model = model.to(args.device, dtype)
    if qa_params is not None:
        qa_params = {n: q.to(args.device) if hasattr(q, "to") else q for n, q in qa_params.items()}
    return model, qa_params


class TwoBranch(torch.nn.Module):
    """The 5-GEMM floor: y = x Wᵀ + dropout(x) Vᵀ with V (out, in) trained, W frozen."""

    def __init__(self, base: torch.nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.V = torch.nn.Parameter(torch.zeros_like(base.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.dropout(x, 0.1, self.training), self.V)


def make_floor(model, gemms: int) -> None:
    """Turn the target linears into a matmul floor of `gemms` weight-sized GEMMs per step (3 or 5)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for name, lin in find_target_linears(model, TARGETS).items():
        if gemms == 3:
            lin.weight.requires_grad_(True)
        else:
            replace_module(model, name, TwoBranch(lin))


def variants():
    sparse, int4, copy = dict(sparse=True, int4=False), dict(sparse=True, int4=True), dict(fp16_targets=True)
    return {
        "floor-3": ("floor3", sparse, None),
        "floor-5": ("floor5", sparse, None),
        "floor-3-int4": ("floor3", int4 | copy, None),
        "authors-sparsepeft": (
            "reference",
            sparse,
            AdaptConfig(adapter="nls", sparse_adapter=True),
        ),
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
        "int4-nls": ("sqft", dict(sparse=True, int4=True), AdaptConfig(adapter="nls")),  # the sqft pipeline
        "qa-sparsepeft": (
            "sqft",
            dict(sparse=True, int4=True),
            AdaptConfig(adapter="nls", sparse_adapter=True, quantization_aware=True),
        ),
        "qa-sparsepeft-nodrop": (
            "sqft",
            dict(sparse=True, int4=True),
            AdaptConfig(adapter="nls", sparse_adapter=True, quantization_aware=True, dropout=0.0),
        ),
        "qa-fp16-copy": (
            "sqft",
            dict(sparse=True, int4=True, fp16_targets=True),
            AdaptConfig(adapter="nls", sparse_adapter=True, quantization_aware=True, qa_base="fp16"),
        ),
    }


def prepare(kind, model_kw, cfg, args):
    model, qa_params = build(args, **model_kw)
    if kind.startswith("floor"):
        make_floor(model, int(kind[-1]))
    elif kind == "peft":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=32,
                lora_alpha=64,
                lora_dropout=0.1,
                target_modules=list(TARGETS),
            ),
        )
    else:
        inject_adapters(model, cfg, qa_params)
        set_fused(model, args.fused == "on" or (args.fused == "auto" and fused_by_default()))
        if kind == "reference":  # the plain-autograd design: weights kept from forward to backward
            for layer in adapter_layers(model).values():
                layer.path = "reference"
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


def _unique_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None or t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def state_bytes(model, opt) -> int:
    """Parameters + buffers + gradients of the trainable parameters + AdamW state, in bytes."""
    held = _unique_bytes(list(model.parameters()) + list(model.buffers()))
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    optim = _unique_bytes(v for st in opt.state.values() for v in st.values() if torch.is_tensor(v))
    return held + grads + optim


def saved_bytes(model, x) -> int:
    """Bytes autograd keeps for backward beyond the model's own tensors: each storage once (x saved by q, k and v
    is one tensor), and never a parameter or buffer (a frozen weight saved by `F.linear` costs nothing extra)."""
    held = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in held:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x, labels=x).loss.backward()
    model.zero_grad()
    return sum(saved.values())


def static_bytes(model) -> int:
    """Parameters + buffers + trainable gradients + AdamW's two fp32 moments: training memory before activations."""
    held = _unique_bytes(list(model.parameters()) + list(model.buffers()))
    trainable = [p for p in model.parameters() if p.requires_grad]
    return held + sum(p.numel() * (p.element_size() + 8) for p in trainable)


class Run:
    """One variant, ready to step: its model, AdamW and the batch."""

    def __init__(self, kind, model_kw, cfg, args) -> None:
        self.model = prepare(kind, model_kw, cfg, args)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # a floor computes its gradients but updates nothing (AdamW on whole weights is no adapter's cost)
        self.opt = None if kind.startswith("floor") else torch.optim.AdamW(self.params, lr=1e-4)
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, args.vocab, (args.batch, args.seq), generator=gen).to(args.device)
        self.times: list[float] = []

    def step(self, args) -> float:
        """One optimizer step (forward, backward, AdamW); its time on the chosen clock."""
        clock = time.process_time if args.clock == "process" else time.perf_counter
        t0 = clock()
        self.model(self.x, labels=self.x).loss.backward()
        if self.opt is not None:
            self.opt.step()
            self.opt.zero_grad()
        else:
            self.model.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return clock() - t0

    def summary(self) -> dict:
        saved = saved_bytes(self.model, self.x)
        state = state_bytes(self.model, self.opt) if self.opt is not None else 0
        return {
            "step_s": statistics.median(self.times),
            "saved_for_backward_bytes": saved,
            "memory_model_bytes": state + saved,
            "trainable": sum(p.numel() for p in self.params),
        }


def bench(name, kind, model_kw, cfg, args) -> dict:
    """One variant on its own: its steps, then its figures (the CUDA peak covers only this variant)."""
    if args.memory_only:
        model = prepare(kind, model_kw, cfg, args)
        return {
            "static_bytes": static_bytes(model),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
    run = Run(kind, model_kw, cfg, args)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        t = run.step(args)
        if i >= args.warmup:
            run.times.append(t)
    out = run.summary()
    if args.device.startswith("cuda"):
        out["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return out


def bench_interleaved(selected: dict, args) -> dict:
    """Every variant built at once and stepped in turn (step 1 of each, then step 2 of each, …, the order
    rotating each round), so a drift in the machine's speed over the run (a shared CPU) hits all variants alike
    instead of whichever ran last. Time only: no CUDA peak, which would mix the variants."""
    runs = {name: Run(kind, model_kw, cfg, args) for name, (kind, model_kw, cfg) in selected.items()}
    names = list(runs)
    for i in range(args.warmup + args.steps):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            t = runs[name].step(args)
            if i >= args.warmup:
                runs[name].times.append(t)
    return {name: run.summary() for name, run in runs.items()}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--intermediate", type=int, default=None, help="default: 3 × hidden")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "process"],
        help="process: CPU seconds of this process (steadier than wall time on a shared CPU; use with --threads 1)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--fused",
        default="auto",
        choices=["auto", "on", "off"],
        help="compiled weight builds (SparsePEFT, QA, INT4 bases; sqft.fused); auto: on with CUDA, as in training",
    )
    p.add_argument(
        "--memory-only",
        action="store_true",
        help="no steps: weights + gradients + AdamW state of each variant (activations excluded), e.g. to "
        "compare QA designs at Llama-3-8B shapes on a CPU",
    )
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", nargs="*", default=None, help="subset of variants")
    p.add_argument(
        "--interleave",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build every variant at once and step them in turn (default on a CPU, whose speed drifts when "
        "shared; off on a GPU, where each variant's CUDA peak is measured alone)",
    )
    p.add_argument("--out", default=None, help="write results as JSON")
    args = p.parse_args()
    if args.clock == "process" and args.device.startswith("cuda"):
        p.error("--clock process measures CPU time; on a GPU use the default wall clock")
    if args.interleave is None:
        args.interleave = not args.device.startswith("cuda")
    if args.interleave and args.device.startswith("cuda"):
        p.error("--interleave mixes the variants' CUDA peaks; run them one at a time on a GPU")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    selected = {name: v for name, v in variants().items() if not args.only or name in args.only}
    if args.interleave and not args.memory_only:
        results = bench_interleaved(selected, args)
    else:
        results = {
            name: bench(name, kind, model_kw, cfg, args) for name, (kind, model_kw, cfg) in selected.items()
        }
    print_static(results) if args.memory_only else print_table(results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
