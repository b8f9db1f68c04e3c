"""`sqft evaluate MODEL [--adapter DIR] --task gsm8k|math|mc|commonsense-gen|perplexity --data FILE [...]`.

`--backend lm-eval` scores `--task mc` with lm-evaluation-harness instead of sqft (same data, offline).

Also the short form `sqft evaluate MODEL --perplexity FILE` (a .txt file, or JSON/JSONL with --text-field).
A table is always printed; `--output results.json` writes `{"results": {task: metrics}, ...}` atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqft.cli.common import add_force_arg, add_model_args, add_runtime_args, lazy_import
from sqft.errors import SqftError

__all__ = ["add_parser", "build_specs", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model: GSM8K, math, multiple choice, commonsense, perplexity",
        description="Evaluate a (sparse, INT4, adapted) model on a benchmark from a local file or the hub.",
    )
    add_model_args(p)
    p.add_argument("--adapter", default=None, help="adapter directory to apply on top of MODEL")
    p.add_argument(
        "--qa-int4",
        default=None,
        help="with a QA-SparsePEFT --adapter trained on the fp16 base (finetune --qa-int4): the INT4 model whose "
        "layers without an adapter the trained (and merged) model uses",
    )
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
    _add_task_options(p)
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


def _add_task_options(p: argparse.ArgumentParser) -> None:
    """How each task runs: shots, limits, batching, lengths, fields, seed."""
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


def build_specs(args: argparse.Namespace) -> dict:
    """The task specs the arguments ask for (validated, no data or model loaded yet)."""
    api = lazy_import("sqft.evaluate.api")
    TASKS, TaskSpec = api.TASKS, api.TaskSpec
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


def run(args: argparse.Namespace) -> int:
    stage = lazy_import("sqft.stages.evaluate")
    specs = build_specs(args)
    opts = stage.EvaluateOptions(
        adapter=args.adapter,
        device=args.device,
        dtype=args.dtype,
        gguf_file=args.gguf_file,
        trust_remote_code=args.trust_remote_code,
        int4_kernels=args.int4_kernels,
        force=args.force,
        qa_int4=args.qa_int4,
        quiet=args.quiet,
    )
    ev = stage.run_evaluate(args.model, specs, None, opts, results_file=args.output, overwrite=args.overwrite)
    print(lazy_import("sqft.evaluate.api").format_table(ev.results))
    print(
        f"(model loaded in {ev.load_seconds:.1f} s; "
        + ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in ev.results.items())
        + ")"
    )
    if args.output is not None:
        print(f"results -> {args.output}")
    return 0
