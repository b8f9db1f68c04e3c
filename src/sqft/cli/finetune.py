"""`sqft finetune MODEL --data FILE --output DIR`: train a LoRA / NLS adapter (SparsePEFT, QA-SparsePEFT)."""

from __future__ import annotations

import argparse

from sqft.adapt.config import PIPELINES, QA_BASES, AdaptConfig, TrainConfig
from sqft.cli.common import add_model_args, add_output_args, lazy_import
from sqft.data.tasks import TRAINING_FORMATS

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a low-rank adapter (LoRA or NLS; sparse / quantization-aware variants)",
        description="Fine-tune an adapter on MODEL and save it to --output (PEFT layout + sqft files). "
        "Runs under torchrun / accelerate launch for DDP.",
    )
    add_model_args(p)
    add_output_args(p)
    _add_data_args(p.add_argument_group("data"))
    a = p.add_argument_group("adapter")
    _add_adapter_args(a)
    _add_variant_args(a)
    t = p.add_argument_group("training")
    _add_schedule_args(t)
    _add_engine_args(t)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars, warnings only")
    p.set_defaults(func=run)


def _add_data_args(d: argparse._ArgumentGroup) -> None:
    d.add_argument(
        "--data",
        required=True,
        help="training data: a .jsonl/.json/.parquet file (or a hub dataset id with the 'hub' extra)",
    )
    d.add_argument(
        "--format",
        choices=TRAINING_FORMATS,
        default="auto",
        help="record layout (default auto: detected from the first record: text → one text, "
        "prompt/response → a pair, question/answer → gsm8k, instruction/output → math (Alpaca template), "
        "query/choices/gold → mc; custom when --template is given)",
    )
    d.add_argument(
        "--template",
        default=None,
        help="custom prompt template with {field} placeholders, e.g. 'Question: {q} Answer:' "
        "(in bash, $'...\\n...' gives a newline)",
    )
    d.add_argument(
        "--response-template",
        default=None,
        help="custom response template, e.g. ' {a}' (without it the filled --template is one text)",
    )
    d.add_argument("--data-limit", type=int, default=None, help="use only the first N records")


def _add_adapter_args(a: argparse._ArgumentGroup) -> None:
    a.add_argument(
        "--pipeline",
        choices=["lora", "shears", "sqft", "sqft-sparsepeft", "sqft-qa-sparsepeft"],
        default=None,
        help="set --sparse-adapter / --quantization-aware as the named SPEC pipeline",
    )
    a.add_argument(
        "--adapter", choices=["lora", "nls"], default="nls", help="fixed rank (lora) or elastic (nls)"
    )
    a.add_argument(
        "--r-max", type=int, default=None, help="adapter rank r_max (default: the largest of --ranks, 32)"
    )
    a.add_argument(
        "--ranks",
        type=int,
        nargs="+",
        default=[32, 24, 16],
        help="NLS search space per group; its maximum is --r-max (default 32 24 16)",
    )
    a.add_argument(
        "--alpha", type=float, default=64.0, help="LoRA alpha; scaling s = alpha / r_max (default 64)"
    )
    a.add_argument("--dropout", type=float, default=0.1, help="adapter dropout (default 0.1)")
    a.add_argument(
        "--targets",
        nargs="+",
        default=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
        help="target linears: suffix names or 're:REGEX' (default q,k,v,up,down)",
    )
    a.add_argument(
        "--grouping",
        choices=["layer_qkv", "module", "layer"],
        default="layer_qkv",
        help="NLS groups: per layer q,k,v (default), per module, per layer all targets",
    )


def _add_variant_args(a: argparse._ArgumentGroup) -> None:
    """SparsePEFT / QA-SparsePEFT and the QA base."""
    a.add_argument(
        "--sparse-adapter", action="store_true", help="SparsePEFT: mask the adapter by the base's zeros"
    )
    a.add_argument(
        "--quantization-aware",
        action="store_true",
        help="QA-SparsePEFT: fake-quantize W + L with the INT4 base's scales/zeros (needs an INT4 MODEL)",
    )
    a.add_argument(
        "--qa-base",
        choices=list(QA_BASES),
        default="auto",
        help="QA base weight: the fp16 sparse MODEL (fp16, with --qa-int4), the same moved into the bins of the "
        "INT4 model's codes (gptq-residual, with --qa-int4), the dequantized INT4 MODEL (gptq: "
        "frozen until |L| > s_q/2), or INT4 plus a seeded in-bin offset (gptq-dither); auto (default): "
        "gptq-residual when --qa-int4 is given, else gptq-dither",
    )
    a.add_argument(
        "--qa-int4",
        default=None,
        help="with --qa-base fp16, gptq-residual or auto: the INT4 model giving scales/zeros (and codes)",
    )


def _add_schedule_args(t: argparse._ArgumentGroup) -> None:
    t.add_argument(
        "--lr", type=float, default=None, help="learning rate (default 3e-4; 1e-4 for sqft on INT4)"
    )
    t.add_argument(
        "--epochs", type=float, default=None, help="epochs (default 3; 4 with --quantization-aware)"
    )
    t.add_argument("--batch-size", type=int, default=16, help="global batch size (default 16)")
    t.add_argument(
        "--micro-batch-size", type=int, default=4, help="per-process batch of one forward (default 4)"
    )
    t.add_argument("--warmup-steps", type=int, default=100, help="linear warmup steps (default 100)")
    t.add_argument(
        "--max-steps", type=int, default=-1, help="stop after N optimizer steps (overrides epochs)"
    )
    t.add_argument("--cutoff", type=int, default=256, help="max tokens per example (default 256)")
    t.add_argument("--seed", type=int, default=0, help="seed for init, data order and dropout")
    t.add_argument("--nls-seed", type=int, default=0, help="seed of the NLS configuration sampler")


def _add_engine_args(t: argparse._ArgumentGroup) -> None:
    """Kernels, parallelism, precision, checkpoints and logging."""
    t.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build the per-step weights (SparsePEFT, QA, INT4 bases) with compiled kernels (default: on with CUDA)",
    )
    t.add_argument(
        "--fsdp",
        action="store_true",
        help="shard the model with FSDP2 when launched by torchrun/accelerate launch (default: DDP)",
    )
    t.add_argument("--grad-checkpointing", action="store_true", help="gradient checkpointing (less memory)")
    prec = t.add_mutually_exclusive_group()
    prec.add_argument("--bf16", action="store_true", help="bf16 mixed precision")
    prec.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPU)")
    t.add_argument(
        "--save-steps",
        type=int,
        default=100,
        help="resumable checkpoint (adapter and optimizer state only) every N steps; 0: none",
    )
    t.add_argument("--logging-steps", type=int, default=10, help="log the loss every N steps")
    t.add_argument(
        "--mask-prompt",
        action="store_true",
        help="loss on the response only (default: the whole sequence, as in the paper)",
    )
    t.add_argument(
        "--restart",
        action="store_true",
        help="delete the checkpoints of an earlier, interrupted run on this --output and start over "
        "(without it a run resumes them, and refuses them when they were written with other settings)",
    )


def _adapt_config(args: argparse.Namespace) -> AdaptConfig:
    sparse, qa = args.sparse_adapter, args.quantization_aware
    if args.pipeline:
        ps, pq = PIPELINES[args.pipeline]
        sparse, qa = sparse or ps, qa or pq
    return AdaptConfig(
        adapter=args.adapter,
        r_max=args.r_max,
        ranks=tuple(args.ranks),
        alpha=args.alpha,
        dropout=args.dropout,
        targets=tuple(args.targets),
        grouping=args.grouping,
        sparse_adapter=sparse,
        quantization_aware=qa,
        qa_base=args.qa_base,
    )


def run(args: argparse.Namespace) -> int:
    adapt = _adapt_config(args)
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
    train = TrainConfig(
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        warmup_steps=args.warmup_steps,
        cutoff=args.cutoff,
        max_steps=args.max_steps,
        seed=args.seed,
        nls_seed=args.nls_seed,
        gradient_checkpointing=args.grad_checkpointing,
        fsdp=args.fsdp,
        fused=args.fused,
        mixed_precision=precision,
        mask_prompt=args.mask_prompt,
        save_steps=args.save_steps,
        logging_steps=args.logging_steps,
    )
    out = lazy_import("sqft.stages.finetune").run_finetune(
        args.model,
        args.data,
        adapt,
        train,
        args.output,
        overwrite=args.overwrite,
        dtype=args.dtype,
        qa_int4=args.qa_int4,
        data_limit=args.data_limit,
        progress=not args.quiet,
        gguf_file=args.gguf_file,
        data_format=args.format,
        template=args.template,
        response_template=args.response_template,
        restart=args.restart,
    )
    if lazy_import("sqft.adapt.train").is_main_process():
        print(f"adapter ({adapt.adapter}, {adapt.variant}) saved to {out}")
    return 0
