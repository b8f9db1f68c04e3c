"""`sqft search ADAPTER --base MODEL --strategy hill-climbing --validation FILE --budget N --output DIR`."""

from __future__ import annotations

import argparse

from sqft.cli.common import add_force_arg, add_output_args, add_runtime_args, lazy_import

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="choose a sub-adapter (a rank per group) of a trained NLS adapter",
        description=(
            "Pick the active rank of every adapter group: a heuristic (median = the paper's reference "
            "configuration, maximal, minimal, most-frequent, min-loss[:K] from the NLS training statistics) or "
            "hill-climbing (paper Algorithm 1) on a proxy of validation samples. Writes configuration.json, "
            "search.json (every configuration scored), PNG plots and the extracted sub-adapter."
        ),
    )
    p.add_argument("adapter", help="trained NLS adapter directory (with elastic_adapter_config.json)")
    p.add_argument(
        "--base", required=True, help="base model the adapter was trained on (directory, hub id, .gguf)"
    )
    p.add_argument(
        "--qa-int4",
        default=None,
        help="with a QA-SparsePEFT adapter trained on the fp16 base: the INT4 model it trained with",
    )
    p.add_argument(
        "--dtype", default="auto", help="weights dtype of the base: auto, float32, float16, bfloat16"
    )
    p.add_argument(
        "--strategy",
        default="hill-climbing",
        help="median | maximal | minimal | most-frequent | min-loss[:K] | hill-climbing | path to a config JSON",
    )
    _add_validation_args(p.add_argument_group("validation"))
    _add_hill_climbing_args(p.add_argument_group("hill-climbing (paper Algorithm 1)"))
    p.add_argument("--batch-size", type=int, default=8, help="evaluation batch size (default 8)")
    p.add_argument(
        "--cutoff", type=int, default=256, help="tokens per example for the loss metric (default 256)"
    )
    p.add_argument(
        "--no-extract", action="store_true", help="write the configuration only, not the sub-adapter"
    )
    add_output_args(p)
    add_force_arg(p, "search on --base")
    add_runtime_args(p)
    p.set_defaults(func=run)


def _add_validation_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--validation",
        default=None,
        help="validation data (.jsonl/.json/.parquet or hub id): multiple choice scores accuracy, "
        "GSM8K / LLM-Adapters records score negative mean loss; required for hill-climbing",
    )
    g.add_argument(
        "--validation-format", default="auto", help="auto (from the fields), mc, gsm8k, math, commonsense"
    )
    g.add_argument(
        "--validation-split", default="validation", help="split of a hub dataset (default validation)"
    )
    g.add_argument("--metric", default="auto", help="auto, accuracy (multiple choice) or loss")
    g.add_argument(
        "--proxy-samples", type=int, default=100, help="M: validation items in the proxy set (default 100)"
    )
    g.add_argument(
        "--test-data",
        default=None,
        help="the test data you will report on: the search refuses validation data that is (or overlaps) it",
    )


def _add_hill_climbing_args(h: argparse._ArgumentGroup) -> None:
    h.add_argument("--turns", type=int, default=10, help="T: number of turns (default 10)")
    h.add_argument("--neighbours", type=int, default=8, help="N: neighbours scored per turn (default 8)")
    h.add_argument(
        "--step", type=int, default=1, help="S: groups moved one position per neighbour (default 1)"
    )
    h.add_argument(
        "--budget", type=int, default=50, help="most configurations scored, median included (default 50)"
    )
    h.add_argument("--seed", type=int, default=0, help="seed for the proxy set and the neighbour sampling")


def run(args: argparse.Namespace) -> int:
    config = lazy_import("sqft.search.api").SearchConfig(
        strategy=args.strategy,
        validation=args.validation,
        validation_format=args.validation_format,
        validation_split=args.validation_split,
        metric=args.metric,
        proxy_samples=args.proxy_samples,
        test_data=args.test_data,
        turns=args.turns,
        neighbours=args.neighbours,
        step=args.step,
        budget=args.budget,
        seed=args.seed,
        batch_size=args.batch_size,
        cutoff=args.cutoff,
    )
    summary = lazy_import("sqft.stages.search").run_search(
        args.adapter,
        args.base,
        args.output,
        config,
        dtype=args.dtype,
        device=args.device,
        overwrite=args.overwrite,
        quiet=args.quiet,
        extract=not args.no_extract,
        force=args.force,
        qa_int4=args.qa_int4,
    )
    sign, name = (-1, "mean loss") if summary["metric"] == "loss" else (1, summary["metric"])
    score, start = summary["score"], summary["start_score"]
    scored = f"{name} {sign * score:.4f}" if score is not None else "not scored (no --validation)"
    gain = f" (median {sign * start:.4f})" if args.strategy == "hill-climbing" and start is not None else ""
    print(f"{args.strategy}: {scored}{gain} after {summary['n_evaluations']} evaluation(s) -> {args.output}")
    for key, what in (("extracted", "sub-adapter"), ("merged", "merged model")):
        if summary.get(key):
            print(f"{what} -> {args.output}/{summary[key]}")
    return 0
