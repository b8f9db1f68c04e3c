"""`sqft bench MODEL... [--device cpu|cuda] [--batch-sizes 1 8] [--prompt-tokens 128] [--new-tokens 128]`."""

from __future__ import annotations

import argparse
import sys

from sqft.artifacts import check_output
from sqft.cli.common import lazy_import
from sqft.errors import SqftError, require

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure prefill/decode speed, time to first token and memory of models, side by side",
        description="Benchmark each MODEL in one run, repeats interleaved across models: prefill and decode "
        "tokens/s per batch size, time to first token, peak memory (fresh process per model), weights in "
        "memory and size on disk; median (min–max). Prints a Markdown table; --output DIR also writes "
        "bench.json and a bar chart. INT4 layers run on PyTorch's packed-INT4 kernels.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="model directories, hub ids or .gguf files")
    p.add_argument(
        "--adapter",
        action="append",
        default=None,
        metavar="MODEL=DIR",
        help="apply adapter DIR to MODEL (repeatable)",
    )
    p.add_argument(
        "--dtype",
        nargs="+",
        default=["auto"],
        help="weights dtype, one for all models or one per model: auto, float32, bfloat16 ...",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="batch sizes (default 1 8)")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length (default 128)")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens generated per run (default 128)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--no-peak-memory", action="store_true", help="skip the fresh-process memory run")
    p.add_argument("--no-int4-kernels", action="store_true", help="run INT4 layers by dequantizing instead")
    p.add_argument("--output", "-o", default=None, help="also write bench.md, bench.json, bench.png here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output (an sqft artifact)")
    p.add_argument("--no-plot", action="store_true", help="no bench.png")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def specs_of(args: argparse.Namespace) -> list:
    BenchSpec = lazy_import("sqft.inference.bench").BenchSpec
    dtypes = args.dtype if len(args.dtype) > 1 else args.dtype * len(args.models)
    if len(dtypes) != len(args.models):
        raise SqftError(
            f"--dtype takes one value or one per model ({len(args.models)}), got {len(args.dtype)}"
        )
    adapters: dict[str, str] = {}
    for item in args.adapter or []:
        model, sep, adapter = item.partition("=")
        if not sep or model not in args.models:
            raise SqftError(f"--adapter '{item}' must be MODEL=DIR with MODEL one of the models given")
        adapters[model] = adapter
    return [
        BenchSpec(m, adapters.get(m), d, int4_kernels=not args.no_int4_kernels)
        for m, d in zip(args.models, dtypes, strict=True)
    ]


def run(args: argparse.Namespace) -> int:
    bench = lazy_import("sqft.inference.bench")
    report = lazy_import("sqft.inference.bench_report")
    cfg = bench.BenchConfig(
        tuple(args.batch_sizes),
        args.prompt_tokens,
        args.new_tokens,
        args.repeats,
        args.warmup,
        args.device,
        peak_memory=not args.no_peak_memory,
    )
    specs = specs_of(args)
    if args.output is not None:
        check_output(args.output, args.overwrite, [s.source for s in specs])
        if not args.no_plot:
            require("matplotlib", "report")
    progress = None if args.quiet else (lambda line: print(f"bench: {line}", file=sys.stderr, flush=True))
    results = bench.bench_models(specs, cfg, progress)
    print(report.bench_markdown(results, cfg), end="")
    if args.output is not None:
        report.write_bench(results, cfg, args.output, args.overwrite, plot=not args.no_plot)
        print(f"results -> {args.output}")
    return 0
