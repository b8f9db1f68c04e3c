"""`sqft evaluate MODEL [--adapter DIR] --task gsm8k|math|mc|commonsense-gen|perplexity --data FILE [...]`.

`--backend lm-eval` scores `--task mc` with lm-evaluation-harness instead of sqft (same data, offline).

Also the short form `sqft evaluate MODEL --perplexity FILE` (a .txt file, or JSON/JSONL with --text-field).
A table is always printed; `--output results.json` writes `{"results": {task: metrics}, ...}` atomically.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sqft.cli.common import add_force_arg, add_model_args, add_runtime_args
from sqft.errors import SqftError

__all__ = ["add_parser", "build_specs", "load_adapter_model"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model: GSM8K, math, multiple choice, commonsense, perplexity",
        description="Evaluate a (sparse, INT4, adapted) model on a benchmark from a local file or the hub.",
    )
    add_model_args(p)
    p.add_argument("--adapter", default=None, help="adapter directory to apply on top of MODEL")
    p.add_argument("--task", default=None, help="gsm8k, math, mc, commonsense-gen or perplexity")
    p.add_argument(
        "--data",
        default=None,
        help="evaluation data: .jsonl/.json/.parquet (or .txt for perplexity), or a hub id",
    )
    p.add_argument(
        "--perplexity", default=None, metavar="FILE", help="shorthand for --task perplexity --data FILE"
    )
    p.add_argument(
        "--fewshot-data",
        default=None,
        help="GSM8K solved examples for the few-shot prompt (e.g. train.jsonl)",
    )
    p.add_argument("--n-shot", type=int, default=5, help="GSM8K few-shot examples (default 5)")
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate only the first N items (N windows for perplexity)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="generation length (default 256; 32 for commonsense-gen)",
    )
    p.add_argument(
        "--delimiter",
        default=None,
        help="text between an MC query and a choice (default: '\\nAnswer: ' after a question)",
    )
    p.add_argument(
        "--seq-len", type=int, default=2048, help="perplexity window length in tokens (capped by the model)"
    )
    p.add_argument(
        "--text-field", default="text", help="record field holding the text (perplexity on JSON/JSONL)"
    )
    p.add_argument("--split", default="test", help="split to evaluate when --data is a hub dataset")
    p.add_argument(
        "--add-bos", action="store_true", help="prefix prompts with the BOS token (lm-eval does not)"
    )
    p.add_argument("--seed", type=int, default=1234, help="seed for drawing the few-shot examples")
    p.add_argument(
        "--backend",
        default="sqft",
        metavar="sqft|lm-eval",
        help="who scores --task mc: sqft (default) or lm-evaluation-harness on the same local data "
        "(pip install 'sqft[lm-eval]'); other tasks run on sqft only",
    )
    p.add_argument(
        "--output", "-o", default=None, help="write results as JSON to this file (refused if it exists)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument(
        "--int4-kernels",
        action="store_true",
        help="run INT4 layers on the packed bf16 kernels, as generate/bench do (default: the exact "
        "dequantized reference, so the figures are those of the stored codes)",
    )
    add_force_arg(p, "evaluate with --adapter")
    add_runtime_args(p)
    p.set_defaults(func=run)


def build_specs(args: argparse.Namespace) -> dict:
    """The task specs the arguments ask for (validated, no data or model loaded yet)."""
    from sqft.evaluate.api import TASKS, TaskSpec

    specs = {}
    if args.task is not None:
        if args.data is None:
            raise SqftError(f"--task {args.task} needs --data FILE (or a hub dataset id)")
        specs[args.task] = _spec(TaskSpec, args.task, args.data, args)
    elif args.data is not None:
        raise SqftError(f"--data needs --task: one of {', '.join(TASKS)}")
    if args.perplexity is not None:
        specs["perplexity"] = _spec(TaskSpec, "perplexity", args.perplexity, args)
    if not specs:
        raise SqftError(
            f"nothing to evaluate: pass --task ({', '.join(TASKS)}) with --data, or --perplexity FILE"
        )
    for spec in specs.values():
        if not Path(spec.data).exists() and Path(spec.data).suffix in (".txt", ".json", ".jsonl", ".parquet"):
            raise SqftError(f"data file '{spec.data}' does not exist")
    return specs


def _spec(cls, task: str, data: str, args: argparse.Namespace):
    return cls(
        task=task,
        data=data,
        fewshot_data=args.fewshot_data,
        n_shot=args.n_shot,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        delimiter=args.delimiter,
        seq_len=args.seq_len,
        text_field=args.text_field,
        split=args.split,
        add_bos=args.add_bos,
        seed=args.seed,
        backend=args.backend,
    )


def load_adapter_model(model, adapter_dir: str, force: bool = False):
    """`sqft.adapt.load_adapter(model, adapter_dir, force)` (its SparsePEFT mask checked against the base)."""
    from sqft.adapt import load_adapter

    if not Path(adapter_dir).is_dir():
        raise SqftError(f"adapter directory '{adapter_dir}' does not exist")
    return load_adapter(model, adapter_dir, force)


def check_adapter_provenance(args: argparse.Namespace) -> dict | None:
    """Before loading anything: the adapter exists, is undamaged and was trained on MODEL (or --force)."""
    if args.adapter is None:
        return None
    from sqft.adapt.export import read_elastic_config
    from sqft.adapt.provenance import check_base

    if not Path(args.adapter).is_dir():
        raise SqftError(f"adapter directory '{args.adapter}' does not exist")
    return check_base(read_elastic_config(args.adapter), args.adapter, args.model, args.force)


def run(args: argparse.Namespace) -> int:
    from sqft.artifacts import check_writable, versions
    from sqft.devices import check_device
    from sqft.evaluate.api import check_results_path, evaluate, format_table, load_task_data, write_results
    from sqft.modeling import load_model, load_tokenizer
    from sqft.modeling.io import resolve_source

    check_device(args.device)
    specs = build_specs(args)
    if args.output is not None:
        check_writable(check_results_path(args.output, args.overwrite))
    resolve_source(args.model, args.gguf_file)
    provenance = check_adapter_provenance(args)
    data = {name: load_task_data(spec) for name, spec in specs.items()}
    t0 = time.perf_counter()
    model = load_model(args.model, args.dtype, args.device, args.gguf_file, args.trust_remote_code)
    tokenizer = load_tokenizer(args.model, args.gguf_file, args.trust_remote_code)
    if args.adapter is not None:
        model = load_adapter_model(model, args.adapter, args.force).to(args.device).eval()
    if args.int4_kernels:
        from sqft.quantize.kernels import pack_int4_layers

        pack_int4_layers(model, args.device)
    load_seconds = time.perf_counter() - t0
    results = evaluate(model, tokenizer, specs, device=args.device, progress=not args.quiet, data=data)
    print(format_table(results))
    print(
        f"(model loaded in {load_seconds:.1f} s; "
        + ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in results.items())
        + ")"
    )
    if args.output is not None:
        meta = {
            "model": str(args.model),
            "adapter": args.adapter,
            "tasks": {name: vars(spec) for name, spec in specs.items()},
            "device": args.device,
            "provenance": provenance,
            "force": args.force,
            "versions": versions(),
        }
        write_results(results, args.output, args.overwrite, meta)
        print(f"results -> {args.output}")
    return 0
